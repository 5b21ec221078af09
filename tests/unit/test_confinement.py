"""tenancy.confinement, by example: what a tenant's running prompt may read, list and write, and how the names its
nodes hand to ComfyUI's resolvers map into its own folders."""

from __future__ import annotations

import pytest

from tenancy.confinement import LIST, READ, WRITE, Layout, decide, tenant_prefix, tenant_relative
from tenancy.paths import PathRefused

LAYOUT = Layout(shared={"input": "/c/input", "output": "/c/output", "temp": "/c/temp"},
                private={"user": "/c/user", "tenancy": "/c/user/tenancy"},
                read_only={"checkpoints": "/c/models/checkpoints", "custom_nodes": "/c/custom_nodes"})


@pytest.mark.parametrize("path", ["/c/input/tenants/a", "/c/input/tenants/a/x.png", "/c/output/tenants/a/sub/x",
                                  "/c/temp/tenants/a/p.png", "/c/user/tenancy/tenants/a/voices/v.voice"])
@pytest.mark.parametrize("access", [READ, WRITE, LIST])
def test_the_tenants_own_folders_are_open_to_it(path, access):
    assert decide(LAYOUT, "a", path, access) is None


@pytest.mark.parametrize("path", ["/c/input/tenants/b/x.png", "/c/output/tenants/b", "/c/temp/tenants/b/p.png",
                                  "/c/input/tenants", "/c/input/tenants/ab/x.png", "/c/input/tenants/a-b",
                                  "/c/input/x.png", "/c/output/ComfyUI_00001_.png", "/c/user/tenancy/jwt.secret",
                                  "/c/user/tenancy/tenants/b/tts.yaml", "/c/user/default/comfy.settings.json",
                                  "/c/user", "/c/user/tenancy/tenants"])
@pytest.mark.parametrize("access", [READ, WRITE, LIST])
def test_other_tenants_and_shared_data_are_refused_with_the_folder_relative_path(path, access):
    reason = decide(LAYOUT, "a", path, access)
    assert reason is not None and "outside your folders" in reason
    assert "/c/" not in reason  # never the server's absolute layout


def test_a_folder_root_may_be_listed_but_not_read_or_written():
    assert decide(LAYOUT, "a", "/c/input", LIST) is None  # ComfyUI's LoadImage lists it for its combo
    assert decide(LAYOUT, "a", "/c/input", WRITE) is not None
    assert decide(LAYOUT, "a", "/c/user", LIST) is not None  # ComfyUI's user folder lists one folder per tenant


def test_model_folders_are_read_only():
    assert decide(LAYOUT, "a", "/c/models/checkpoints/sd.safetensors", READ) is None
    assert decide(LAYOUT, "a", "/c/models/checkpoints", LIST) is None
    assert "read-only" in decide(LAYOUT, "a", "/c/models/checkpoints/sd.safetensors", WRITE)
    assert "read-only" in decide(LAYOUT, "a", "/c/custom_nodes/pack/__init__.py", WRITE)


def test_what_is_no_tenant_data_stays_open():
    for path in ("/usr/lib/python3.11/json/__init__.py", "/tmp/x", "/c/main.py"):
        assert decide(LAYOUT, "a", path, READ) is None and decide(LAYOUT, "a", path, WRITE) is None


def test_a_prefix_of_the_tenant_id_is_not_its_folder():
    assert decide(LAYOUT, "a", "/c/input/tenants/ab", LIST) is not None
    assert decide(LAYOUT, "ab", "/c/input/tenants/a/x.png", READ) is not None


def test_names_map_into_the_tenants_folder():
    assert tenant_relative("a", "x.latent") == "tenants/a/x.latent"
    assert tenant_relative("a", "sub/x.png") == "tenants/a/sub/x.png"
    assert tenant_relative("a", "tenants/a/x.png") == "tenants/a/x.png"  # already rewritten by the guard
    assert tenant_relative("a", "./tenants/a//x.png") == "tenants/a/x.png"
    assert tenant_relative("a", "") == "tenants/a"
    assert tenant_relative("a", "tenantsx/y") == "tenants/a/tenantsx/y"


@pytest.mark.parametrize("name", ["tenants/b/x.png", "tenants/b", "tenants", "tenants/", "tenants/ab/x",
                                  "../output/tenants/b/x.latent", "tenants/a/../b/x.png", "/c/input/tenants/b/x",
                                  "sub/../../x", "x\x00.png", "..\\b\\x.png"])
def test_names_of_other_tenants_or_climbing_out_are_refused(name):
    with pytest.raises(PathRefused):
        tenant_relative("a", name)


def test_output_prefixes_map_into_the_tenants_folder():
    assert tenant_prefix("a", "ComfyUI_temp_abcde") == "tenants/a/ComfyUI_temp_abcde"  # previews
    assert tenant_prefix("a", "tenants/a/iso/out") == "tenants/a/iso/out"
    assert tenant_prefix("a", "%year%/img") == "tenants/a/%year%/img"
    assert tenant_prefix("a", "") == "tenants/a/ComfyUI"
    assert tenant_prefix("a", "tenants/a") == "tenants/a/ComfyUI"  # never files named `a` in tenants/
    for prefix in ("tenants/b/x", "tenants", "../x", "/tmp/x"):
        with pytest.raises(PathRefused):
            tenant_prefix("a", prefix)

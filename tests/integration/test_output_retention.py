"""Retention of outputs per plan, with a real guarded ComfyUI (`outputs.store: s3`) and a real S3 server
(SeaweedFS): tenant a's plan keeps outputs RETENTION_S seconds, tenant b's for ever. `python -m tenancy outputs
sweep` (the sweep ComfyUI runs every `outputs.sweep_s`, off here so that this test alone decides when it runs)
deletes a's old output from the disk, the bucket and the output index; a's newer one and b's old one stay. The
running ComfyUI then answers 404 for the deleted one (/view, its signed download link) and no longer lists it,
though it had redirected to it before: it is past the plan's retention, so it is never redirected to again."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time

import pytest

from tenancy import config as config_module
from tenancy.retention import DAY_S
from tenancy.store import open_store
from tests.harness.client import ComfyClient
from tests.harness.comfyui import ComfyUI
from tests.harness.images import saved_image
from tests.harness.seaweedfs import BUCKET
from tests.harness.tenants import seed
from tests.harness.waiting import wait_until

pytestmark = pytest.mark.comfy
RETENTION_S = 15  # long enough that the newer output, made just before the sweep, is well inside it
PREFIX = "retention/"


@pytest.fixture(scope="module")
def retention_comfy(tmp_path_factory, seaweedfs):
    base = tmp_path_factory.mktemp("retention-comfy")
    seeded = seed(base, {"outputs": seaweedfs.outputs(prefix=PREFIX, sweep_s=0),
                         "plans": {"basic": {"output_days": RETENTION_S / DAY_S}}})
    server = ComfyUI(base, env={"TENANCY_REQUIRE_GUARD": "1"}).start()
    server.seeded = seeded
    yield server
    server.stop()


def client(server: ComfyUI, who: str) -> ComfyClient:
    return ComfyClient(server.url, server.seeded.keys[who])



def key_of(tenant: str, image: dict) -> str:
    return f"{PREFIX}tenants/{tenant}/output/{image['subfolder']}/{image['filename']}"


def path_of(server: ComfyUI, tenant: str, image: dict):
    return server.base / "output" / "tenants" / tenant / image["subfolder"] / image["filename"]


def put_at(seaweedfs, key: str) -> float | None:
    """The object's Last-Modified, None when the bucket does not have it."""
    try:
        return seaweedfs.client().head_object(Bucket=BUCKET, Key=key)["LastModified"].timestamp()
    except Exception:  # 404: not (yet, or any longer) there
        return None


def view(tenant: ComfyClient, image: dict):
    return tenant.get("/view", params={"filename": image["filename"], "subfolder": image["subfolder"],
                                       "type": "output"}, allow_redirects=False)


def indexed_owner(server: ComfyUI, tenant: str, image: dict) -> str | None:
    settings = config_module.load(server.seeded.config_path)

    async def ask():
        store = open_store(settings.store, settings.path("."))
        try:
            return await store.output_owner("output", f"tenants/{tenant}/{image['subfolder']}", image["filename"])
        finally:
            await store.close()

    return asyncio.run(ask())


def test_a_plans_old_outputs_leave_disk_bucket_and_index_and_answer_404(retention_comfy, seaweedfs):
    server = retention_comfy
    a, b = client(server, "a"), client(server, "b")
    old, theirs = saved_image(a, "kept/old"), saved_image(b, "kept/old")
    old_put = wait_until(lambda: put_at(seaweedfs, key_of("tenant-a", old)), 30, "a's old output uploaded")
    wait_until(lambda: put_at(seaweedfs, key_of("tenant-b", theirs)), 30, "b's output uploaded")
    wait_until(lambda: view(a, old).status_code == 302, 10, "/view redirects to the bucket while it is young")
    link = a.get(f"/tenancy/outputs/{old['prompt_id']}").json()["files"][0]["url"]
    assert a.get(link, allow_redirects=False).status_code == 302
    assert wait_until(lambda: indexed_owner(server, "tenant-a", old), 10, "the output index has it") == "tenant-a"

    # the retention is a file's age: the old one must be past it (by its upload, the later of its two times)
    time.sleep(max(0.0, old_put + RETENTION_S + 0.5 - time.time()))
    made = time.time()
    new = saved_image(a, "kept/new")
    wait_until(lambda: put_at(seaweedfs, key_of("tenant-a", new)), 30, "a's new output uploaded")

    swept = subprocess.run([sys.executable, "-m", "tenancy", "outputs", "sweep", "--config",
                            str(server.seeded.config_path), "--output-dir", str(server.base / "output")],
                           capture_output=True, text=True, timeout=120)
    assert time.time() - made < RETENTION_S, "the sweep came too late to tell a new output from an old one"
    assert swept.returncode == 0, swept.stderr
    assert f"tenant-a: 1 deleted from {server.base / 'output'}, 1 from the bucket" in swept.stdout, swept.stdout
    assert "tenant-b" not in swept.stdout  # a plan without retention is not even listed

    assert not path_of(server, "tenant-a", old).exists() and put_at(seaweedfs, key_of("tenant-a", old)) is None
    assert path_of(server, "tenant-a", new).is_file() and put_at(seaweedfs, key_of("tenant-a", new)) is not None
    assert path_of(server, "tenant-b", theirs).is_file() and put_at(seaweedfs, key_of("tenant-b", theirs)) is not None
    assert indexed_owner(server, "tenant-a", old) is None
    assert indexed_owner(server, "tenant-a", new) == "tenant-a"

    # the running ComfyUI had redirected to the old one: now it is gone everywhere, and says so
    assert view(a, old).status_code == 404
    assert a.get(link, allow_redirects=False).status_code == 404
    assert a.get(f"/tenancy/outputs/{old['prompt_id']}").json()["files"] == []
    assert view(client(server, "admin"), {**old, "subfolder": f"tenants/tenant-a/{old['subfolder']}"}) \
        .status_code == 404
    assert view(a, new).status_code == 302 and view(b, theirs).status_code == 302
    assert len(a.get(f"/tenancy/outputs/{new['prompt_id']}").json()["files"]) == 1

    audit = [json.loads(line) for line in
             (server.base / "user" / "tenancy" / "audit.log").read_text().splitlines()]
    assert [(e["tenant"], e["disk"], e["bucket"]) for e in audit if e.get("decision") == "delete_outputs"] == \
        [("tenant-a", 1, 1)]

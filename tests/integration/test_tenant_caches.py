"""Each tenant keeps its own node cache, as on a ComfyUI of its own: another tenant's prompts in between do not
evict it (ComfyUI's default cache keeps only the last prompt's outputs), and it is never another tenant's."""

from __future__ import annotations

import pytest

from tests.harness.views import params

pytestmark = pytest.mark.comfy


def cached_nodes(entry: dict) -> list[str]:
    """The nodes ComfyUI answered from its cache, as its history entry's `execution_cached` message lists them."""
    return sorted(next((data["nodes"] for name, data in entry["status"]["messages"] if name == "execution_cached"),
                       []))


def test_a_tenants_cache_outlives_another_tenants_prompts_and_is_its_own(tenant_a, tenant_b):
    workflow = params(61)
    assert cached_nodes(tenant_a.run(workflow)) == []
    for steps in (62, 63):
        tenant_b.run(params(steps))
    assert cached_nodes(tenant_a.run(workflow)) == ["1"]  # as if B's prompts had run elsewhere
    assert cached_nodes(tenant_b.run(workflow)) == []  # the same workflow: B's first run of it

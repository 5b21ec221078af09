"""A tenant's history and queue read like those of a ComfyUI of its own: ComfyUI's paging over its own entries,
its own names, client fields and whole queue numbers, so whatever it reads back it can post again unchanged."""

from __future__ import annotations

import uuid

import pytest

from tests.conftest import FIXTURES

pytestmark = pytest.mark.comfy
PORTRAIT = FIXTURES / "media" / "portrait_astronaut_256.png"


def params(steps: int) -> dict:
    return {"1": {"class_type": "TenancyTestParams", "inputs": {
        "steps": steps, "cfg": 7.0, "duration": 0.1, "width": 256, "model_name": "base.safetensors"}}}


@pytest.fixture(scope="module")
def interleaved(tenant_a, tenant_b) -> list[str]:
    """b, a, b, a, b, a, one at a time: tenant B's three prompts, in the order they ran, each followed by A's."""
    own = []
    for steps in (11, 12, 13):
        own.append(tenant_b.run(params(steps))["prompt"][1])
        tenant_a.run(params(steps))
    return own


def history_ids(client, **query) -> list[str]:
    response = client.get("/history", params=query)
    assert response.status_code == 200, response.text
    return list(response.json())


def test_history_lists_only_own_entries_in_comfyuis_order(tenant_b, interleaved):
    everything = history_ids(tenant_b)
    assert [pid for pid in everything if pid in interleaved] == interleaved
    assert everything[-3:] == interleaved  # A's prompts ran in between, and are not there


@pytest.mark.parametrize(("query", "expected"), [
    ({"max_items": 2}, slice(-2, None)),  # no offset: the newest max_items
    ({"max_items": 1, "offset": -1}, slice(-1, None)),  # a negative offset as an absent one
    ({"max_items": 2, "offset": 0}, slice(0, 2)),  # offset counts from the oldest
    ({"offset": 1}, slice(1, None)),
    ({"max_items": 1, "offset": 1}, slice(1, 2)),
    ({"max_items": 0}, slice(0, 0)),
])
def test_history_pages_after_filtering_with_comfyuis_semantics(tenant_b, interleaved, query, expected):
    everything = history_ids(tenant_b)
    assert history_ids(tenant_b, **query) == everything[expected]


def test_a_page_past_the_end_is_empty_and_a_large_one_is_everything(tenant_b, interleaved):
    everything = history_ids(tenant_b)
    assert history_ids(tenant_b, offset=len(everything)) == []
    assert history_ids(tenant_b, max_items=len(everything) + 50) == everything


def test_another_tenants_prompt_reads_like_an_unknown_one(tenant_a, tenant_b, interleaved):
    for pid in (interleaved[0], str(uuid.uuid4())):
        response = tenant_a.get(f"/history/{pid}")
        assert response.status_code == 200 and response.json() == {}
    assert list(tenant_b.get(f"/history/{interleaved[0]}").json()) == [interleaved[0]]


def test_the_operator_still_reads_comfyuis_whole_history(operator, tenant_a, tenant_b, interleaved):
    everything = history_ids(operator)
    assert set(interleaved) <= set(everything)
    assert len(everything) > len(history_ids(tenant_b))

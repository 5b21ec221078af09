"""Combos that list the tenants folder are told apart by what they list, and their values confined to the tenant."""

from __future__ import annotations

import pytest

from tenancy.catalogue import Catalogue
from tenancy.records import Principal
from tenancy.refusal import Refusal
from tenancy.workflow import apply_policy

SUBFOLDERS = ["mine", "tenants", "tenants/acme", "tenants/acme/set", "tenants/other"]
OBJECT_INFO = {
    # a classic node and a V3 one listing input subfolders; names chosen so nothing hints at folders
    "PackNodeA": {"input": {"required": {"where": [SUBFOLDERS, {}]}}},
    "PackNodeB": {"input": {"optional": {"src": ["COMBO", {"options": SUBFOLDERS}]}}},
    "OutputsLister": {"input": {"required": {"dir": [["tenants", "tenants/acme", "renders"]]}}},
    "RecursiveFiles": {"input": {"required": {"pick": [["x.png", "tenants/other/y.png"]]}}},
    "Sampler": {"input": {"required": {"sampler": [["euler", "tenants_mode"]]}}},
}
TENANT = Principal(kind="tenant", subject="key:k", tenant="acme", role="member", plan=None)


def catalogue() -> Catalogue:
    return Catalogue.build(OBJECT_INFO, subfolders={"input": set(SUBFOLDERS), "output": {"tenants", "tenants/acme",
                                                                                         "renders"}})


def test_folder_combos_are_found_by_what_they_list():
    nodes = catalogue()
    assert nodes.get("PackNodeA").folder_inputs == {"where": "input"}
    assert nodes.get("PackNodeB").folder_inputs == {"src": "input"}
    assert nodes.get("OutputsLister").folder_inputs == {"dir": "output"}
    assert "pick" in nodes.get("RecursiveFiles").file_inputs  # names inside the tenants folder: a file listing
    assert not nodes.get("Sampler").folder_inputs and not nodes.get("Sampler").file_inputs


@pytest.mark.parametrize(("value", "real"), [("set", "tenants/acme/set"), ("set/sub/", "tenants/acme/set/sub")])
def test_a_folder_value_is_the_tenants_own_folder(value, real):
    outcome = apply_policy({"prompt": {"1": {"class_type": "PackNodeA", "inputs": {"where": value}}}}, TENANT, None,
                           catalogue())
    assert outcome.body["prompt"]["1"]["inputs"]["where"] == real
    assert [(node, name, ref.folder, ref.is_folder) for node, name, ref in outcome.files] == \
        [("1", "where", "input", True)]


@pytest.mark.parametrize("value", ["../other", "/etc", "", "a/../../other", 3, "x\\..\\y"])
def test_a_folder_value_cannot_leave_the_tenants_folder(value):
    with pytest.raises(Refusal) as refused:
        apply_policy({"prompt": {"1": {"class_type": "PackNodeB", "inputs": {"src": value}}}}, TENANT, None,
                     catalogue())
    assert refused.value.status == 403 and "1" in refused.value.body()["node_errors"]


def test_a_tenancy_meta_key_the_guard_does_not_know_is_told_once_not_silently_dropped(caplog):
    info = {"Pack": {"input": {"required": {"clip": ["STRING", {}]}}}}
    for _ in range(2):
        spec = Catalogue.build(info, meta={"Pack": {"file_input": ["clip"], "estimate": {"seconds": 1}}}).get("Pack")
    assert [r.getMessage() for r in caplog.records if "file_input" in r.getMessage()] == \
        ["[tenancy] Pack declares TENANCY_META['file_input'], which the guard does not know: ignored"]
    assert spec.meta["estimate"] == {"seconds": 1} and "clip" not in spec.file_inputs

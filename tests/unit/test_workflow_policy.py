"""The workflow policy is pure: the caller's body is left as it was, the outcome carries the rewrites."""

from __future__ import annotations

import copy

from tenancy import config
from tenancy.catalogue import Catalogue
from tenancy.records import Principal
from tenancy.workflow import apply_policy

OBJECT_INFO = {
    "KSampler": {"input": {"required": {"steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                                        "cfg": ["FLOAT", {"default": 8.0}]}}},
    "LoadImage": {"input": {"required": {"image": [["a.png"], {"image_upload": True}]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {"default": "x"}]}}},
}


def test_the_callers_body_is_untouched_while_the_outcome_is_confined(tmp_path):
    plans = config.from_mapping({}, base_dir=tmp_path).plans
    tenant = Principal(kind="tenant", subject="key:k", tenant="acme", role="member", plan="basic")
    body = {"client_id": "c1", "number": 7, "extra_data": {"extra_pnginfo": {"workflow": {}}, "mine": 1},
            "prompt": {"1": {"class_type": "LoadImage", "inputs": {"image": "cat.png"}},
                       "2": {"class_type": "KSampler", "inputs": {"steps": 80, "cfg": 12.0, "model": ["1", 0]}},
                       "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "out"}}}}
    before = copy.deepcopy(body)
    outcome = apply_policy(body, tenant, plans["basic"], Catalogue.build(OBJECT_INFO))
    assert body == before
    nodes = outcome.body["prompt"]
    assert nodes["1"]["inputs"]["image"] == "tenants/acme/cat.png"
    assert nodes["2"]["inputs"]["steps"] == 20 and nodes["2"]["inputs"]["model"] == ["1", 0]
    assert nodes["3"]["inputs"]["filename_prefix"] == "tenants/acme/out"
    assert outcome.body["extra_data"] == {"extra_pnginfo": {"workflow": {}},  # a key no client may set is dropped
                                          "tenancy": {"tenant": "acme", "plan": "basic"}}
    assert "number" not in outcome.body and outcome.body["client_id"].startswith("acme:")
    assert {(r.node, r.input, r.reason) for r in outcome.rewrites} >= {("2", "steps", "forbidden_input")}

"""What a tenant reads back of a stored prompt is what it posted: the inverse of the workflow walk."""

from __future__ import annotations

from tenancy.catalogue import Catalogue
from tenancy.read_back import owner_in, posted_item, tenant_entry, whole_number
from tenancy.records import Principal
from tenancy.workflow import apply_policy

OBJECT_INFO = {
    "LoadImage": {"input": {"required": {"image": [["x.png"], {"image_upload": True}]}}},
    "SaveImage": {"input": {"required": {"images": ["IMAGE"], "filename_prefix": ["STRING", {}]}}},
    "CLIPTextEncode": {"input": {"required": {"text": ["STRING", {}]}}},
}
CATALOGUE = Catalogue.build(OBJECT_INFO, input_files=["x.png"])
TENANT = Principal(kind="tenant", tenant="acme", plan=None)
WORKFLOW = {
    "1": {"class_type": "LoadImage", "inputs": {"image": "faces/me.png"}},
    "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "runs/out"}},
    "3": {"class_type": "CLIPTextEncode", "inputs": {"text": "tenants/acme/not a path"}},
}


def stored(body: dict) -> tuple:
    """ComfyUI's history `prompt` for a body the guard walked: the number as a float, the client id moved into
    extra_data, as ComfyUI stores them."""
    walked = apply_policy(body, TENANT, None, CATALOGUE).body
    extra = dict(walked["extra_data"], client_id=walked["client_id"])
    return (3000.0, walked["prompt_id"], walked["prompt"], extra, ["2"])


def test_a_walked_workflow_reads_back_as_posted():
    number, _, workflow, extra, outputs = posted_item(stored({"prompt": WORKFLOW, "client_id": "c1"}), "acme",
                                                      CATALOGUE)
    assert workflow == WORKFLOW  # the text input that merely looks like a path is left alone
    assert extra["client_id"] == "c1" and "tenancy" not in extra
    assert type(number) is int and number == 3000 and outputs == ["2"]


def test_the_stored_prompt_is_not_changed_by_reading_it_back():
    item = stored({"prompt": WORKFLOW})
    before = repr(item)
    posted_item(item, "acme", CATALOGUE)
    assert repr(item) == before and owner_in(item[3]) == "acme"


def test_numbers_that_are_not_whole_stay_as_they_are():
    assert whole_number(2.5) == 2.5 and whole_number(-3.0) == -3 and whole_number(7) == 7


def test_an_entry_shows_outputs_by_the_tenants_names_and_the_guards_outcome():
    entry = {"prompt": stored({"prompt": WORKFLOW}), "status": {"status_str": "success"},
             "outputs": {"2": {"images": [{"filename": "o.png", "subfolder": "tenants/acme/runs", "type": "output"}]}}}
    shown = tenant_entry(entry, "acme", CATALOGUE, "timeout")
    assert shown["outputs"]["2"]["images"][0]["subfolder"] == "runs"
    assert shown["status"] == {"status_str": "success", "tenancy_outcome": "timeout"}
    assert entry["outputs"]["2"]["images"][0]["subfolder"] == "tenants/acme/runs"

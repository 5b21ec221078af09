"""The walk of a posted workflow, rule by rule: node allow/deny, forbidden inputs, clamps, plan maxima, model
routing, the server's own fields; then the cost estimate and the fair queue it feeds."""

from __future__ import annotations

import math

import pytest

from tenancy.admission import EstimateInputs, FairQueue, estimate_seconds, speech_seconds
from tenancy.catalogue import Catalogue
from tenancy.config import Plan
from tenancy.records import Principal
from tenancy.refusal import Refusal
from tenancy.workflow import apply_policy

OBJECT_INFO = {
    "KSampler": {"input": {"required": {"steps": ["INT", {"default": 20, "min": 1, "max": 10000}],
                                        "cfg": ["FLOAT", {"default": 8.0}],
                                        "seed": ["INT", {}], "sampler_name": [["euler", "dpmpp_2m"]]}}},
    "EmptyLatentImage": {"input": {"required": {"width": ["INT", {"default": 512}], "height": ["INT", {"default": 512}],
                                                "batch_size": ["INT", {"default": 1}]}}},
    "Talk": {"input": {"required": {"duration": ["FLOAT", {"default": 5.0}], "frames": ["INT", {"default": 25}],
                                    "ckpt_name": [["base.safetensors", "fast.safetensors"]]}}},
}
CATALOGUE = Catalogue.build(OBJECT_INFO)
TENANT = Principal(kind="tenant", subject="key:k", tenant="acme", role="member", plan="p")
ADMIN = Principal(kind="admin", subject="key:root", role="admin")


def walk(prompt: dict, plan: Plan | None = None, principal: Principal = TENANT, routing: dict | None = None,
         **body):
    return apply_policy({"prompt": prompt, **body}, principal, plan, CATALOGUE, routing)


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def refused(call, *args, **kwargs) -> Refusal:
    with pytest.raises(Refusal) as caught:
        call(*args, **kwargs)
    return caught.value


def only_error(refusal: Refusal) -> tuple[str, dict]:
    (node_id, entry), = refusal.node_errors.items()
    return node_id, entry["errors"][0]


# node allow / deny -------------------------------------------------------------------------------------------
def test_a_denied_node_is_refused_naming_the_node():
    refusal = refused(walk, {"7": node("KSampler", steps=5)}, Plan(deny_nodes=["KSampler"]))
    assert (refusal.status, refusal.reason) == (403, "forbidden_node")
    node_id, error = only_error(refusal)
    assert node_id == "7" and error["type"] == "forbidden_node"
    assert refusal.node_errors["7"]["class_type"] == "KSampler"


def test_an_allow_list_admits_only_its_nodes():
    plan = Plan(allow_nodes=["EmptyLatentImage"])
    assert walk({"1": node("EmptyLatentImage", width=64)}, plan).body["prompt"]["1"]["inputs"]["width"] == 64
    assert refused(walk, {"1": node("EmptyLatentImage"), "2": node("KSampler")}, plan).reason == "forbidden_node"


def test_without_a_plan_nothing_is_limited_and_an_operator_is_not_confined():
    outcome = walk({"1": node("KSampler", steps=99999, cfg=-3.0)}, None, ADMIN)
    assert outcome.body["prompt"]["1"]["inputs"] == {"steps": 99999, "cfg": -3.0} and outcome.rewrites == []
    assert outcome.client_id.startswith("_admin:")


@pytest.mark.parametrize("bad", [[], {"inputs": {}}, {"class_type": 3, "inputs": {}},
                                 {"class_type": "KSampler", "inputs": []}])
def test_a_malformed_node_is_refused_as_invalid(bad):
    refusal = refused(walk, {"1": bad}, Plan())
    assert (refusal.status, refusal.reason) == (400, "invalid_prompt") and "1" in refusal.node_errors


def test_a_body_without_a_prompt_object_is_refused():
    assert refused(apply_policy, {"prompt": []}, TENANT, Plan(), CATALOGUE).reason == "no_prompt"
    assert refused(apply_policy, "text", TENANT, Plan(), CATALOGUE).reason == "no_prompt"


# forbidden inputs ------------------------------------------------------------------------------------------------
def test_a_forbidden_input_goes_back_to_the_nodes_default_and_says_so():
    outcome = walk({"1": node("KSampler", steps=80)}, Plan(forbidden_inputs=["steps"]))
    assert outcome.body["prompt"]["1"]["inputs"]["steps"] == 20
    assert [r.as_dict() for r in outcome.rewrites] == \
        [{"node": "1", "input": "steps", "before": 80, "after": 20, "reason": "forbidden_input"}]


def test_a_forbidden_input_already_at_its_default_is_no_rewrite():
    assert walk({"1": node("KSampler", steps=20)}, Plan(forbidden_inputs=["steps"])).rewrites == []


def test_a_forbidden_input_without_a_default_is_refused_naming_node_and_input():
    refusal = refused(walk, {"4": node("KSampler", seed=1)}, Plan(forbidden_inputs=["seed"]))
    node_id, error = only_error(refusal)
    assert (refusal.status, node_id, error["type"], error["extra_info"]) == \
        (403, "4", "forbidden_input", {"input_name": "seed"})


def test_a_link_is_never_limited():
    outcome = walk({"1": node("KSampler", steps=["2", 0], cfg=["2", 1])},
                   Plan(forbidden_inputs=["steps"], clamp={"cfg": [1, 2]}))
    assert outcome.body["prompt"]["1"]["inputs"] == {"steps": ["2", 0], "cfg": ["2", 1]}


# clamps ----------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(("value", "expected"), [(0.5, 1.0), (12.0, 10.0), (7.0, 7.0), (1.0, 1.0), (10, 10)])
def test_a_clamp_keeps_numbers_inside_its_bounds(value, expected):
    outcome = walk({"1": node("KSampler", cfg=value)}, Plan(clamp={"cfg": [1.0, 10.0]}))
    assert outcome.body["prompt"]["1"]["inputs"]["cfg"] == expected
    assert [r.reason for r in outcome.rewrites] == ([] if value == expected else ["clamped"])


@pytest.mark.parametrize("value", ["12", True, math.nan, math.inf, None])
def test_a_clamp_leaves_what_is_not_a_finite_number_to_comfyui(value):
    outcome = walk({"1": node("KSampler", cfg=value)}, Plan(clamp={"cfg": [1.0, 10.0]}))
    got = outcome.body["prompt"]["1"]["inputs"]["cfg"]
    assert got is value or (isinstance(value, float) and math.isnan(value) and math.isnan(got))
    assert outcome.rewrites == []


# plan maxima -----------------------------------------------------------------------------------------------------
def test_plan_maxima_lower_resolution_duration_and_frames_keeping_the_type():
    plan = Plan(max_resolution=512, max_duration_s=10, max_frames=100)
    outcome = walk({"1": node("EmptyLatentImage", width=1024, height=512, batch_size=64),
                    "2": node("Talk", duration=30.0, frames=250)}, plan)
    inputs = outcome.body["prompt"]
    assert inputs["1"]["inputs"] == {"width": 512, "height": 512, "batch_size": 64}
    assert isinstance(inputs["1"]["inputs"]["width"], int)
    assert inputs["2"]["inputs"] == {"duration": 10.0, "frames": 100}
    assert {(r.node, r.input, r.before, r.after, r.reason) for r in outcome.rewrites} == {
        ("1", "width", 1024, 512, "plan_limit"), ("2", "duration", 30.0, 10.0, "plan_limit"),
        ("2", "frames", 250, 100, "plan_limit")}


def test_a_negative_maximum_is_no_limit():
    outcome = walk({"1": node("EmptyLatentImage", width=8192)}, Plan(max_resolution=-1))
    assert outcome.body["prompt"]["1"]["inputs"]["width"] == 8192 and outcome.rewrites == []


def test_a_node_can_declare_more_inputs_its_plan_maxima_apply_to():
    catalogue = Catalogue.build({"Big": {"input": {"required": {"side": ["INT", {}]}}}},
                                meta={"Big": {"resolution_inputs": ["side"]}})
    outcome = apply_policy({"prompt": {"1": node("Big", side=4096)}}, TENANT, Plan(max_resolution=768), catalogue)
    assert outcome.body["prompt"]["1"]["inputs"]["side"] == 768


# model routing ---------------------------------------------------------------------------------------------------
def test_a_tagged_tenant_is_routed_to_its_model_and_others_are_not():
    routing = {"eu": {"ckpt_name": {"base.safetensors": "base-eu.safetensors"}}}
    tagged = Principal(kind="tenant", subject="key:k", tenant="acme", role="member", plan="p", tags=("eu",))
    outcome = walk({"1": node("Talk", ckpt_name="base.safetensors")}, Plan(), tagged, routing)
    assert outcome.body["prompt"]["1"]["inputs"]["ckpt_name"] == "base-eu.safetensors"
    assert [r.reason for r in outcome.rewrites] == ["model_routing"]
    assert walk({"1": node("Talk", ckpt_name="base.safetensors")}, Plan(), TENANT, routing) \
        .body["prompt"]["1"]["inputs"]["ckpt_name"] == "base.safetensors"
    assert walk({"1": node("Talk", ckpt_name="fast.safetensors")}, Plan(), tagged, routing) \
        .body["prompt"]["1"]["inputs"]["ckpt_name"] == "fast.safetensors"


# the server's own fields -----------------------------------------------------------------------------------------
def test_the_server_sets_client_id_and_the_tenant_and_only_an_operator_may_jump_the_queue():
    outcome = walk({"1": node("KSampler")}, Plan(), TENANT, None, number=-5, front=True,
                   client_id="other:sid", extra_data={"tenancy": {"tenant": "victim"}})
    body = outcome.body
    assert "front" not in body and "number" not in body and body["prompt_id"] == outcome.prompt_id
    assert body["client_id"].startswith("acme:") and "other" not in body["client_id"]
    assert body["extra_data"]["tenancy"] == {"tenant": "acme", "plan": "p"}
    assert walk({"1": node("KSampler")}, None, ADMIN, None, front=True).body["front"] is True


def test_a_clients_own_uuid_prompt_id_is_kept_and_any_other_is_refused():
    chosen = "4F1B7C2E-93a0-4d5e-8b6f-0123456789ab"
    assert walk({"1": node("KSampler")}, Plan(), prompt_id=chosen).body["prompt_id"] == chosen
    for none in (None, ""):
        picked = walk({"1": node("KSampler")}, Plan(), prompt_id=none)
        assert picked.body["prompt_id"] == picked.prompt_id and len(picked.prompt_id) == 36
    for bad in ("mine", chosen + "0", "{" + chosen + "}", chosen.replace("-", ""), 42, ["x"]):
        with pytest.raises(Refusal) as refused:
            walk({"1": node("KSampler")}, Plan(), prompt_id=bad)
        assert (refused.value.status, refused.value.reason) == (400, "invalid_prompt_id")


def test_the_editors_own_socket_id_is_kept():
    first = walk({"1": node("KSampler")}, Plan()).client_id
    assert walk({"1": node("KSampler")}, Plan(), client_id=first).client_id == first


# the cost estimate -----------------------------------------------------------------------------------------------
TALKING = Catalogue.build(
    {"LoadAudio": {"input": {"required": {"audio": [["a.wav"], {"audio_upload": True}]}}},
     "Speak": {"input": {"required": {"text": ["STRING", {}]}}},
     "Lipsync": {"input": {"required": {"audio": ["AUDIO"], "duration": ["FLOAT", {}]}}},
     "Frames": {"input": {"required": {"frames": ["INT", {}], "fps": ["FLOAT", {}]}}}},
    meta={"Speak": {"estimate": {"text_input": "text"}},
          "Lipsync": {"estimate": {"seconds_input": "duration", "audio_link": "audio"}},
          "Frames": {"estimate": {"frames_input": "frames", "fps_input": "fps"}}})


def test_the_estimate_adds_each_nodes_rule():
    prompt = {"1": node("Speak", text="hello world"), "2": node("Frames", frames=50, fps=25.0),
              "3": node("KSampler", steps=20)}
    assert estimate_seconds(prompt, TALKING, EstimateInputs()) == \
        round(speech_seconds("hello world") + 2.0, 3)


def test_a_requested_duration_is_capped_by_the_real_length_of_its_audio():
    prompt = {"1": node("LoadAudio", audio="a.wav"), "2": node("Lipsync", audio=["1", 0], duration=30.0)}
    inputs = EstimateInputs(file_seconds=lambda node_id, name: 4.25 if (node_id, name) == ("1", "audio") else None)
    assert estimate_seconds(prompt, TALKING, inputs) == 4.25
    prompt["2"]["inputs"]["duration"] = 0  # 0: as long as the audio
    assert estimate_seconds(prompt, TALKING, inputs) == 4.25
    assert estimate_seconds(prompt, TALKING, EstimateInputs()) == 0.0  # audio of unknown length, no duration


def test_the_operators_table_covers_packs_that_declare_nothing_and_wins_over_a_declaration():
    table = {"KSampler": {"seconds": 1.5}, "Frames": {"frames_input": "frames", "fps": 10}}
    prompt = {"1": node("KSampler"), "2": node("Frames", frames=50, fps=25.0)}
    assert estimate_seconds(prompt, TALKING, EstimateInputs(node_table=table)) == 6.5


def test_speech_is_estimated_per_script():
    assert speech_seconds("你好世界", {"cjk": 4.0, "latin": 10.0}) == 1.0
    assert speech_seconds("abcdefghij", {"cjk": 4.0, "latin": 10.0}) == 1.0


def test_the_estimate_ignores_what_is_not_a_number_or_a_node():
    prompt = {"1": node("Frames", frames="many", fps=True), "2": "not a node"}
    assert estimate_seconds(prompt, TALKING, EstimateInputs()) == 0.0


# the fair queue ------------------------------------------------------------------------------------------------
def test_a_burst_delays_only_its_own_tenant():
    queue = FairQueue()
    burst = [queue.number("busy", 10.0, 1.0) for _ in range(5)]
    newcomer = queue.number("calm", 10.0, 1.0)
    assert newcomer < burst[1]  # the newcomer runs right after the burst's first prompt


def test_a_heavier_plan_gets_turns_in_proportion_to_its_weight():
    queue = FairQueue()
    order = sorted([(queue.number("heavy", 10.0, 4.0), "heavy") for _ in range(8)]
                   + [(queue.number("light", 10.0, 1.0), "light") for _ in range(2)])
    assert [tenant for _, tenant in order[:5]].count("heavy") == 4


def test_virtual_time_moves_with_what_starts_so_an_idle_tenant_cannot_bank_turns():
    queue = FairQueue()
    for _ in range(3):
        queue.started(queue.number("busy", 10.0, 1.0))
    late = queue.number("idle", 10.0, 1.0)
    assert late > 30_000  # it starts from virtual now, not from 0 (numbers count thousandths of a second)
    assert queue.number("busy", 0.0, 1.0) - 30_000 == 1_000  # a free prompt still costs one second


def test_numbers_are_whole_and_a_tenants_own_never_tie():
    queue = FairQueue()
    own = [queue.number("vip", 0.0, 1e9) for _ in range(5)]  # a weight so large the cost rounds to nothing
    assert all(isinstance(n, int) for n in own)
    assert own == sorted(set(own))  # strictly increasing: ComfyUI's heap keeps the tenant's order
    assert isinstance(queue.number("calm", 2.5, 3.0), int)

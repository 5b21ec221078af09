"""GLM-TTS LM parity: input-id layout, logits of the tiny Llama, samplers and the KV-cached decode loop."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from nodes.glm_tts.lm import build_input_ids, generate_speech_tokens, load_llm
from nodes.glm_tts.sampling import (
    SamplingConfig,
    exponential_draws,
    ras_sampling,
    recorded_draws,
    topk_sampling,
)
from nodes.glm_tts.tokenizer import SpecialTokenIds
from tests.nodes.glm_tts.conftest import ParityFixtures

NAME = "llm"


@pytest.fixture(scope="module")
def io(parity):
    return parity.npz(NAME, "io.npz")


@pytest.fixture(scope="module")
def cases(parity):
    return json.loads((parity.dir(NAME) / "sampling_cases.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def ids(parity) -> SpecialTokenIds:
    raw = json.loads((parity.dir(NAME) / "special_token_ids.json").read_text(encoding="utf-8"))
    return SpecialTokenIds(**{k: v for k, v in raw.items() if not k.startswith("_")})


@pytest.fixture(scope="module")
def model(parity):
    return load_llm(parity.dir(NAME) / "ckpt_llm", "cpu", torch.float32)


@pytest.fixture(scope="module")
def input_ids(io, ids):
    return build_input_ids(io["prompt_text_ids"][0].tolist(), io["text_ids"][0].tolist(),
                           io["prompt_speech_tokens"][0].tolist(), ids)


def _tol(parity):
    return parity.meta(NAME)["tolerance"]["logits/logp/hidden"]


def test_input_ids_are_prompt_text_text_boa_and_offset_prompt_speech(io, input_ids):
    np.testing.assert_array_equal(input_ids.numpy(), io["input_ids"])


def test_prompt_speech_is_not_offset_when_the_prompt_text_is_empty(ids):
    assert build_input_ids([], [1, 2], [5, 6], ids).tolist() == [[1, 2, ids.boa, 5, 6]]


def test_first_pass_logits_and_hidden_states_match_upstream(parity, io, model, input_ids):
    t = _tol(parity)
    with torch.inference_mode():
        out = model(input_ids=input_ids, output_hidden_states=True)
        emb = model.get_input_embeddings()(input_ids[:, : io["first_layer_input_embeds"].shape[0]])
    np.testing.assert_allclose(emb[0].numpy(), io["first_layer_input_embeds"], atol=t["atol"], rtol=t["rtol"])
    n = io["logits_last4"].shape[0]
    np.testing.assert_allclose(out.logits[0, -n:].numpy(), io["logits_last4"], atol=t["atol"], rtol=t["rtol"])
    logp = out.logits[0, -1].log_softmax(-1)
    np.testing.assert_allclose(logp.numpy(), io["logp_last"], atol=t["atol"], rtol=t["rtol"])
    hidden = out.hidden_states[-1][0]
    np.testing.assert_allclose(hidden.numpy(), io["final_hidden_states"], atol=t["atol"], rtol=t["rtol"])


def test_samplers_pick_the_recorded_token_given_the_recorded_exponential_draws(io, cases):
    for case in cases["unit_cases"]:
        i, p = case["case"], case["params"]
        logp = torch.from_numpy(io[f"unit{i}.logp"])
        draws = recorded_draws([io[f"unit{i}.draw{j}.q"] for j in range(case["n_draws"])])
        if case["kind"] == "ras":
            cfg = SamplingConfig(top_p=p["top_p"], top_k=p["top_k"], temperature=p["temperature"],
                                 win_size=p["win_size"], tau_r=p["tau_r"])
            token = ras_sampling(logp, case["decoded_tokens"], draws, cfg)
        else:
            token = topk_sampling(logp, draws, p["sampling(top_k)"], p["eos_id"], p["ignore_eos"])
        assert token == case["expected_token"], f"unit case {i}"


def test_multinomial_draw_is_the_exponential_race_argmax_p_over_q(io, cases):
    for case in cases["unit_cases"]:
        for j, index in enumerate(case["draw_result_index"]):
            probs = io[f"unit{case['case']}.draw{j}.probs"]
            q = io[f"unit{case['case']}.draw{j}.q"]
            assert int(np.argmax(probs / q)) == index


def stepped_runs(cases) -> list[str]:
    """The runs whose per-step draws the fixture records (`<run>_steps`)."""
    runs = [key[: -len("_steps")] for key in cases if key.endswith("_steps")]
    return [run for run in runs if run in cases["ar_runs"]]


def test_ras_decode_with_recorded_draws_reproduces_upstream_tokens(io, cases, ids, model, input_ids):
    assert stepped_runs(cases), "the fixture records the draws of at least one run"
    for run in stepped_runs(cases):
        recorded = []
        for step in cases[f"{run}_steps"]:
            recorded.append(io[f"{run}.step{step['step']}.q_nucleus"])
            if step["fallback"]:
                recorded.append(io[f"{run}.step{step['step']}.q_full"])
        tokens = generate_speech_tokens(model, input_ids, io["text_ids"].shape[1], ids, recorded_draws(recorded))
        assert tokens == cases["ar_runs"][run]["tokens"], run


def test_decode_stops_within_the_text_ratio_bounds(io, cases, ids, model, input_ids):
    steps = []
    tokens = generate_speech_tokens(model, input_ids, io["text_ids"].shape[1], ids,
                                    exponential_draws(torch.Generator().manual_seed(0)),
                                    callback=lambda step, total: steps.append((step, total)))
    assert cases["min_len"] <= len(tokens) <= cases["max_len"]
    assert steps[-1][1] == cases["max_len"] and len(steps) == len(tokens) + 1


def test_callback_exception_interrupts_the_decode(io, ids, model, input_ids):
    class Stop(Exception):
        pass

    def stop(step, total):
        if step == 3:
            raise Stop

    with pytest.raises(Stop):
        generate_speech_tokens(model, input_ids, io["text_ids"].shape[1], ids,
                               exponential_draws(torch.Generator().manual_seed(0)), callback=stop)


def pytest_generate_tests(metafunc):
    if "run" in metafunc.fixturenames:
        cases = ParityFixtures().collect(NAME, "sampling_cases.json") or {}
        metafunc.parametrize("run", list(cases.get("ar_runs", {})))


def test_seeded_decode_matches_upstream_on_cpu_rng(io, cases, ids, model, input_ids, run):
    # Upstream seeds torch's global RNG; a CPU generator with the same seed yields the same Exp(1) stream.
    spec = cases["ar_runs"][run]
    draws = exponential_draws(torch.Generator().manual_seed(spec["seed"]))
    tokens = generate_speech_tokens(model, input_ids, io["text_ids"].shape[1], ids, draws,
                                    SamplingConfig(method=spec["sample_method"]))
    assert tokens == spec["tokens"]


def test_topk_does_not_redraw_forever_when_eos_is_the_only_candidate():
    logp = torch.tensor([0.0, 5.0, 1.0]).log_softmax(0)
    draws = exponential_draws(torch.Generator().manual_seed(0))
    assert topk_sampling(logp, draws, k=1, eos_id=1, ignore_eos=True) == 2
    assert topk_sampling(logp, draws, k=1, eos_id=1, ignore_eos=False) == 1

"""GLM-TTS flow parity: DiT estimator calls, Euler steps with CFG, and the mel cut of each fixture case."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodes.glm_tts.flow import Flow, FlowConfig, mel_frames_for

NAME = "flow"


@pytest.fixture(scope="module")
def io(parity):
    return parity.npz(NAME, "io.npz")


@pytest.fixture(scope="module")
def tol(parity):
    return parity.meta(NAME)["tolerance"]


@pytest.fixture(scope="module")
def flow(parity):
    spec = json.loads((parity.dir(NAME) / "flow_config.json").read_text(encoding="utf-8"))
    cfg = FlowConfig.from_upstream(spec["Flow"], spec["DiT_overrides"])
    inference = spec["inference"]
    cfg = replace(cfg, n_timesteps=inference["n_timesteps"], inference_cfg_rate=inference["inference_cfg_rate"],
                  t_scheduler=inference["t_scheduler"])
    model = Flow(cfg)
    model.load_state_dict(load_file(str(parity.dir(NAME) / "flow.safetensors")), strict=True)
    return model.eval()


@pytest.fixture(scope="module")
def traced(parity, io):
    """The case whose estimator calls and Euler states the fixture records."""
    cases = [c for c in parity.meta(NAME)["inputs"]["cases"] if f"{c}.mid_x_before_step1" in io]
    assert cases, "the flow fixture records the intermediate states of one case"
    return cases[0]


def _run(flow, io, case, callback=None):
    return flow.inference(torch.from_numpy(io[f"{case}.in_tokens"])[None],
                          torch.from_numpy(io[f"{case}.in_prompt_tokens"]),
                          torch.from_numpy(io[f"{case}.in_prompt_feat"]),
                          torch.from_numpy(io["in_embedding"]),
                          noise=torch.from_numpy(io[f"{case}.in_noise"]), callback=callback)


@pytest.mark.parametrize("branch", ["cond", "uncond"])
def test_first_estimator_call_of_each_cfg_branch_matches_upstream_dit(flow, io, tol, traced, branch):
    p = f"{traced}.mid_first_estimator_call_{branch}."
    with torch.inference_mode():
        out = flow.estimator(torch.from_numpy(io[p + "middle_point_btd"]), torch.from_numpy(io[p + "condition_btd"]),
                             torch.from_numpy(io[p + "text"]), torch.from_numpy(io[p + "time_step_1d"]),
                             torch.from_numpy(io[p + "spkr_emb_bd"]))
    np.testing.assert_allclose(out.numpy(), io[p + "out"], atol=tol["atol"], rtol=tol["rtol"])


def test_euler_states_before_every_step_match_upstream(flow, io, tol, traced):
    seen: list[torch.Tensor] = []
    calls = []

    def record(module, args):
        calls.append(1)
        if len(calls) % 2 == 1:  # the conditional pass sees x before the step
            seen.append(args[0].clone())

    handle = flow.estimator.register_forward_pre_hook(record)
    try:
        _run(flow, io, traced)
    finally:
        handle.remove()
    steps = sorted(int(k.rsplit("step", 1)[1]) for k in io if k.startswith(f"{traced}.mid_x_before_step"))
    assert len(seen) == len(steps) == flow.cfg.n_timesteps
    for k in steps:
        ref = io[f"{traced}.mid_x_before_step{k}"]
        np.testing.assert_allclose(seen[k - 1].numpy(), ref, atol=tol["atol"], rtol=tol["rtol"])


def test_every_case_reproduces_upstream_mel(parity, flow, io, tol):
    for case, spec in parity.meta(NAME)["inputs"]["cases"].items():
        mel = _run(flow, io, case)
        ref = io[f"{case}.out_mel"]
        assert mel.shape == ref.shape == (1, 80, spec["out_mel_frames"]), case
        np.testing.assert_allclose(mel.numpy(), ref, atol=tol["atol"], rtol=tol["rtol"], err_msg=case)


def test_mel_length_is_floored_through_a_python_float(parity, flow):
    # int(113 / 25 * 50) == 225, not 226: the fixture's case C pins this quirk.
    for spec in parity.meta(NAME)["inputs"]["cases"].values():
        n = spec["n_prompt_tok"] + spec["n_tok"]
        assert mel_frames_for(n, flow.cfg) == spec["feat_len"]


def test_prompt_mel_length_sets_the_cut_not_the_prompt_tokens(parity):
    for spec in parity.meta(NAME)["inputs"]["cases"].values():
        assert spec["out_mel_frames"] == spec["feat_len"] - spec["n_prompt_mel"]


def test_solver_reports_each_step_and_can_be_interrupted(flow, io, traced):
    steps = []
    _run(flow, io, traced, callback=lambda s, n: steps.append((s, n)))
    assert steps == [(s, flow.cfg.n_timesteps) for s in range(1, flow.cfg.n_timesteps + 1)]

    class Interrupted(Exception):
        pass

    def stop(step, total):
        raise Interrupted

    with pytest.raises(Interrupted):
        _run(flow, io, traced, callback=stop)


def test_noise_of_the_wrong_shape_is_refused(flow, io, traced):
    with pytest.raises(ValueError, match="noise_shape_mismatch"):
        flow.inference(torch.from_numpy(io[f"{traced}.in_tokens"])[None],
                       torch.from_numpy(io[f"{traced}.in_prompt_tokens"]),
                       torch.from_numpy(io[f"{traced}.in_prompt_feat"]), torch.from_numpy(io["in_embedding"]),
                       noise=torch.zeros(1, 3, 80))

"""Sonic UNet (SVD + masked audio IP-adapter) against upstream forwards (fixture `unet`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from nodes.shared.weights import load_weights
from nodes.sonic.attention import face_mask_weights
from nodes.sonic.config import read_config
from nodes.sonic.unet import SonicUNet, UNetConfig
from tests.nodes.sonic.conftest import parity_root


def recorded_cases(path: Path) -> list[str]:
    """The cases of io.npz (`<case>.in.sample`), read at collection time; none when the set lacks it."""
    if not path.exists():
        return []
    with np.load(path) as data:
        return sorted(key.removesuffix(".in.sample") for key in data.files if key.endswith(".in.sample"))


def pytest_generate_tests(metafunc):
    if "case" in metafunc.fixturenames:
        metafunc.parametrize("case", recorded_cases(parity_root() / "unet" / "io.npz"))


@pytest.fixture(scope="module")
def fixture(parity):
    return parity("unet")


@pytest.fixture(scope="module")
def data(fixture):
    return fixture.arrays("io.npz")


@pytest.fixture(scope="module")
def unet(fixture):
    unet = SonicUNet(read_config(UNetConfig, fixture.path / "config.json"))
    return load_weights(unet, load_file(fixture.path / "unet.safetensors")).eval()


@pytest.fixture(scope="module")
def traced(data):
    """The case whose block outputs and unmasked output the fixture also records."""
    cases = [key.removesuffix(".out.sample_without_mask") for key in data if key.endswith(".out.sample_without_mask")]
    assert cases, "the unet fixture records one case without its face mask"
    return cases[0]


def inputs(data, case: str) -> dict[str, torch.Tensor]:
    def get(name: str) -> torch.Tensor:
        return torch.from_numpy(data[f"{case}.in.{name}"])

    return {
        "sample": get("sample"),
        "timestep": get("timestep"),
        "image_tokens": get("clip_tokens"),
        "audio_tokens": get("audio_tokens"),
        "added_time_ids": get("added_time_ids"),
        "face_mask": get("face_mask"),
    }


def test_checkpoint_keys_include_audio_adapter_on_spatial_and_temporal_attn2(unet, fixture):
    keys = set(load_file(fixture.path / "unet.safetensors"))
    assert keys == set(unet.state_dict())
    ip_keys = {k for k in keys if ".processor.to_k_ip.0." in k}
    assert any("temporal_transformer_blocks" in k for k in ip_keys)
    assert any(".transformer_blocks." in k for k in ip_keys)


@torch.inference_mode()
def test_unet_matches_upstream_with_face_mask(unet, data, fixture, case):
    scale = fixture.json("config.json")["ip_adapter"]["scale"][0]
    out = unet(**inputs(data, case), audio_scale=scale)
    np.testing.assert_allclose(out.numpy(), data[f"{case}.out.sample"], **fixture.tolerance())


@torch.inference_mode()
def test_unet_without_mask_lets_audio_act_everywhere(unet, data, fixture, traced):
    scale = fixture.json("config.json")["ip_adapter"]["scale"][0]
    args = inputs(data, traced) | {"face_mask": None}
    out = unet(**args, audio_scale=scale)
    np.testing.assert_allclose(out.numpy(), data[f"{traced}.out.sample_without_mask"], **fixture.tolerance())


@torch.inference_mode()
def test_unet_block_outputs_match_upstream_intermediates(unet, data, fixture, traced):
    captured: dict[str, torch.Tensor] = {}
    names = {
        "conv_in": unet.conv_in,
        "time_embedding": unet.time_embedding,
        "add_embedding": unet.add_embedding,
        "mid_block": unet.mid_block,
    }
    names |= {f"down_blocks.{i}": block for i, block in enumerate(unet.down_blocks)}
    names |= {f"up_blocks.{i}": block for i, block in enumerate(unet.up_blocks)}

    def keep(name):
        def hook(_module, _args, output):
            captured[name] = output[0] if isinstance(output, tuple) else output

        return hook

    handles = [module.register_forward_hook(keep(name)) for name, module in names.items()]
    try:
        unet(**inputs(data, traced))
    finally:
        for handle in handles:
            handle.remove()
    prefix = f"{traced}.intermediate."
    stored = [key for key in data if key.startswith(prefix)]
    assert stored
    for key in stored:
        np.testing.assert_allclose(captured[key[len(prefix) :]].numpy(), data[key], **fixture.tolerance(), err_msg=key)


def test_face_mask_downsample_matches_upstream_for_every_query_count(data):
    stored = [key for key in data if key.startswith("mask_downsample.")]
    assert stored
    for key in stored:
        case, queries = key.removeprefix("mask_downsample.").rsplit("_q", 1)
        mask = torch.from_numpy(data[f"{case}.in.face_mask"])
        np.testing.assert_array_equal(face_mask_weights(mask, int(queries))[:, 0].numpy(), data[key], err_msg=key)


@torch.inference_mode()
def test_repeated_calls_with_the_same_token_tensors_give_the_same_output(unet, data, traced):
    # Upstream unsqueezes the caller's IP-token list in place on first use; ours never touches its inputs.
    args = inputs(data, traced)
    tokens_before = args["audio_tokens"].clone()
    first = unet(**args)
    second = unet(**args)
    assert torch.equal(first, second)
    assert torch.equal(args["audio_tokens"], tokens_before)


@torch.inference_mode()
def test_audio_scale_zero_removes_the_audio_branch(unet, data, traced):
    args = inputs(data, traced)
    silent = unet(**args, audio_scale=0.0)
    other_audio = unet(**(args | {"audio_tokens": torch.randn_like(args["audio_tokens"])}), audio_scale=0.0)
    assert torch.equal(silent, other_audio)


@pytest.mark.parametrize("field", ["down_block_types", "up_block_types", "num_attention_heads", "layers_per_block"])
def test_a_config_whose_per_block_lists_disagree_fails_naming_the_field(field):
    with pytest.raises(ValueError, match=f"{field} has 3 entries for 4 blocks"):
        UNetConfig(**{field: (1, 2, 3)})

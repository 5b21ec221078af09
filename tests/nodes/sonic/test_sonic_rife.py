"""RIFE interpolation against upstream `RIFEModel.inference` and Sonic's 2N-1 loop (fixture `rife`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from nodes.shared.weights import read_state_dict, remove_substring
from nodes.sonic.pipeline import RIFE_KEY_PART, interpolate, load_rife
from nodes.sonic.rife import block_width


@pytest.fixture(scope="module")
def fixture(parity):
    return parity("rife")


@pytest.fixture(scope="module")
def data(fixture):
    return fixture.arrays("io.npz")


@pytest.fixture(scope="module")
def net(fixture):
    return load_rife(fixture.path / "flownet.safetensors", "cpu")


def test_pickle_and_safetensors_hold_the_same_module_prefixed_weights(fixture):
    pickled = read_state_dict(fixture.path / "flownet.pkl")
    safe = read_state_dict(fixture.path / "flownet.safetensors")
    assert all(key.startswith(RIFE_KEY_PART) for key in pickled)
    assert pickled.keys() == safe.keys()
    assert all(torch.equal(pickled[key], safe[key]) for key in pickled)


def test_block_width_is_read_from_the_weights(fixture, net):
    state = remove_substring(read_state_dict(fixture.path / "flownet.pkl"), RIFE_KEY_PART)
    width = block_width(state)
    assert net.block0.conv0[1][0].out_channels == width
    assert f"c={width}" in fixture.meta["tiny_model_config"]["blocks"]


@torch.inference_mode()
def test_middle_frame_matches_upstream(net, data, fixture):
    middle = net(torch.from_numpy(data["in_frame0"]), torch.from_numpy(data["in_frame1"])).clamp(0, 1)
    np.testing.assert_allclose(middle.numpy(), data["out_middle"], **fixture.tolerance())


def test_sequence_of_n_frames_becomes_2n_minus_1_frames(net, data, fixture):
    sequence = torch.from_numpy(data["in_sequence"])[0].permute(1, 2, 3, 0)
    doubled = interpolate(net, sequence)
    expected = data["out_sequence_interpolated"][0].transpose(1, 2, 3, 0)
    assert doubled.shape[0] == 2 * sequence.shape[0] - 1
    np.testing.assert_allclose(doubled.numpy(), expected, **fixture.tolerance())
    assert torch.equal(doubled[::2], sequence)


def test_interpolation_callback_can_interrupt(net, data):
    sequence = torch.from_numpy(data["in_sequence"])[0].permute(1, 2, 3, 0)

    def stop(done: int, total: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        interpolate(net, sequence, stop)

"""Checkpoint reading: format by magic bytes, weights-only pickles, strict loading onto meta modules."""

from __future__ import annotations

import collections
import pickle

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from nodes.shared.weights import CheckpointError, load_weights, read_state_dict, remove_substring, strip_prefix


def test_torch_zip_and_safetensors_are_recognised_whatever_the_extension(tmp_path):
    state = {"weight": torch.arange(6.0).reshape(2, 3)}
    torch.save(collections.OrderedDict(state), tmp_path / "a.safetensors")
    save_file(state, tmp_path / "b.pth")
    for name in ("a.safetensors", "b.pth"):
        assert torch.equal(read_state_dict(tmp_path / name)["weight"], state["weight"])


def test_legacy_non_zip_pickles_load_weights_only(tmp_path):
    # the released RIFE flownet.pkl is most likely in torch's pre-1.6 format
    state = collections.OrderedDict(weight=torch.ones(2, 2))
    torch.save(state, tmp_path / "flownet.pkl", _use_new_zipfile_serialization=False)
    assert not (tmp_path / "flownet.pkl").read_bytes().startswith(b"PK")
    assert torch.equal(read_state_dict(tmp_path / "flownet.pkl")["weight"], state["weight"])


class Payload:
    """Stands for any object whose unpickling would run code."""


def test_pickles_that_reference_code_are_refused(tmp_path):
    torch.save({"weight": torch.zeros(1), "payload": Payload()}, tmp_path / "evil.pth")
    with pytest.raises(pickle.UnpicklingError, match=r"(?i)weights only"):
        read_state_dict(tmp_path / "evil.pth")


@pytest.mark.filterwarnings("ignore::DeprecationWarning")
def test_torchscript_archives_are_refused(tmp_path):
    torch.jit.save(torch.jit.script(nn.Linear(2, 2)), tmp_path / "detector.pt")
    with pytest.raises(CheckpointError, match="TorchScript"):
        read_state_dict(tmp_path / "detector.pt")


def test_meta_modules_take_the_loaded_tensors_and_missing_keys_fail():
    with torch.device("meta"):
        layer = nn.Linear(2, 3)
    weights = {"weight": torch.ones(3, 2), "bias": torch.zeros(3)}
    assert load_weights(layer, weights).weight.data_ptr() == weights["weight"].data_ptr()
    with torch.device("meta"):
        other = nn.Linear(2, 3)
    with pytest.raises(CheckpointError, match="missing"):
        load_weights(other, {"weight": torch.ones(3, 2)})


def test_key_transforms_keep_only_matching_keys():
    state = {"model.encoder.conv1.weight": 1, "model.decoder.x": 2, "module.block0.w": 3, "other": 4}
    assert strip_prefix(state, "model.encoder.") == {"conv1.weight": 1}
    assert remove_substring(state, "module.") == {"block0.w": 3}

"""`python -m nodes.sonic.convert`: a pickled checkpoint becomes safetensors with the same keys, once."""

from __future__ import annotations

import collections

import pytest
import torch

from nodes.shared.weights import read_state_dict
from nodes.sonic.convert import convert_to_safetensors, main


def test_pth_becomes_safetensors_beside_it_with_the_same_tensors(tmp_path):
    state = collections.OrderedDict(weight=torch.randn(3, 4), steps=torch.tensor(7))
    state["tied"] = state["weight"]  # shared storage, which safetensors refuses as such
    torch.save(state, tmp_path / "unet.pth")
    target = convert_to_safetensors(tmp_path / "unet.pth")
    assert target == tmp_path / "unet.safetensors"
    loaded = read_state_dict(target)
    assert loaded.keys() == state.keys()
    assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_fp16_conversion_halves_floats_and_keeps_integers(tmp_path, capsys):
    torch.save({"weight": torch.randn(2, 2), "count": torch.tensor([3])}, tmp_path / "audio2token.pth")
    assert main([str(tmp_path / "audio2token.pth"), "--fp16"]) == 0
    assert "audio2token.safetensors" in capsys.readouterr().out
    loaded = read_state_dict(tmp_path / "audio2token.safetensors")
    assert loaded["weight"].dtype == torch.float16 and loaded["count"].dtype == torch.int64


def test_a_safetensors_file_is_not_converted_onto_itself(tmp_path):
    with pytest.raises(ValueError, match="already"):
        convert_to_safetensors(tmp_path / "unet.safetensors")

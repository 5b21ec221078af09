"""Our modules, built with the released configs on the meta device, have exactly the key names and
shapes of the upstream checkpoint files (after upstream's own key transforms)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import torch
from torch import nn

from nodes.shared.weights import remove_substring, strip_prefix
from nodes.sonic.audio_adapters import Audio2BucketConfig, Audio2BucketModel, AudioProjConfig, AudioProjModel
from nodes.sonic.config import from_mapping
from nodes.sonic.rife import IFNet, block_width
from nodes.sonic.unet import SonicUNet, UNetConfig
from nodes.sonic.vae import TemporalVAE, VAEConfig
from nodes.sonic.whisper import WhisperEncoder, WhisperEncoderConfig

Shapes = dict[str, tuple[int, ...]]


def _file_shapes(manifest: dict[str, Any]) -> Shapes:
    return {key: tuple(entry["shape"]) for key, entry in manifest["tensors"].items()}


def _meta_shapes(keys: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {key: torch.empty(shape, device="meta") for key, shape in keys.items()}


def _unet(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    return SonicUNet(from_mapping(UNetConfig, manifest["config"]["unet_config"])), _file_shapes(manifest)


def _audio2token(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    config = from_mapping(AudioProjConfig, manifest["config"]["constructor_kwargs"])
    return AudioProjModel(config), _file_shapes(manifest)


def _audio2bucket(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    config = from_mapping(Audio2BucketConfig, manifest["config"]["constructor_kwargs"])
    return Audio2BucketModel(config), _file_shapes(manifest)


def _rife(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    shapes = remove_substring(_meta_shapes(_file_shapes(manifest)), "module.")
    return IFNet(block_width(shapes)), {key: tuple(value.shape) for key, value in shapes.items()}


def _whisper(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    file_shapes = _file_shapes(manifest)
    assert set(manifest["encoder_keys"]) == {key for key in file_shapes if key.startswith("model.encoder.")}
    shapes = strip_prefix(_meta_shapes(file_shapes), "model.encoder.")
    config = from_mapping(WhisperEncoderConfig, manifest["config"]["config"])
    return WhisperEncoder(config), {key: tuple(value.shape) for key, value in shapes.items()}


def _vae(manifest: dict[str, Any]) -> tuple[nn.Module, Shapes]:
    return TemporalVAE(from_mapping(VAEConfig, manifest["config"]["config"])), _file_shapes(manifest)


BUILDERS: dict[str, Callable[[dict[str, Any]], tuple[nn.Module, Shapes]]] = {
    "checkpoints/Sonic/unet.pth.manifest.json": _unet,
    "checkpoints/Sonic/audio2token.pth.manifest.json": _audio2token,
    "checkpoints/Sonic/audio2bucket.pth.manifest.json": _audio2bucket,
    "checkpoints/RIFE/flownet.pkl.manifest.json": _rife,
    "checkpoints/whisper-tiny/model.safetensors.manifest.json": _whisper,
    "checkpoints/stable-video-diffusion-img2vid-xt/vae/diffusion_pytorch_model.fp16.safetensors.manifest.json": _vae,
}


@pytest.mark.parametrize("path", list(BUILDERS), ids=lambda path: path.split("/")[-1].split(".")[0])
def test_module_keys_and_shapes_equal_the_upstream_checkpoint(manifest, path):
    data = manifest(path)
    with torch.device("meta"):
        module, expected = BUILDERS[path](data)
    ours = {key: tuple(value.shape) for key, value in module.state_dict().items()}
    assert sorted(set(ours) - set(expected)) == []
    assert sorted(set(expected) - set(ours)) == []
    assert {key: shape for key, shape in ours.items() if expected[key] != shape} == {}


def test_released_unet_carries_64_audio_adapter_tensors(manifest):
    data = manifest("checkpoints/Sonic/unet.pth.manifest.json")
    ip_keys = [key for key in data["tensors"] if ".processor.to_" in key]
    assert sorted(ip_keys) == sorted(data["ip_adapter_keys"])
    assert len(ip_keys) == data["tensor_count"] - data["base_svd_unet_key_count"]

"""Sonic's ComfyUI glue against ComfyUI's own modules (imported from the ComfyUI under test, no server): the SVD
VAE and CLIP_VISION that ImageOnlyCheckpointLoader gives, and the model cache under comfy.model_management."""

from __future__ import annotations

import logging
import sys
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from nodes.sonic import FaceBox
from nodes.sonic.image_encoder import image_embeds, load_image_encoder
from nodes.sonic.sgm_vae import config_from_state, load_sgm_vae, to_diffusers
from nodes.sonic.vae import TemporalVAE
from nodes.sonic_comfy import models as sonic_models
from nodes.sonic_comfy.files import SonicFolder
from nodes.sonic_comfy.steps import prepare, render
from tests.conftest import FIXTURES
from tests.harness.comfyui import comfyui_root
from tests.harness.tiny_models import FixedFaces, write_sonic

COMFYUI = comfyui_root()
pytestmark = pytest.mark.skipif(COMFYUI is None, reason="no ComfyUI checkout (set COMFYUI_DIR or run make setup)")
ENCODER = FIXTURES / "parity" / "denoise" / "image_encoder"


@pytest.fixture(scope="module")
def comfy():
    """ComfyUI's modules in this process, CPU only (appended to sys.path: our `nodes` package stays ours)."""
    if str(COMFYUI) not in sys.path:
        sys.path.append(str(COMFYUI))
    from comfy.cli_args import args

    args.cpu = True
    import comfy.clip_vision
    import comfy.ldm.models.autoencoder
    import comfy.model_management

    return comfy


def svd_vae(comfy, width: int, levels: int):
    """The VAE module ComfyUI builds for an SVD checkpoint (comfy/sd.py), at any width."""
    encoder = {"double_z": True, "z_channels": 4, "resolution": 256, "in_channels": 3, "out_ch": 3, "ch": width,
               "ch_mult": [1, 2, 4, 4][:levels], "num_res_blocks": 2, "attn_resolutions": [], "dropout": 0.0}
    decoder = dict(encoder, video_kernel_size=[3, 1, 1], alpha=0.0)
    return comfy.ldm.models.autoencoder.AutoencodingEngine(
        regularizer_config={"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"},
        encoder_config={"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": encoder},
        decoder_config={"target": "comfy.ldm.modules.temporal_ae.VideoDecoder", "params": decoder},
    )


def tiny_svd_vae(comfy):
    torch.manual_seed(0)
    vae = svd_vae(comfy, 32, 4).eval()
    with torch.no_grad():
        for parameter in vae.parameters():  # ComfyUI's layers skip initialisation
            parameter.copy_(torch.randn_like(parameter) * 0.2)
    return vae


def tiny_clip_vision(comfy):
    """ComfyUI's CLIP_VISION for the tiny image encoder, in float32 (ComfyUI picks float16 even on the CPU)."""
    clip = comfy.clip_vision.ClipVisionModel(str(ENCODER / "config.json"))
    clip.model.float()
    assert not clip.load_sd(load_file(str(ENCODER / "model.safetensors"))).missing_keys
    return clip


def test_comfyui_svd_vae_keys_map_one_to_one_onto_the_diffusers_vae(comfy):
    with torch.device("meta"):
        state = svd_vae(comfy, 128, 4).state_dict()  # the released SVD size
        config = config_from_state(state)
        ours = TemporalVAE(config).state_dict()
    converted = to_diffusers(state, config)
    assert config.block_out_channels == (128, 256, 512, 512) and config.layers_per_block == 2
    assert converted.keys() == ours.keys()
    assert all(converted[k].shape == ours[k].shape for k in ours)


def test_comfyui_svd_vae_gives_the_same_latents_and_frames_once_converted(comfy):
    engine = tiny_svd_vae(comfy)
    vae = load_sgm_vae(engine.state_dict(), "cpu", torch.float32)
    image, latents = torch.rand(2, 3, 32, 32) * 2 - 1, torch.randn(5, 4, 4, 4)
    with torch.no_grad():
        torch.testing.assert_close(vae.encode_mean(image), engine.encoder(image).chunk(2, dim=1)[0])
        torch.testing.assert_close(vae.decode(latents, 5), engine.decoder(latents), atol=1e-5, rtol=1e-5)


def test_comfyui_clip_vision_gives_the_embedding_of_the_image_encoder_folder(comfy):
    pixels = torch.randn(1, 3, 224, 224)
    adapted = sonic_models.ComfyClipVision(tiny_clip_vision(comfy), torch.float32)
    with torch.no_grad():
        expected = image_embeds(load_image_encoder(ENCODER, torch.device("cpu"), torch.float32), pixels)
        torch.testing.assert_close(image_embeds(adapted, pixels), expected, atol=1e-5, rtol=1e-5)


@pytest.fixture
def folder(tmp_path):
    sonic_models.CACHE.release()
    yield SonicFolder((write_sonic(tmp_path),))
    sonic_models.CACHE.release()


def test_models_load_once_and_go_when_comfyui_unloads_them(comfy, folder, caplog):
    mm = comfy.model_management
    with caplog.at_level(logging.INFO, logger="sonic"):
        first = sonic_models.load(folder, "auto", "auto")
        assert sonic_models.load(folder, "auto", "auto") is first
        assert first.models.dtype == torch.float32  # ComfyUI's choice on the CPU
        sonic_models.on_device(first)
        sonic_models.on_device(first)  # ComfyUI re-registers a loaded model: that is no unload
        assert sonic_models.CACHE.value is first
        assert any(loaded.model is first.patcher for loaded in mm.current_loaded_models)
        mm.unload_all_models()  # what POST /free runs
        assert sonic_models.CACHE.value is None
        assert sonic_models.load(folder, "auto", "auto") is not first
    assert caplog.text.count("[sonic] loaded models") == 2
    assert caplog.text.count("[sonic] using the models already loaded") == 1
    assert caplog.text.count("[sonic] released cached models") == 1


def test_another_dtype_replaces_the_cached_models(comfy, folder):
    first = sonic_models.load(folder, "auto", "fp32")
    second = sonic_models.load(folder, "auto", "bf16")
    assert second is not first and second.models.dtype == torch.bfloat16
    assert sonic_models.CACHE.value is second


def test_sonic_runs_with_comfyui_vae_and_clip_vision_instead_of_folders(comfy, folder, read_image):
    for name in ("vae", "image_encoder"):
        assert (folder.roots[0] / name).is_dir()
    comfy_vae = SimpleNamespace(get_sd=tiny_svd_vae(comfy).state_dict)
    loaded = sonic_models.load(folder, "auto", "fp32", vae=comfy_vae, clip_vision=tiny_clip_vision(comfy))
    assert isinstance(loaded.models.image_encoder, sonic_models.ComfyClipVision)
    assert loaded.models.vae.config.layers_per_block == 2  # the ComfyUI VAE's, not models/sonic/vae's
    portrait = read_image(FIXTURES / "media" / "portrait_astronaut_256.png")
    speech = {"waveform": torch.randn(1, 1, 16000) * 0.1, "sample_rate": 16000}
    prepared, _ = prepare(portrait, speech, 0.5, 64, 0.5, FixedFaces(FaceBox(84, 16, 62, 74)))
    result = render(sonic_models.on_device(loaded), prepared, 0, 1, 1.0, 1.0, interpolate_frames=False)
    assert result.frames.shape == (6, 64, 64, 3) and torch.isfinite(result.frames).all()

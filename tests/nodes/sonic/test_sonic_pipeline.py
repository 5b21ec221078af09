"""End to end through the public API: checkpoint files + portrait + speech -> upstream's video."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from nodes.sonic.crop import FaceBox
from nodes.sonic.pipeline import SonicPaths, interpolate, load_sonic_models, preprocess, sample
from nodes.sonic.whisper_features import AUDIO_FRAMES_PER_SECOND

SEED_PATTERN = r"seed_everything\((\d+)\)"


@pytest.fixture(scope="module")
def paths(parity) -> SonicPaths:
    denoise, unet, adapters = parity("denoise"), parity("unet"), parity("audio_adapters")
    return SonicPaths(
        unet=unet.path / "unet.safetensors",
        unet_config=unet.path / "config.json",
        audio2token=adapters.path / "audio2token.safetensors",
        audio2bucket=adapters.path / "audio2bucket.safetensors",
        adapter_config=adapters.path / "config.json",
        vae_dir=denoise.path / "vae",
        image_encoder_dir=denoise.path / "image_encoder",
        whisper_dir=parity("whisper_features").path / "whisper-tiny-random",
        scheduler_config=denoise.path / "scheduler" / "scheduler_config.json",
        rife=parity("rife").path / "flownet.pkl",
    )


@pytest.fixture(scope="module")
def models(paths):
    return load_sonic_models(paths, "cpu", torch.float32)


def test_files_to_video_reproduce_upstream_sonic_test(
    models, parity, denoise_settings, pipeline_call, read_image, read_wav
):
    fixture = parity("denoise")
    prep = fixture.meta["inputs"]["image_prep"]
    settings = dataclasses.replace(denoise_settings, area=prep["area"])
    # half a frame of slack so float rounding of duration·25 cannot drop the last frame
    duration = (prep["frame_limit"] + 0.5) / AUDIO_FRAMES_PER_SECOND
    condition = preprocess(
        read_image(fixture.media(prep["image"])),
        read_wav(fixture.media(prep["audio"])),
        FaceBox(*prep["face_bbox_xywh"]),
        duration=duration,
        min_resolution=prep["min_resolution"],
        settings=settings,
        mel=models.mel,
    )
    assert condition.audio_frames == prep["frame_limit"]

    frames = sample(
        models,
        condition,
        seed=fixture.precondition(SEED_PATTERN),
        inference_steps=pipeline_call["num_inference_steps"],
        dynamic_scale=pipeline_call["motion_bucket_scale"],
        ip_audio_scale=parity("unet").json("config.json")["ip_adapter"]["scale"][0],
        settings=settings,
    )

    expected = fixture.arrays("io.npz")["out_video_0_1"][0].transpose(1, 2, 3, 0)
    np.testing.assert_allclose(frames.numpy(), expected, **fixture.tolerance("out_frames/out_video"))

    video = interpolate(models.rife, frames)
    assert video.shape == (2 * frames.shape[0] - 1, *frames.shape[1:])


def test_too_short_audio_is_refused_with_a_reason():
    image = torch.zeros(64, 64, 3)
    with pytest.raises(ValueError, match="audio too short"):
        preprocess(image, torch.zeros(1000), FaceBox(10, 10, 20, 20), min_resolution=64)


def test_upstream_layout_finds_every_file_of_the_sonic_checkpoints_folder(tmp_path):
    paths = SonicPaths.upstream_layout(tmp_path)
    assert paths.unet == tmp_path / "Sonic" / "unet.pth"
    assert paths.vae_dir == tmp_path / "stable-video-diffusion-img2vid-xt" / "vae"
    assert paths.whisper_dir == tmp_path / "whisper-tiny"
    assert paths.rife is None
    (tmp_path / "RIFE").mkdir()
    (tmp_path / "RIFE" / "flownet.pkl").touch()
    assert SonicPaths.upstream_layout(tmp_path).rife == tmp_path / "RIFE" / "flownet.pkl"

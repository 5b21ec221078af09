"""Sampler, VAE and RNG order against upstream `SonicPipeline.__call__` (fixture `denoise`)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

import nodes.sonic.denoise as denoise_module
from nodes.shared.weights import load_weights
from nodes.sonic.audio_adapters import FrameAudio
from nodes.sonic.config import read_config
from nodes.sonic.denoise import DenoiseConditions, decode_latents, denoise, window_frames
from nodes.sonic.image_encoder import image_embeds, load_image_encoder
from nodes.sonic.pipeline import initial_noise
from nodes.sonic.schedule import SchedulerConfig, karras_schedule
from nodes.sonic.unet import SonicUNet, UNetConfig
from nodes.sonic.vae import TemporalVAE, VAEConfig

SEED_PATTERN = r"seed_everything\((\d+)\)"


class Interrupted(Exception):
    pass


@pytest.fixture(scope="module")
def fixture(parity):
    return parity("denoise")


@pytest.fixture(scope="module")
def data(fixture):
    return fixture.arrays("io.npz")


@pytest.fixture(scope="module")
def vae(fixture):
    vae = TemporalVAE(read_config(VAEConfig, fixture.path / "vae" / "config.json"))
    return load_weights(vae, load_file(fixture.path / "vae" / "diffusion_pytorch_model.safetensors")).eval()


@pytest.fixture(scope="module")
def unet(parity):
    shared = parity("unet")
    unet = SonicUNet(read_config(UNetConfig, shared.path / "config.json"))
    return load_weights(unet, load_file(shared.path / "unet.safetensors")).eval()


@pytest.fixture(scope="module")
def schedule(fixture, pipeline_call):
    config = read_config(SchedulerConfig, fixture.path / "scheduler" / "scheduler_config.json")
    return karras_schedule(config, pipeline_call["num_inference_steps"])


@pytest.fixture(scope="module")
def conditions(fixture, data, vae) -> DenoiseConditions:
    with torch.inference_mode():
        encoder = load_image_encoder(fixture.path / "image_encoder", torch.device("cpu"), torch.float32)
        embeds = image_embeds(encoder, torch.from_numpy(data["in_clip_image"]))
        mean = vae.encode_mean(torch.from_numpy(data["in_ref_img"]))
    frames = data["in_motion_buckets"].shape[0]
    return DenoiseConditions(
        image_embeds=embeds,
        audio=FrameAudio(
            tokens=torch.from_numpy(data["in_audio_tokens_cond"]),
            uncond_tokens=torch.from_numpy(data["in_audio_tokens_uncond"]),
            motion_buckets=torch.from_numpy(data["in_motion_buckets"].reshape(frames, -1)),
        ),
        ref_latents=mean * vae.config.scaling_factor,
        image_latents=mean,
        face_mask=torch.from_numpy(data["in_face_mask"][:, :1]),
    )


def run(unet, conditions, data, schedule, settings, motion_bucket_scale, callback=None) -> torch.Tensor:
    with torch.inference_mode():
        return denoise(
            unet,
            conditions,
            torch.from_numpy(data["in_init_noise"]),
            schedule,
            settings,
            motion_bucket_scale=motion_bucket_scale,
            audio_scale=1.0,
            callback=callback,
        )


def test_karras_schedule_matches_upstream_sigmas_and_timesteps(schedule, data):
    np.testing.assert_array_equal(schedule.sigmas.numpy(), data["mid_sigmas"])
    np.testing.assert_array_equal(schedule.timesteps.numpy(), data["mid_timesteps"])


@pytest.mark.parametrize("steps", [1, 3, 7, 25, 50])
def test_timesteps_are_taken_one_float32_sigma_at_a_time_like_diffusers(steps):
    # diffusers' set_timesteps: [0.25 * sigma.log() for sigma in float32 sigmas], one scalar log each.
    schedule = karras_schedule(SchedulerConfig(), steps)
    expected = [0.25 * torch.tensor(float(s), dtype=torch.float32).log() for s in schedule.sigmas[:-1]]
    assert schedule.timesteps.dtype == torch.float32
    assert torch.equal(schedule.timesteps, torch.stack(expected))


def test_windows_wrap_around_and_shift_back_every_step(fixture, data, denoise_settings):
    num_frames = data["in_init_noise"].shape[1]
    recorded = fixture.json("windows.json")["windows"]
    steps = sorted({window["step"] for window in recorded})
    ours = [
        frames
        for step in steps
        for frames in window_frames(num_frames, denoise_settings, step * denoise_settings.shift_offset)
    ]
    assert ours == [window["frame_indices"] for window in recorded]


def test_vae_encodes_the_portrait_like_upstream(conditions, data, fixture):
    tol = fixture.tolerance("intermediates")
    np.testing.assert_allclose(conditions.ref_latents.numpy(), data["mid_ref_image_latents_scaled"], **tol)
    np.testing.assert_allclose(conditions.image_latents.numpy(), data["mid_image_latents_unscaled"], **tol)
    np.testing.assert_allclose(conditions.image_embeds.numpy(), data["mid_image_embeds"], **tol)


def test_seeded_noise_draws_augmentation_first_then_initial_latents(fixture, data):
    seed = fixture.precondition(SEED_PATTERN)
    augmentation, latents = initial_noise(
        seed,
        data["in_noise_aug_noise_unused"].shape,
        data["in_init_noise"].shape,
        torch.device("cpu"),
        torch.float32,
    )
    np.testing.assert_array_equal(augmentation.numpy(), data["in_noise_aug_noise_unused"])
    np.testing.assert_array_equal(latents.numpy(), data["in_init_noise"])


def test_denoise_reproduces_upstream_latents_and_frames(
    unet, vae, conditions, data, schedule, fixture, denoise_settings, pipeline_call
):
    latents = run(unet, conditions, data, schedule, denoise_settings, pipeline_call["motion_bucket_scale"])
    np.testing.assert_allclose(latents.numpy(), data["out_latents"], **fixture.tolerance("out_latents"))
    with torch.inference_mode():
        frames = decode_latents(vae, latents, denoise_settings.decode_chunk_size)
    tol = fixture.tolerance("out_frames/out_video")
    np.testing.assert_allclose(frames.numpy(), data["out_frames_minus1_1"], **tol)
    np.testing.assert_allclose((frames * 0.5 + 0.5).clamp(0, 1).numpy(), data["out_video_0_1"], **tol)


def test_decoding_upstream_latents_gives_upstream_frames(vae, data, fixture, denoise_settings):
    with torch.inference_mode():
        frames = decode_latents(vae, torch.from_numpy(data["out_latents"]), denoise_settings.decode_chunk_size)
    np.testing.assert_allclose(frames.numpy(), data["out_frames_minus1_1"], **fixture.tolerance("intermediates"))


def test_every_window_step_and_the_first_unet_input_match_upstream(
    unet, conditions, data, schedule, fixture, denoise_settings, pipeline_call, monkeypatch
):
    stepped: list[torch.Tensor] = []
    first_call: list[tuple] = []

    def recording_step(*args):
        stepped.append(euler_step(*args))
        return stepped[-1]

    euler_step = denoise_module.euler_step
    monkeypatch.setattr(denoise_module, "euler_step", recording_step)
    handle = unet.register_forward_pre_hook(lambda _m, args: first_call.append(args) if not first_call else None)
    try:
        run(unet, conditions, data, schedule, denoise_settings, pipeline_call["motion_bucket_scale"])
    finally:
        handle.remove()
    tol = fixture.tolerance("intermediates")
    sample, _t, _image, _audio, time_ids = first_call[0]
    np.testing.assert_allclose(sample.numpy(), data["mid_first_unet_call_sample"], **tol)
    np.testing.assert_allclose(time_ids.numpy(), data["mid_first_unet_call_added_time_ids"], **tol)
    expected = data["mid_window_latents_after_step"]
    assert len(stepped) == expected.shape[0]
    for index, (ours, theirs) in enumerate(zip(stepped, expected, strict=True)):
        np.testing.assert_allclose(ours.numpy(), theirs, **tol, err_msg=f"window {index}")


def test_callback_reports_every_unet_call_and_can_interrupt(
    unet, conditions, data, schedule, denoise_settings, pipeline_call
):
    calls: list[tuple[int, int]] = []

    def stop_after_two(done: int, total: int) -> None:
        calls.append((done, total))
        if done == 2:
            raise Interrupted

    with pytest.raises(Interrupted):
        run(unet, conditions, data, schedule, denoise_settings, pipeline_call["motion_bucket_scale"], stop_after_two)
    windows = len(window_frames(data["in_init_noise"].shape[1], denoise_settings, 0))
    assert calls == [
        (1, windows * pipeline_call["num_inference_steps"]),
        (2, windows * pipeline_call["num_inference_steps"]),
    ]

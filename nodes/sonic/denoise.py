"""Sonic's sampler: three-pass guidance over 25-frame circular windows that shift every step.

A pure function of the models, the conditioning and the initial noise; progress goes to a callback that
may raise to interrupt.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from .audio_adapters import FrameAudio
from .config import SonicSettings
from .schedule import Schedule, euler_step, scale_model_input
from .unet import SonicUNet
from .vae import TemporalVAE

ProgressCallback = Callable[[int, int], None]
"""Called as `callback(done, total)` after every UNet evaluation (one window of one step)."""


@dataclass(frozen=True)
class DenoiseConditions:
    """Everything the denoiser conditions on, in the UNet's dtype and device."""

    image_embeds: torch.Tensor
    """`(1, D)` CLIP image embedding of the portrait."""
    audio: FrameAudio
    ref_latents: torch.Tensor
    """`(1, 4, h, w)` VAE mean of the portrait, times the VAE scaling factor: the clean starting point."""
    image_latents: torch.Tensor
    """`(1, 4, h, w)` unscaled VAE mean of the (noise-augmented) portrait: concatenated to every frame."""
    face_mask: torch.Tensor
    """`(1, 1, H, W)` where audio may act in the spatial layers."""


def window_frames(num_frames: int, settings: SonicSettings, shift: int) -> list[list[int]]:
    """Frame indices of every window of one step: consecutive runs of `frames_per_batch`, moved back by
    `shift` and wrapped around the clip (a clip shorter than a window repeats frames)."""
    size = settings.frames_per_batch
    starts = range(0, num_frames, size - settings.overlap)
    return [[(start - shift + k) % num_frames for k in range(size)] for start in starts]


@dataclass(frozen=True)
class _GuidanceBatch:
    """Conditioning of the three guidance passes stacked on dim 0: `[uncond, drop-audio, cond]`."""

    image_tokens: torch.Tensor
    """`(3, 1, D)`: zeros, image, image."""
    audio_tokens: torch.Tensor
    """`(3, F, T, D)`: uncond, uncond, cond."""
    image_latents: torch.Tensor
    """`(3, 1, 4, h, w)`: zeros, image, image."""
    motion_buckets: torch.Tensor
    """`(F, 2)` already scaled by `dynamic_scale`."""


def _guidance_batch(conditions: DenoiseConditions, motion_bucket_scale: float, dtype: torch.dtype) -> _GuidanceBatch:
    embeds = conditions.image_embeds[:, None, :].to(dtype)
    audio = conditions.audio
    reference = conditions.image_latents.to(dtype)
    return _GuidanceBatch(
        image_tokens=torch.cat([torch.zeros_like(embeds), embeds, embeds]),
        audio_tokens=torch.stack([audio.uncond_tokens, audio.uncond_tokens, audio.tokens]).to(dtype),
        image_latents=torch.cat([torch.zeros_like(reference), reference, reference])[:, None],
        motion_buckets=audio.motion_buckets * motion_bucket_scale,
    )


def _predict(
    unet: SonicUNet,
    batch: _GuidanceBatch,
    window: torch.Tensor,
    index: torch.Tensor,
    timestep: torch.Tensor,
    sigma: torch.Tensor,
    fps: float,
    face_mask: torch.Tensor,
    audio_scale: float,
) -> torch.Tensor:
    """UNet output for the three passes over one window `(1, n, 4, h, w)`: `(3, n, 4, h, w)`."""
    frames = index.shape[0]
    model_input = scale_model_input(torch.cat([window] * 3), sigma)
    model_input = torch.cat([model_input, batch.image_latents.expand(-1, frames, -1, -1, -1)], dim=2)
    buckets = batch.motion_buckets[index].mean(dim=0)
    time_ids = torch.cat([torch.tensor([fps], device=buckets.device), buckets])[None].expand(3, -1)
    return unet(
        model_input,
        timestep,
        batch.image_tokens.expand(-1, frames, -1).flatten(0, 1)[:, None],
        batch.audio_tokens[:, index].flatten(0, 1),
        time_ids.to(window.dtype),
        face_mask=face_mask,
        audio_scale=audio_scale,
    )


def denoise(
    unet: SonicUNet,
    conditions: DenoiseConditions,
    noise: torch.Tensor,
    schedule: Schedule,
    settings: SonicSettings,
    motion_bucket_scale: float,
    audio_scale: float,
    callback: ProgressCallback | None = None,
) -> torch.Tensor:
    """`noise (1, F, 4, h, w)` -> denoised latents `(1, F, 4, h, w)` (scaled, as the UNet sees them).

    Every step denoises each window from the same latents and averages frames seen by several windows."""
    dtype, device = noise.dtype, noise.device
    num_frames = noise.shape[1]
    steps = len(schedule.timesteps)
    start = steps - min(int(steps * settings.i2i_noise_strength), steps)
    sigmas, timesteps = schedule.sigmas[start:].to(device), schedule.timesteps[start:].to(device)
    appearance = torch.linspace(*settings.appearance_guidance, len(timesteps)).to(device, dtype)
    audio_guidance = torch.linspace(*settings.audio_guidance, len(timesteps)).to(device, dtype)
    batch = _guidance_batch(conditions, motion_bucket_scale, dtype)

    latents = conditions.ref_latents[:, None] + noise * sigmas[0].to(dtype)
    done, total = 0, len(timesteps) * len(window_frames(num_frames, settings, 0))
    for i, timestep in enumerate(timesteps):
        summed = torch.zeros_like(latents)
        counts = torch.zeros((1, num_frames, 1, 1, 1), dtype=dtype, device=device)
        for frames in window_frames(num_frames, settings, shift=i * settings.shift_offset):
            index = torch.tensor(frames, device=device)
            window = latents[:, index]
            prediction = _predict(
                unet, batch, window, index, timestep, sigmas[i], settings.fps, conditions.face_mask, audio_scale
            )
            uncond, drop_audio, cond = prediction.chunk(3)
            guided = uncond + appearance[i] * (drop_audio - uncond) + audio_guidance[i] * (cond - drop_audio)
            summed.index_add_(1, index, euler_step(guided, window, sigmas[i], sigmas[i + 1]))
            counts.index_add_(1, index, torch.ones_like(counts[:, index]))
            done += 1
            if callback is not None:
                callback(done, total)
        latents = summed / counts
    return latents


def decode_latents(vae: TemporalVAE, latents: torch.Tensor, chunk_size: int) -> torch.Tensor:
    """`(1, F, 4, h, w)` latents -> `(1, 3, F, H, W)` float32 frames in about [-1, 1], decoded
    `chunk_size` frames at a time (the temporal decoder mixes frames within a chunk)."""
    num_frames = latents.shape[1]
    z = (1 / vae.config.scaling_factor) * latents.flatten(0, 1)
    chunks = [vae.decode(z[i : i + chunk_size], len(z[i : i + chunk_size])) for i in range(0, len(z), chunk_size)]
    frames = torch.cat(chunks)
    return frames.reshape(-1, num_frames, *frames.shape[1:]).permute(0, 2, 1, 3, 4).float()

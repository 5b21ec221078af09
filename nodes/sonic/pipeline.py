"""Sonic end to end: load the models, prepare portrait and audio, sample the talking-head frames, interpolate.

The calls a ComfyUI node makes; everything below them is pure torch and never imports ComfyUI.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file

from ..shared.weights import load_weights, read_state_dict, remove_substring, strip_prefix
from .audio_adapters import (
    Audio2BucketConfig,
    Audio2BucketModel,
    AudioProjConfig,
    AudioProjModel,
    FrameAudio,
    frame_audio,
)
from .config import (
    DEFAULT_MIN_RESOLUTION,
    DEFAULT_SEED,
    DEFAULT_STEPS,
    SonicSettings,
    from_mapping,
    read_config,
    read_json,
)
from .crop import FaceBox
from .denoise import DenoiseConditions, ProgressCallback, decode_latents, denoise
from .image_encoder import image_embeds, load_image_encoder
from .portrait import PortraitTensors, crop_to_face, image_to_pil, portrait_tensors
from .rife import IFNet, block_width, interpolate_frames
from .schedule import SchedulerConfig, karras_schedule
from .unet import SonicUNet, UNetConfig
from .vae import TemporalVAE, VAEConfig
from .whisper import WhisperEncoder, WhisperEncoderConfig
from .whisper_features import (
    AUDIO_FRAMES_PER_SECOND,
    AudioWindows,
    MelConfig,
    audio_frame_count,
    encoder_states,
    frame_windows,
    whisper_features,
)

DEFAULT_SETTINGS = SonicSettings()
WHISPER_KEY_PREFIX = "model.encoder."
RIFE_KEY_PART = "module."


@dataclass(frozen=True)
class SonicPaths:
    """Where each checkpoint lives. Folders use the upstream (diffusers / Hugging Face) layouts."""

    unet: Path
    """`Sonic/unet.pth` or a safetensors file with the same keys."""
    audio2token: Path
    audio2bucket: Path
    vae_dir: Path | None
    """`stable-video-diffusion-img2vid-xt/vae` (config.json + diffusion_pytorch_model[.fp16].safetensors);
    None when the caller brings the VAE (`load_sonic_models(vae=...)`), as for the image encoder."""
    image_encoder_dir: Path | None
    whisper_dir: Path
    """`whisper-tiny` (config.json, model.safetensors, preprocessor_config.json)."""
    unet_config: Path | None = None
    """SVD `unet/config.json`; None means SVD-xt's values."""
    scheduler_config: Path | None = None
    adapter_config: Path | None = None
    """JSON `{"audio2token": {...}, "audio2bucket": {...}}`; None means the released sizes."""
    rife: Path | None = None
    """`RIFE/flownet.pkl` (or safetensors with the same `module.` keys); None disables interpolation."""

    @classmethod
    def upstream_layout(cls, checkpoints: str | Path) -> SonicPaths:
        """The `checkpoints/` folder of the Sonic repository, as its README lays it out."""
        root = Path(checkpoints)
        svd = root / "stable-video-diffusion-img2vid-xt"
        rife = root / "RIFE" / "flownet.pkl"
        return cls(
            unet=root / "Sonic" / "unet.pth",
            audio2token=root / "Sonic" / "audio2token.pth",
            audio2bucket=root / "Sonic" / "audio2bucket.pth",
            vae_dir=svd / "vae",
            image_encoder_dir=svd / "image_encoder",
            whisper_dir=root / "whisper-tiny",
            unet_config=svd / "unet" / "config.json",
            scheduler_config=svd / "scheduler" / "scheduler_config.json",
            rife=rife if rife.exists() else None,
        )


@dataclass
class SonicModels:
    """Loaded models. UNet, VAE and image encoder run in `dtype`; Whisper, the audio adapters and RIFE in
    float32, as upstream."""

    unet: SonicUNet
    vae: TemporalVAE
    image_encoder: torch.nn.Module
    whisper: WhisperEncoder
    mel: MelConfig
    audio2token: AudioProjModel
    audio2bucket: Audio2BucketModel
    scheduler: SchedulerConfig
    rife: IFNet | None
    device: torch.device
    dtype: torch.dtype


@dataclass(frozen=True)
class SonicCondition:
    """Model-free preparation of one portrait and one clip of speech."""

    portrait: PortraitTensors
    features: torch.Tensor
    """`(80, 3000·chunks)` Whisper log-mel of the 30 s chunks that cover the animated frames."""
    audio_frames: int
    """25 fps audio frames to animate; the video has `audio_frames // step` frames at 12.5 fps."""


def _load(
    module: torch.nn.Module, state: dict[str, torch.Tensor], device: torch.device, dtype: torch.dtype
) -> torch.nn.Module:
    state = {k: v.to(dtype) for k, v in state.items()}
    return load_weights(module, state).to(device=device, dtype=dtype).eval()


def _weights_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.safetensors", f"{stem}.fp16.safetensors"):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"no {stem}[.fp16].safetensors in {folder}")


def load_rife(path: str | Path, device: torch.device | str) -> IFNet:
    """IFNet from `flownet.pkl` (or safetensors with the same keys); only `module.` keys, prefix removed."""
    state = remove_substring(read_state_dict(path), RIFE_KEY_PART)
    with torch.device("meta"):
        net = IFNet(block_width(state))
    return _load(net, state, torch.device(device), torch.float32)


def _load_vae(folder: Path, device: torch.device, dtype: torch.dtype) -> TemporalVAE:
    state = load_file(str(_weights_file(folder, "diffusion_pytorch_model")))
    with torch.device("meta"):
        vae = TemporalVAE(read_config(VAEConfig, folder / "config.json"))
    return _load(vae, state, device, dtype)


def load_sonic_models(
    paths: SonicPaths,
    device: torch.device | str,
    dtype: torch.dtype,
    vae: TemporalVAE | None = None,
    image_encoder: torch.nn.Module | None = None,
) -> SonicModels:
    """Build every model on the meta device and load its weights strictly by key. A `vae` or
    `image_encoder` given (already loaded, e.g. from ComfyUI's SVD checkpoint) replaces its folder."""
    device = torch.device(device)
    f32 = torch.float32
    adapters = read_json(paths.adapter_config) if paths.adapter_config else {}
    whisper_state = strip_prefix(load_file(str(_weights_file(paths.whisper_dir, "model"))), WHISPER_KEY_PREFIX)
    with torch.device("meta"):
        unet = SonicUNet(read_config(UNetConfig, paths.unet_config) if paths.unet_config else UNetConfig())
        whisper = WhisperEncoder(read_config(WhisperEncoderConfig, paths.whisper_dir / "config.json"))
        audio2token = AudioProjModel(from_mapping(AudioProjConfig, adapters.get("audio2token", {})))
        audio2bucket = Audio2BucketModel(from_mapping(Audio2BucketConfig, adapters.get("audio2bucket", {})))
    scheduler = read_config(SchedulerConfig, paths.scheduler_config) if paths.scheduler_config else None
    return SonicModels(
        unet=_load(unet, read_state_dict(paths.unet), device, dtype),
        vae=vae if vae is not None else _load_vae(paths.vae_dir, device, dtype),
        image_encoder=image_encoder if image_encoder is not None
        else load_image_encoder(paths.image_encoder_dir, device, dtype),
        whisper=_load(whisper, whisper_state, device, f32),
        mel=read_config(MelConfig, paths.whisper_dir / "preprocessor_config.json"),
        audio2token=_load(audio2token, read_state_dict(paths.audio2token), device, f32),
        audio2bucket=_load(audio2bucket, read_state_dict(paths.audio2bucket), device, f32),
        scheduler=scheduler or SchedulerConfig(),
        rife=load_rife(paths.rife, device) if paths.rife else None,
        device=device,
        dtype=dtype,
    )


def preprocess(
    image: torch.Tensor,
    audio_16k: torch.Tensor,
    face: FaceBox,
    duration: float | None = None,
    min_resolution: int = DEFAULT_MIN_RESOLUTION,
    expand_ratio: float | None = None,
    settings: SonicSettings = DEFAULT_SETTINGS,
    mel: MelConfig | None = None,
) -> SonicCondition:
    """Portrait `(H, W, 3)` in [0, 1] and 16 kHz mono speech `(N,)` -> conditioning for `sample`.

    `duration` (seconds) caps the animated length; `expand_ratio` first crops the portrait to upstream's
    square around the face (None keeps the whole image, upstream's default). Whisper hears whole 30 s
    chunks of the clip, as upstream, so capping the length does not change the features of kept frames."""
    picture = image_to_pil(image)
    if expand_ratio is not None:
        picture, face = crop_to_face(picture, face, expand_ratio)
    limit = settings.frame_limit
    if duration is not None:
        limit = min(limit, int(duration * AUDIO_FRAMES_PER_SECOND))
    audio = audio_16k.detach().cpu().float().reshape(-1)
    audio_frames = audio_frame_count(audio.shape[0], limit)
    if audio_frames // settings.step < 1:
        raise ValueError(f"audio too short: {audio.shape[0]} samples at 16 kHz give no video frame")
    return SonicCondition(
        portrait=portrait_tensors(picture, face, min_resolution, settings.area),
        features=whisper_features(audio, mel or MelConfig(), audio_frames),
        audio_frames=audio_frames,
    )


def condition_frames(
    models: SonicModels, condition: SonicCondition, embeds: torch.Tensor, settings: SonicSettings
) -> FrameAudio:
    """Whisper windows through both audio adapters, for every video frame; `embeds` is the CLIP identity."""
    states = encoder_states(models.whisper, condition.features, condition.audio_frames)
    num_frames = condition.audio_frames // settings.step
    token_windows, bucket_windows = frame_windows(states, num_frames, settings.step, AudioWindows())
    return frame_audio(models.audio2token, models.audio2bucket, token_windows, bucket_windows, embeds)


def initial_noise(
    seed: int, ref_shape: torch.Size, latent_shape: tuple[int, ...], device: torch.device, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    """Upstream's two draws, in its order: the noise-augmentation noise, then the initial latent noise."""
    generator = torch.Generator(device=device).manual_seed(seed)
    augmentation = torch.randn(ref_shape, generator=generator, device=device, dtype=dtype)
    latents = torch.randn(latent_shape, generator=generator, device=device, dtype=dtype)
    return augmentation, latents


@torch.inference_mode()
def sample(
    models: SonicModels,
    condition: SonicCondition,
    seed: int = DEFAULT_SEED,
    inference_steps: int = DEFAULT_STEPS,
    dynamic_scale: float = 1.0,
    ip_audio_scale: float = 1.0,
    callback: ProgressCallback | None = None,
    settings: SonicSettings = DEFAULT_SETTINGS,
) -> torch.Tensor:
    """Talking-head frames `(F, H, W, 3)` float32 in [0, 1] on the CPU, at `settings.fps`.

    `dynamic_scale` scales both predicted motion buckets (more or less movement); `ip_audio_scale` weighs
    the audio attention. Any `seed` is used as given (upstream silently replaces 0 with 72589).
    `callback(done, total)` follows the UNet evaluations and may raise to interrupt."""
    device, dtype = models.device, models.dtype
    portrait = condition.portrait
    embeds = image_embeds(models.image_encoder, portrait.clip_image)
    audio = condition_frames(models, condition, embeds, settings)
    ref = portrait.ref_image.to(device, dtype)
    vae_config = models.vae.config
    down = 2 ** (len(vae_config.block_out_channels) - 1)
    latent_shape = (1, audio.tokens.shape[0], vae_config.latent_channels, ref.shape[-2] // down, ref.shape[-1] // down)
    augmentation, noise = initial_noise(seed, ref.shape, latent_shape, device, dtype)
    conditions = DenoiseConditions(
        image_embeds=embeds,
        audio=audio,
        ref_latents=models.vae.encode_mean(ref) * vae_config.scaling_factor,
        image_latents=models.vae.encode_mean(ref + settings.noise_aug_strength * augmentation),
        face_mask=portrait.face_mask.to(device, dtype),
    )
    latents = denoise(
        models.unet,
        conditions,
        noise,
        karras_schedule(models.scheduler, inference_steps),
        settings,
        motion_bucket_scale=dynamic_scale,
        audio_scale=ip_audio_scale,
        callback=callback,
    )
    frames = decode_latents(models.vae, latents, settings.decode_chunk_size)
    return (frames * 0.5 + 0.5).clamp(0, 1)[0].permute(1, 2, 3, 0).cpu()


def interpolate(rife: IFNet, frames: torch.Tensor, callback: ProgressCallback | None = None) -> torch.Tensor:
    """`(F, H, W, 3)` frames at 12.5 fps -> `(2F-1, H, W, 3)` at 25 fps with RIFE middle frames."""
    with torch.inference_mode():
        doubled = interpolate_frames(rife, frames.permute(0, 3, 1, 2), callback)
    return doubled.permute(0, 2, 3, 1)

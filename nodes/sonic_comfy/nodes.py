"""Sonic talking-head nodes for ComfyUI: loader, preprocess, sampler (V1 classes, thin over `nodes/sonic`).

Names differ from smthemex/ComfyUI_Sonic's (`SONICTLoader`, `SONIC_PreData`, `SONICSampler`) so both packs can
be installed side by side. Nothing here imports ComfyUI at import time; `TENANCY_META` tells the guard which
inputs are durations and resolutions, and how to estimate a run's length.
"""

from __future__ import annotations

from typing import ClassVar

from ..shared_comfy.progress import comfy_progress
from ..sonic.config import read_config
from ..sonic.whisper_features import MelConfig
from .files import AUTO, LICENCE, SonicFolder

CATEGORY = "talking head/Sonic"
SEED_MAX = 0xFFFFFFFFFFFFFFFF


class SonicLoader:
    DESCRIPTION = (
        "Loads Sonic (portrait + speech -> talking-head video) from models/sonic: the UNet (unet.safetensors or "
        "unet.pth), audio2token, audio2bucket, whisper-tiny/, RIFE/flownet.pkl (optional), yoloface_v5m.pt "
        "(optional). Connect the VAE and CLIP_VISION of ImageOnlyCheckpointLoader (SVD) or keep the diffusers "
        f"folders vae/ and image_encoder/ in models/sonic. Loaded once and reused across runs. {LICENCE}"
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SONIC_MODEL",)
    RETURN_NAMES = ("sonic_model",)
    FUNCTION = "load"
    TENANCY_META: ClassVar[dict] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "unet": (SonicFolder.from_comfy().unet_choices(), {
                    "default": AUTO,
                    "tooltip": f"Sonic UNet in models/sonic; auto = unet.safetensors, else unet.pth. {LICENCE}",
                }),
                "dtype": ([AUTO, "fp16", "bf16", "fp32"], {
                    "default": AUTO, "tooltip": "Weights of UNet, VAE and image encoder; auto = ComfyUI's choice "
                    "for the device (fp32 on the CPU)."}),
            },
            "optional": {
                "vae": ("VAE", {"tooltip": "SVD's VAE (ImageOnlyCheckpointLoader); else models/sonic/vae/."}),
                "clip_vision": ("CLIP_VISION", {
                    "tooltip": "SVD's image encoder (ImageOnlyCheckpointLoader); else models/sonic/image_encoder/."}),
            },
        }

    def load(self, unet: str, dtype: str, vae=None, clip_vision=None) -> tuple:
        from .models import load

        return (load(SonicFolder.from_comfy(), unet, dtype, vae, clip_vision),)


class SonicPreprocess:
    DESCRIPTION = (
        "Finds the largest face (YOLOv5-face if models/sonic has yoloface_v5m.pt, else OpenCV's Haar cascade), "
        "crops around it by expand_ratio, resizes to min_resolution and turns the speech (any rate or channels) "
        "into Whisper features for the sampler."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("SONIC_CONDITION", "IMAGE")
    RETURN_NAMES = ("condition", "crop_preview")
    FUNCTION = "prepare"
    TENANCY_META: ClassVar[dict] = {
        "duration_inputs": ["duration"],
        "resolution_inputs": ["min_resolution"],
        "estimate": {"seconds_input": "duration", "audio_link": "audio"},
    }

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "image": ("IMAGE", {"tooltip": "The portrait (first image of the batch)."}),
                "audio": ("AUDIO", {"tooltip": "The speech; resampled to 16 kHz mono."}),
                "duration": ("FLOAT", {"default": 10.0, "min": 0.1, "max": 400.0, "step": 0.1,
                                       "tooltip": "Seconds to animate; at most the length of the audio."}),
                "min_resolution": ("INT", {"default": 512, "min": 64, "max": 2048, "step": 64,
                                           "tooltip": "Short side of the video; both sides become multiples of 64."}),
                "expand_ratio": ("FLOAT", {"default": 0.5, "min": 0.0, "max": 1.0, "step": 0.05,
                                           "tooltip": "Margin around the face, in face sizes, of the square crop."}),
                "use_whole_image_if_no_face": ("BOOLEAN", {
                    "default": False, "tooltip": "Without a detectable face, animate the uncropped image "
                    "instead of stopping with an error."}),
            },
        }

    def prepare(self, image, audio, duration, min_resolution, expand_ratio, use_whole_image_if_no_face) -> tuple:
        import comfy.model_management

        from .faces import face_detector
        from .steps import prepare

        folder = SonicFolder.from_comfy()
        mel_file = folder.mel_config()
        return prepare(
            image[0],
            audio,
            duration,
            min_resolution,
            expand_ratio,
            face_detector(folder.face_detector(), comfy.model_management.get_torch_device()),
            whole_image_if_no_face=use_whole_image_if_no_face,
            mel=read_config(MelConfig, mel_file) if mel_file else None,
        )


class SonicSampler:
    DESCRIPTION = (
        "Animates the portrait to the speech: 25-frame windows shifted every step, image and audio guidance, "
        "frames at 12.5 fps, or 25 fps (2N-1 frames) with RIFE interpolation. Outputs frames, the matching "
        "audio and the fps for CreateVideo."
    )
    CATEGORY = CATEGORY
    RETURN_TYPES = ("IMAGE", "AUDIO", "FLOAT")
    RETURN_NAMES = ("frames", "audio", "fps")
    FUNCTION = "sample"
    TENANCY_META: ClassVar[dict] = {}

    @classmethod
    def INPUT_TYPES(cls) -> dict:
        return {
            "required": {
                "sonic_model": ("SONIC_MODEL",),
                "condition": ("SONIC_CONDITION",),
                "seed": ("INT", {"default": 0, "min": 0, "max": SEED_MAX, "control_after_generate": True,
                                 "tooltip": "Any value, 0 included, is used as given."}),
                "inference_steps": ("INT", {"default": 25, "min": 1, "max": 200}),
                "dynamic_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.1,
                                            "tooltip": "More (above 1) or less head and face movement."}),
                "ip_audio_scale": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 2.0, "step": 0.1,
                                             "tooltip": "Weight of the audio attention (lip sync strength)."}),
                "interpolate": ("BOOLEAN", {"default": True,
                                            "tooltip": "RIFE middle frames: 25 fps instead of 12.5 fps."}),
            },
            "hidden": {"unique_id": "UNIQUE_ID"},
        }

    def sample(self, sonic_model, condition, seed, inference_steps, dynamic_scale, ip_audio_scale, interpolate,
               unique_id=None) -> tuple:
        from .models import free_cached_memory, on_device
        from .steps import render

        rendered = render(
            on_device(sonic_model),
            condition,
            seed=seed,
            inference_steps=inference_steps,
            dynamic_scale=dynamic_scale,
            ip_audio_scale=ip_audio_scale,
            interpolate_frames=interpolate,
            progress=lambda total: comfy_progress(total, unique_id),
            decoded=free_cached_memory,
        )
        free_cached_memory()
        return (rendered.frames, rendered.audio, rendered.fps)


def warm_up(unet: str = AUTO, dtype: str = AUTO) -> None:
    """Start-up hook (config `warmup: {sonic: {unet: ..., dtype: ...}}`): loads and caches the Sonic models
    (with the VAE and image encoder from models/sonic) so the first prompt does not wait for them."""
    SonicLoader().load(unet, dtype)


NODE_CLASS_MAPPINGS = {"SonicLoader": SonicLoader, "SonicPreprocess": SonicPreprocess, "SonicSampler": SonicSampler}
NODE_DISPLAY_NAME_MAPPINGS = {
    "SonicLoader": "Sonic Loader",
    "SonicPreprocess": "Sonic Preprocess",
    "SonicSampler": "Sonic Sampler",
}

"""Sonic's models inside ComfyUI: loaded once, kept across runs, placed by comfy.model_management, dropped
when ComfyUI frees memory.

One cache entry, keyed by the files, dtype, device and the ComfyUI VAE / CLIP_VISION objects used. The models
sit in a ComfyUI `ModelPatcher` that is loaded with `load_models_gpu` before sampling, so ComfyUI moves them to
its device and back to the offload device when another model needs the memory. When ComfyUI unloads the patcher
(the `/free` route, the "Unload models" button, or memory pressure) its ON_DETACH callback drops the cache entry,
and the weights go as soon as ComfyUI's own output cache lets go of the loader's output.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Hashable
from types import SimpleNamespace
from typing import Any

import torch
from torch import nn

from ..sonic import SonicModels, SonicPaths, load_sonic_models
from ..sonic.sgm_vae import load_sgm_vae
from .faces import forget_detectors
from .files import AUTO, SonicFolder

log = logging.getLogger("sonic")

DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclasses.dataclass
class LoadedSonic:
    """The SONIC_MODEL value: the models, the patcher ComfyUI manages them through, and the ComfyUI objects
    they were built from (held so their ids, part of the cache key, stay theirs)."""

    models: SonicModels
    patcher: Any
    sources: tuple = ()


class SonicModules(nn.Module):
    """Every torch module of a `SonicModels` under one root, which is what a ModelPatcher manages."""

    def __init__(self, models: SonicModels) -> None:
        super().__init__()
        self.unet = models.unet
        self.vae = models.vae
        self.image_encoder = models.image_encoder
        self.whisper = models.whisper
        self.audio2token = models.audio2token
        self.audio2bucket = models.audio2bucket
        self.rife = models.rife


class ComfyClipVision(nn.Module):
    """ComfyUI's CLIP_VISION behind the `encoder(pixels).image_embeds` call of Sonic's pipeline.

    The ComfyUI model stays a plain attribute: its own patcher places it, ours never moves it. `anchor` is an
    empty parameter that only tells the pipeline which device and dtype to hand the pixels over in."""

    def __init__(self, clip_vision: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.anchor = nn.Parameter(torch.empty(0, dtype=dtype), requires_grad=False)
        self.clip_vision = clip_vision

    def forward(self, pixel_values: torch.Tensor) -> SimpleNamespace:
        import comfy.model_management

        comfy.model_management.load_model_gpu(self.clip_vision.patcher)
        out = self.clip_vision.model(pixel_values=pixel_values.to(self.clip_vision.load_device).float())
        return SimpleNamespace(image_embeds=out[2].to(pixel_values.device, pixel_values.dtype))


class ModelCache:
    """At most one loaded set (the real one is several GB): a different key replaces it."""

    def __init__(self) -> None:
        self.key: Hashable | None = None
        self.value: LoadedSonic | None = None

    def get(self, key: Hashable, build: Callable[[], LoadedSonic]) -> LoadedSonic:
        if self.value is not None and key == self.key:
            log.info("[sonic] using the models already loaded")
            return self.value
        self.release()
        self.value, self.key = build(), key
        return self.value

    def holds(self, patcher: Any) -> bool:
        return self.value is not None and self.value.patcher is patcher

    def release(self) -> bool:
        released = self.value is not None
        self.key = self.value = None
        forget_detectors()
        return released


CACHE = ModelCache()


def pick_dtype(name: str, device: torch.device) -> torch.dtype:
    """`auto`: what ComfyUI would use on `device` (fp16, else bf16, else fp32 — fp32 on the CPU)."""
    if name != AUTO:
        return DTYPES[name]
    import comfy.model_management as mm

    if mm.should_use_fp16(device):
        return torch.float16
    return torch.bfloat16 if mm.should_use_bf16(device) else torch.float32


def _on_detach(patcher: Any, unpatch_all: bool) -> None:
    # ComfyUI also detaches with unpatch_all=False to re-register a model it is loading again: not an unload
    if unpatch_all and CACHE.holds(patcher) and CACHE.release():
        log.info("[sonic] released cached models (ComfyUI unloaded them)")


def _build(paths: SonicPaths, dtype: torch.dtype, vae: Any, clip_vision: Any) -> LoadedSonic:
    import comfy.model_management as mm
    import comfy.model_patcher
    from comfy.patcher_extension import CallbacksMP

    started = time.perf_counter()
    device, offload = mm.get_torch_device(), mm.unet_offload_device()
    models = load_sonic_models(
        paths,
        offload,
        dtype,
        vae=load_sgm_vae(vae.get_sd(), offload, dtype) if vae is not None else None,
        image_encoder=ComfyClipVision(clip_vision, dtype) if clip_vision is not None else None,
    )
    patcher = comfy.model_patcher.ModelPatcher(SonicModules(models), load_device=device, offload_device=offload)
    patcher.add_callback(CallbacksMP.ON_DETACH, _on_detach)
    sources = "folders" if vae is None and clip_vision is None else "ComfyUI VAE/CLIP_VISION"
    log.info("[sonic] loaded models from %s (%s, VAE and image encoder from %s, %s on %s) in %.1f s",
             paths.unet.parent, paths.unet.name, sources, dtype, device, time.perf_counter() - started)
    return LoadedSonic(models, patcher, (vae, clip_vision))


def load(folder: SonicFolder, unet: str, dtype: str, vae: Any = None, clip_vision: Any = None) -> LoadedSonic:
    """The cached models for these files and settings, loading them only when the cache has something else."""
    import comfy.model_management as mm

    device = mm.get_torch_device()
    torch_dtype = pick_dtype(dtype, device)
    paths = folder.paths(unet, vae_folder=vae is None, image_encoder_folder=clip_vision is None)
    key = (paths, str(torch_dtype), str(device), id(vae), id(clip_vision))
    return CACHE.get(key, lambda: _build(paths, torch_dtype, vae, clip_vision))


def on_device(loaded: LoadedSonic) -> SonicModels:
    """Ask ComfyUI to place the models on its device (evicting others if needed); the models, located there."""
    import comfy.model_management as mm

    mm.load_models_gpu([loaded.patcher], force_full_load=True)
    return dataclasses.replace(loaded.models, device=loaded.patcher.load_device)


def free_cached_memory() -> None:
    import comfy.model_management as mm

    mm.soft_empty_cache()

"""Loading GLM-TTS inside ComfyUI: the model folders under models/glm_tts, ComfyUI's device and precision, one
loaded set per folder and precision, and the prompt encoders loaded on first use (only new voices need them).
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import torch

from ..glm_tts import GlmTtsModels, GlmTtsPaths, load_glm_tts
from .diagnostics import count

log = logging.getLogger("glm_tts")

FOLDER = "glm_tts"
DEFAULT_FOLDER = "GLM-TTS"
PRECISIONS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
LAYOUT_HINT = ("expected in {root}: ckpt/llm/, ckpt/flow/flow.pt + config.yaml, ckpt/hift/hift.pt, "
               "ckpt/speech_tokenizer/, ckpt/vq32k-phoneme-tokenizer/ (Hugging Face zai-org/GLM-TTS) and, to make "
               "new voices, frontend/campplus.onnx (GitHub zai-org/GLM-TTS)")

_models: dict[tuple[str, str, str], GlmTtsModels] = {}
_models_lock = threading.Lock()


def _looks_like_glm_tts(folder: Path) -> bool:
    return (folder / "ckpt" / "llm").is_dir() or (folder / "llm").is_dir()


def model_choices() -> list[str]:
    """Folders under models/glm_tts holding a GLM-TTS checkout ("." when a root holds one itself)."""
    from ..shared_comfy.model_folders import roots

    names: list[str] = []
    for root in roots(FOLDER):
        if _looks_like_glm_tts(root):
            names.append(".")
        if root.is_dir():
            names += [d.name for d in sorted(root.iterdir()) if d.is_dir() and _looks_like_glm_tts(d)]
    return list(dict.fromkeys(names)) or [DEFAULT_FOLDER]


def model_root(name: str) -> Path:
    from ..shared_comfy.model_folders import find, roots

    if name != "." and (not name or "/" in name or "\\" in name or name.startswith(".")):
        raise ValueError(f"glm_tts_model_invalid: {name!r} is not a folder name under models/glm_tts")
    found = next((r for r in roots(FOLDER) if _looks_like_glm_tts(r)), None) if name == "." else find(FOLDER, name)
    if found is None:
        where = ", ".join(str(r) for r in roots(FOLDER)) or "models/glm_tts"
        raise FileNotFoundError(f"glm_tts_model_missing: no folder {name!r} in {where}; "
                                + LAYOUT_HINT.format(root=f"models/glm_tts/{name}/"))
    return found


def device_and_dtype(precision: str) -> tuple[torch.device, torch.dtype]:
    """ComfyUI's device; "auto" is bfloat16 where ComfyUI deems it fast there, else float32."""
    import comfy.model_management as mm

    device = mm.get_torch_device()
    dtype = PRECISIONS[precision]
    if dtype is None:
        dtype = torch.bfloat16 if mm.should_use_bf16(device) else torch.float32
    return device, dtype


def get_models(name: str, precision: str) -> GlmTtsModels:
    """The text tokenizer, LM, flow and vocoder of `name`, loaded once per process and precision."""
    root = model_root(name)
    device, dtype = device_and_dtype(precision)
    key = (str(root.resolve()), str(device), str(dtype))
    with _models_lock:
        if key not in _models:
            try:
                paths = GlmTtsPaths.from_root(root)
            except FileNotFoundError as exc:
                raise FileNotFoundError(f"{exc}; {LAYOUT_HINT.format(root=root)}") from None
            start = time.perf_counter()
            _models[key] = load_glm_tts(paths, device, dtype)
            log.info("[glm-tts] loaded text tokenizer, LM, flow and HiFT from %s on %s (%s) in %.1f s",
                     root, device, str(dtype).replace("torch.", ""), time.perf_counter() - start)
        return _models[key]


def speech_tokenizer(models: GlmTtsModels):
    """The speech tokenizer, loaded on first use (only new voices need it) and counted per run."""
    if models.loaded_speech_tokenizer is None:
        start = time.perf_counter()
        encoder = models.speech_tokenizer().encoder
        encoder.register_forward_pre_hook(lambda *_: count("speech_tokenizer"))
        log.info("[glm-tts] loaded speech tokenizer in %.1f s", time.perf_counter() - start)
    return models.speech_tokenizer()


def speaker_embedder(models: GlmTtsModels):
    """CAM++, loaded on first use and counted per run."""
    if models.loaded_speaker_embedder is None:
        start = time.perf_counter()
        models.speaker_embedder()
        log.info("[glm-tts] loaded CAM++ speaker encoder in %.1f s", time.perf_counter() - start)
    embed = models.speaker_embedder()

    def counted(features: torch.Tensor) -> torch.Tensor:
        count("campplus")
        return embed(features)

    return counted

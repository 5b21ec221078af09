"""GLM-TTS nodes: load the models, clone a voice from a prompt, keep voices per tenant, synthesise speech.

Thin V1 classes over `nodes.glm_tts` (model code) and `nodes.glm_tts_store` (tenant data); ComfyUI modules
are imported inside methods only, so this module also imports outside ComfyUI.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import threading
import time
from pathlib import Path

import torch

from . import glm_tts_store as store
from .audio import to_audio
from .glm_tts import GlmTtsModels, GlmTtsPaths, Voice, load_glm_tts, make_voice, synthesize
from .glm_tts.profile import Sampling
from .glm_tts.prompt_checks import check_prompt
from .glm_tts.resample import resample

log = logging.getLogger("glm_tts")

CATEGORY = "talking head/GLM-TTS"
MODEL, VOICE = "GLM_TTS_MODEL", "GLM_TTS_VOICE"
DEFAULT_FOLDER = "GLM-TTS"
PRECISIONS = {"auto": None, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
OUTPUT_RATES = [24000, 16000, 22050, 32000, 44100, 48000]
LAYOUT_HINT = ("expected in {root}: ckpt/llm/, ckpt/flow/flow.pt + config.yaml, ckpt/hift/hift.pt, "
               "ckpt/speech_tokenizer/, ckpt/vq32k-phoneme-tokenizer/ (Hugging Face zai-org/GLM-TTS) and, to make "
               "new voices, frontend/campplus.onnx (GitHub zai-org/GLM-TTS)")

CALLS = {"speech_tokenizer": 0, "campplus": 0}
"""Process-wide counts of prompt-encoder runs: a synthesis from a saved voice never adds to them."""

_models: dict[tuple[str, str, str], GlmTtsModels] = {}
_models_lock = threading.Lock()


# -- loading ----------------------------------------------------------------------------------------

def _looks_like_glm_tts(folder: Path) -> bool:
    return (folder / "ckpt" / "llm").is_dir() or (folder / "llm").is_dir()


def model_choices() -> list[str]:
    """Folders under models/glm_tts holding a GLM-TTS checkout ("." when a root holds one itself)."""
    from .model_folders import roots

    names: list[str] = []
    for root in roots("glm_tts"):
        if _looks_like_glm_tts(root):
            names.append(".")
        if root.is_dir():
            names += [d.name for d in sorted(root.iterdir()) if d.is_dir() and _looks_like_glm_tts(d)]
    return list(dict.fromkeys(names)) or [DEFAULT_FOLDER]


def model_root(name: str) -> Path:
    from .model_folders import find, roots

    if name != "." and (not name or "/" in name or "\\" in name or name.startswith(".")):
        raise ValueError(f"glm_tts_model_invalid: {name!r} is not a folder name under models/glm_tts")
    if name == ".":
        found = next((r for r in roots("glm_tts") if _looks_like_glm_tts(r)), None)
    else:
        found = find("glm_tts", name)
    if found is None:
        where = ", ".join(str(r) for r in roots("glm_tts")) or "models/glm_tts"
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
        encoder.register_forward_pre_hook(lambda *_: _count("speech_tokenizer"))
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
        _count("campplus")
        return embed(features)

    return counted


def _count(name: str) -> None:
    CALLS[name] += 1


def _valid_voice_name(name: str) -> bool | str:
    try:
        store.check_voice_name(name)
    except store.VoiceRefused as exc:
        return str(exc)
    return True


def _nan() -> float:
    return float("nan")  # ComfyUI's "always run again" fingerprint


# -- nodes ------------------------------------------------------------------------------------------

class GlmTtsLoader:
    """GLM-TTS from models/glm_tts/<folder>; never runs code shipped with the weights."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (MODEL,)
    RETURN_NAMES = ("model",)
    FUNCTION = "load"
    TENANCY_META: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (model_choices(), {"tooltip": "folder under models/glm_tts with ckpt/ and frontend/"}),
            "precision": (list(PRECISIONS), {"default": "auto",
                                             "tooltip": "auto: bf16 where ComfyUI finds it fast, else fp32"}),
        }}

    def load(self, model: str, precision: str):
        return (get_models(model, precision),)


class GlmTtsVoice:
    """A voice from a prompt recording and the exact text it speaks, after checking the recording."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (VOICE,)
    RETURN_NAMES = ("voice",)
    FUNCTION = "make"
    TENANCY_META: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "model": (MODEL,),
            "audio": ("AUDIO", {"tooltip": "3-10 s of one speaker, clean, no music"}),
            "prompt_text": ("STRING", {"multiline": True, "default": "",
                                       "tooltip": "exactly what the prompt audio says"}),
        }}

    def make(self, model: GlmTtsModels, audio: dict, prompt_text: str):
        import comfy.model_management as mm

        waveform, rate = audio["waveform"][0], int(audio["sample_rate"])
        report = check_prompt(waveform, rate)
        for warning in report.warnings:
            log.warning("[glm-tts] voice prompt: %s", warning)
        mm.throw_exception_if_processing_interrupted()
        speech_tokenizer(model)
        voice = make_voice(model, waveform, rate, prompt_text, speaker_embedder=speaker_embedder(model))
        info = {**report.as_dict(), "speech_tokens": len(voice.prompt_speech_tokens), **_calls()}
        return {"ui": {"glm_tts": [info]}, "result": (voice,)}


class GlmTtsSaveVoice:
    """Keeps a voice among the tenant's own voices, encrypted; may delete the raw prompt audio after."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ()
    FUNCTION = "save"
    OUTPUT_NODE = True
    TENANCY_META: dict = {}

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {
            "voice": (VOICE,),
            "name": ("STRING", {"default": "my-voice", "tooltip": "a plain name; operators publish shared/<name>"}),
            "overwrite": ("BOOLEAN", {"default": False}),
        }, "hidden": {"prompt": "PROMPT", "unique_id": "UNIQUE_ID"}}

    @classmethod
    def VALIDATE_INPUTS(cls, name):
        return _valid_voice_name(name.strip())

    @classmethod
    def IS_CHANGED(cls, **_):
        return _nan()

    def save(self, voice: Voice, name: str, overwrite: bool, prompt: dict | None = None,
             unique_id: str | None = None):
        tenant, root = store.current_tenant(), store.tenancy_dir()
        profile = store.profile_for(root, tenant)
        path = store.save_voice(root, tenant, name.strip(), voice, store.master_secret(), overwrite)
        deleted: list[str] = []
        if profile.delete_prompt_audio and prompt and unique_id is not None:
            import folder_paths

            input_dir = Path(folder_paths.get_input_directory())
            deleted = store.delete_files(store.prompt_audio_files(prompt, str(unique_id), input_dir, tenant),
                                         input_dir, tenant)
        log.info("[glm-tts] saved voice %r (%d bytes, encrypted)%s", name.strip(), path.stat().st_size,
                 f"; deleted prompt audio {deleted}" if deleted else "")
        return {"ui": {"glm_tts": [{"voice": name.strip(), "deleted_prompt_audio": deleted}]}}


class GlmTtsLoadVoice:
    """One of the tenant's own voices, or a shared studio voice (shared/<name>)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = (VOICE,)
    RETURN_NAMES = ("voice",)
    FUNCTION = "load"
    # The guard replaces the combo with the caller's own voices (plus the shared ones) in /object_info.
    TENANCY_META = {"tenant_lists": {"voice": "voices"}}

    @classmethod
    def INPUT_TYPES(cls):
        try:
            names = store.voice_names(store.tenancy_dir(), None)
        except (OSError, ValueError, RuntimeError):
            names = []
        return {"required": {"voice": (names, {"tooltip": "your voices; shared studio voices are shared/<name>"})}}

    @classmethod
    def VALIDATE_INPUTS(cls, voice):
        # Only the form of the name: which voices exist depends on the tenant, known once the prompt runs.
        return _valid_voice_name(voice)

    @classmethod
    def IS_CHANGED(cls, voice):
        try:
            return store.voice_fingerprint(store.tenancy_dir(), store.current_tenant(), voice)
        except (OSError, ValueError):
            return _nan()

    def load(self, voice: str):
        tenant, root = store.current_tenant(), store.tenancy_dir()
        return (store.load_voice(root, tenant, voice, store.master_secret()),)


class GlmTtsSynthesize:
    """Text in a voice at 24 kHz, applying the tenant's TTS profile (dictionary, sampling, limits)."""

    CATEGORY = CATEGORY
    RETURN_TYPES = ("AUDIO",)
    RETURN_NAMES = ("audio",)
    FUNCTION = "run"
    TENANCY_META = {"estimate": {"text_input": "text"}}

    @classmethod
    def INPUT_TYPES(cls):
        defaults = Sampling()
        return {"required": {
            "model": (MODEL,),
            "voice": (VOICE,),
            "text": ("STRING", {"multiline": True, "default": ""}),
            "seed": ("INT", {"default": 0, "min": 0, "max": 0xFFFFFFFFFFFFFFFF}),
            "sampling": (["profile", "inputs"], {"default": "profile",
                                                 "tooltip": "profile: your TTS profile's settings; inputs: below"}),
            "top_p": ("FLOAT", {"default": defaults.top_p, "min": 0.01, "max": 1.0, "step": 0.01}),
            "top_k": ("INT", {"default": defaults.top_k, "min": 1, "max": 1000}),
            "temperature": ("FLOAT", {"default": defaults.temperature, "min": 0.05, "max": 5.0, "step": 0.05}),
            "ras_window": ("INT", {"default": defaults.ras_window, "min": 1, "max": 200,
                                   "tooltip": "repetition-aware sampling: tokens looked back at"}),
            "use_phoneme": ("BOOLEAN", {"default": False,
                                        "tooltip": "phoneme G2P with the pronunciation dictionaries"}),
            "sample_rate": (OUTPUT_RATES, {"default": 24000}),
        }, "hidden": {"unique_id": "UNIQUE_ID"}}

    @classmethod
    def IS_CHANGED(cls, **_):
        # The output depends on the tenant's profile as well as on the inputs (and tenants never share it).
        try:
            tenant = store.current_tenant()
            return f"{tenant or ''}:{store.profile_for(store.tenancy_dir(), tenant).fingerprint()}"
        except (OSError, ValueError):
            return _nan()

    def run(self, model: GlmTtsModels, voice: Voice, text: str, seed: int, sampling: str, top_p: float,
            top_k: int, temperature: float, ras_window: int, use_phoneme: bool, sample_rate: int,
            unique_id: str | None = None):
        profile = store.profile_for(store.tenancy_dir(), store.current_tenant())
        if len(text) > profile.max_text_chars:
            raise ValueError(f"text_too_long: {len(text)} characters, your profile allows {profile.max_text_chars}")
        if int(sample_rate) not in profile.sample_rates:
            raise ValueError(f"sample_rate_not_allowed: {sample_rate} Hz; your profile allows "
                             f"{', '.join(map(str, profile.sample_rates))} Hz")
        knobs = profile.sampling if sampling == "profile" else Sampling(top_p, top_k, temperature, ras_window)
        recorded = Recording(model)
        start = time.perf_counter()
        wav, rate = synthesize(recorded.models, voice, text, seed=seed, top_p=knobs.top_p, top_k=knobs.top_k,
                               temperature=knobs.temperature, ras_window=knobs.ras_window, use_phoneme=use_phoneme,
                               dictionary={**model.dictionary, **profile.dictionary},
                               callback=chunk_progress(unique_id))
        if int(sample_rate) != rate:
            wav = resample(wav, rate, int(sample_rate))
        info = {**recorded.summary(), "seconds": round(wav.shape[-1] / int(sample_rate), 3),
                "elapsed_s": round(time.perf_counter() - start, 3), **_calls()}
        return {"ui": {"glm_tts": [info]}, "result": (to_audio(wav, int(sample_rate)),)}


class Recording:
    """Wraps the models to record what reaches the LM (text ids) and the flow (speech tokens) per chunk."""

    def __init__(self, models: GlmTtsModels):
        self.text_ids: list[list[int]] = []
        self.speech_tokens: list[list[int]] = []
        recording = self

        class Tokenizer:
            def encode(self, text: str) -> list[int]:
                ids = models.tokenizer.encode(text)
                recording.text_ids.append(ids)
                return ids

        class Flow:
            def __getattr__(self, name: str):
                return getattr(models.flow, name)

            def inference(self, tokens: torch.Tensor, *args, **kwargs):
                recording.speech_tokens.append(tokens.reshape(-1).tolist())
                return models.flow.inference(tokens, *args, **kwargs)

        self.models = dataclasses.replace(models, tokenizer=Tokenizer(), flow=Flow())

    def summary(self) -> dict:
        def digest(value) -> str:
            return hashlib.sha256(json.dumps(value).encode()).hexdigest()[:16]

        return {"chunks": len(self.speech_tokens), "speech_tokens": sum(map(len, self.speech_tokens)),
                "token_digest": digest(self.speech_tokens), "text_digest": digest(self.text_ids)}


def chunk_progress(node_id: str | None, scale: int = 100):
    """Pipeline callback -> one ProgressBar over all chunks (LM then flow per chunk), interrupt every step."""
    import comfy.model_management as mm

    from .progress import comfy_progress

    bar = comfy_progress(scale, node_id)
    last = -1

    def callback(chunk: int, chunks: int, stage: str, step: int, steps: int) -> None:
        nonlocal last
        half = scale // 2
        done = chunk * scale + (0 if stage == "lm" else half) + half * step // max(steps, 1)
        if done != last:
            last = done
            bar(done, chunks * scale)
        else:
            mm.throw_exception_if_processing_interrupted()

    return callback


def _calls() -> dict:
    return {"speech_tokenizer_calls": CALLS["speech_tokenizer"], "campplus_calls": CALLS["campplus"]}


def warm_up(model: str | None = None, precision: str = "auto") -> list[str]:
    """Start-up hook (config `warmup: {glm_tts: {model: ..., precision: ...}}`): loads the models of `model`
    (default: the first GLM-TTS folder found) and decrypts the shared studio voices into memory; returns the
    names of the shared voices."""
    name = model or model_choices()[0]
    try:
        get_models(name, precision)
    except FileNotFoundError as exc:
        if model:
            raise
        log.info("[glm-tts] warm-up: no models preloaded (%s)", exc)
    names = store.warm_up(store.tenancy_dir(), store.master_secret())
    if names:
        log.info("[glm-tts] preloaded %d shared voice(s): %s", len(names), ", ".join(names))
    return names


NODE_CLASS_MAPPINGS = {
    "GlmTtsLoader": GlmTtsLoader,
    "GlmTtsVoice": GlmTtsVoice,
    "GlmTtsSaveVoice": GlmTtsSaveVoice,
    "GlmTtsLoadVoice": GlmTtsLoadVoice,
    "GlmTtsSynthesize": GlmTtsSynthesize,
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "GlmTtsLoader": "GLM-TTS Loader",
    "GlmTtsVoice": "GLM-TTS Voice from Prompt",
    "GlmTtsSaveVoice": "GLM-TTS Save Voice",
    "GlmTtsLoadVoice": "GLM-TTS Load Voice",
    "GlmTtsSynthesize": "GLM-TTS Synthesize",
}

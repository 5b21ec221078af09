"""GLM-TTS nodes: load the models, clone a voice from a prompt, keep voices per tenant, synthesise speech.

Thin V1 classes over `nodes.glm_tts` (model code), `.loading` (models in ComfyUI) and `.voices` (tenant data);
ComfyUI modules are imported inside methods only, so this module also imports outside ComfyUI.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from ..glm_tts import GlmTtsModels, Voice, make_voice, synthesize
from ..glm_tts.prompt_checks import check_prompt
from ..shared.resample import resample
from ..shared_comfy.audio import to_audio
from ..shared_comfy.guard import context
from . import voices as store
from .diagnostics import Recording, calls
from .loading import PRECISIONS, get_models, model_choices, speaker_embedder, speech_tokenizer
from .profile import Sampling

log = logging.getLogger("glm_tts")

CATEGORY = "talking head/GLM-TTS"
MODEL, VOICE = "GLM_TTS_MODEL", "GLM_TTS_VOICE"
OUTPUT_RATES = [24000, 16000, 22050, 32000, 44100, 48000]


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
        info = {**report.as_dict(), "speech_tokens": len(voice.prompt_speech_tokens), **calls()}
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
        tenant, root = context.current_tenant(), context.tenancy_dir()
        profile = store.profile_for(root, tenant)
        path = store.save_voice(root, tenant, name.strip(), voice, context.master_secret(), overwrite)
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
            names = store.voice_names(context.tenancy_dir(), None)
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
            return store.voice_fingerprint(context.tenancy_dir(), context.current_tenant(), voice)
        except (OSError, ValueError):
            return _nan()

    def load(self, voice: str):
        tenant, root = context.current_tenant(), context.tenancy_dir()
        return (store.load_voice(root, tenant, voice, context.master_secret()),)


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
            tenant = context.current_tenant()
            return f"{tenant or ''}:{store.profile_for(context.tenancy_dir(), tenant).fingerprint()}"
        except (OSError, ValueError):
            return _nan()

    def run(self, model: GlmTtsModels, voice: Voice, text: str, seed: int, sampling: str, top_p: float,
            top_k: int, temperature: float, ras_window: int, use_phoneme: bool, sample_rate: int,
            unique_id: str | None = None):
        profile = store.profile_for(context.tenancy_dir(), context.current_tenant())
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
                "elapsed_s": round(time.perf_counter() - start, 3), **calls()}
        return {"ui": {"glm_tts": [info]}, "result": (to_audio(wav, int(sample_rate)),)}


def chunk_progress(node_id: str | None, scale: int = 100):
    """Pipeline callback -> one ProgressBar over all chunks (LM then flow per chunk), interrupt every step."""
    import comfy.model_management as mm

    from ..shared_comfy.progress import comfy_progress

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
    names = store.warm_up(context.tenancy_dir(), context.master_secret())
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

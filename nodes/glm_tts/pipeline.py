"""GLM-TTS end to end: load the models, make a voice from a prompt recording, synthesise long text.

This is the entry API for the ComfyUI nodes; it mirrors upstream `generate_long` (chunking, per-chunk
seeding, the prompt-history cache) with every random draw taken from one seeded generator per chunk.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch

from .campplus import SpeakerEmbedder, campplus_embedder
from .features import prompt_mel, speaker_fbank
from .flow import Flow, load_flow
from .frontend import split_by_len, text_normalize
from .g2p import hybrid_g2p, load_dictionary, load_kept_chars
from .hift import HiFTGenerator, load_hift
from .lm import build_input_ids, generate_speech_tokens, load_llm
from .sampling import SamplingConfig, exponential_draws
from .speech_tokenizer import SpeechTokenizer, load_speech_tokenizer
from .tokenizer import GlmTokenizer, SpecialTokenIds, special_token_ids
from .voice import Voice

MAX_LLM_SEQ_INP_LEN = 750
HIFT_SAMPLE_RATE = 24000

Progress = Callable[[int, int, str, int, int], None]
"""`callback(chunk, n_chunks, stage, step, steps)`, stage "lm" or "flow"; raise from it to interrupt."""


class TextTokenizer(Protocol):
    def encode(self, text: str) -> list[int]: ...


def _first_existing(root: Path, *candidates: str) -> Path | None:
    return next((root / c for c in candidates if (root / c).exists()), None)


@dataclass(frozen=True)
class GlmTtsPaths:
    """Where each GLM-TTS file lives; `from_root` accepts the repo layout (ckpt/...) or the HF snapshot."""

    llm: Path
    flow_checkpoint: Path
    flow_config: Path
    hift: Path
    speech_tokenizer: Path
    text_tokenizer: Path
    campplus: Path | None = None
    kept_chars: Path | None = None  # configs/G2P_able_1word.json
    dictionary: Path | None = None  # configs/G2P_replace_dict.jsonl
    custom_replace: Path | None = None  # configs/custom_replace.jsonl

    @classmethod
    def from_root(cls, root: str | Path) -> GlmTtsPaths:
        root = Path(root)
        ckpt = root / "ckpt" if (root / "ckpt").is_dir() else root
        required = {"llm": ckpt / "llm", "flow_checkpoint": ckpt / "flow" / "flow.pt",
                    "flow_config": ckpt / "flow" / "config.yaml", "hift": ckpt / "hift" / "hift.pt",
                    "speech_tokenizer": ckpt / "speech_tokenizer",
                    "text_tokenizer": ckpt / "vq32k-phoneme-tokenizer"}
        missing = [str(p) for p in required.values() if not p.exists()]
        if missing:
            raise FileNotFoundError(f"glm_tts_files_missing under {root}: {', '.join(missing)}")
        return cls(**required,
                   campplus=_first_existing(root, "frontend/campplus.onnx", "campplus.onnx"),
                   kept_chars=_first_existing(root, "configs/G2P_able_1word.json"),
                   dictionary=_first_existing(root, "configs/G2P_replace_dict.jsonl"),
                   custom_replace=_first_existing(root, "configs/custom_replace.jsonl"))


def _read_replacements(path: Path | None) -> list[tuple[str, str]]:
    import json

    if path is None:
        return []
    with open(path, encoding="utf-8") as f:
        rows = [json.loads(line) for line in f if line.strip()]
    return [(r["origin"], r["new"]) for r in rows]


@dataclass
class GlmTtsModels:
    """The loaded models; the speech tokenizer and CAM++ load on first use (only to make voices)."""

    tokenizer: TextTokenizer
    ids: SpecialTokenIds
    llm: torch.nn.Module
    flow: Flow
    vocoder: HiFTGenerator
    device: torch.device
    dtype: torch.dtype = torch.float32
    paths: GlmTtsPaths | None = None
    kept_chars: frozenset[str] = frozenset()
    dictionary: dict[str, str] = field(default_factory=dict)
    replacements: list[tuple[str, str]] = field(default_factory=list)
    sample_rate: int = HIFT_SAMPLE_RATE
    loaded_speech_tokenizer: SpeechTokenizer | None = None
    loaded_speaker_embedder: SpeakerEmbedder | None = None

    def speech_tokenizer(self) -> SpeechTokenizer:
        if self.loaded_speech_tokenizer is None:
            if self.paths is None:
                raise RuntimeError("speech_tokenizer_unavailable: no model paths were given")
            # float32 always: nearest-codebook ties are fragile and the tokenizer only runs once per voice.
            self.loaded_speech_tokenizer = load_speech_tokenizer(self.paths.speech_tokenizer, self.device)
        return self.loaded_speech_tokenizer

    def speaker_embedder(self) -> SpeakerEmbedder:
        if self.loaded_speaker_embedder is None:
            if self.paths is None or self.paths.campplus is None:
                raise FileNotFoundError("campplus_missing: put frontend/campplus.onnx in the GLM-TTS folder")
            self.loaded_speaker_embedder = campplus_embedder(self.paths.campplus)
        return self.loaded_speaker_embedder


def load_glm_tts(paths: GlmTtsPaths | str | Path, device: torch.device | str = "cpu",
                 dtype: torch.dtype = torch.float32) -> GlmTtsModels:
    """Text tokenizer, LM and flow in `dtype`, 24 kHz HiFT in float32 (its STFTs need it); never runs code
    shipped with the weights."""
    if not isinstance(paths, GlmTtsPaths):
        paths = GlmTtsPaths.from_root(paths)
    device = torch.device(device)
    tokenizer = GlmTokenizer.from_dir(paths.text_tokenizer)
    return GlmTtsModels(
        tokenizer=tokenizer, ids=special_token_ids(tokenizer), llm=load_llm(paths.llm, device, dtype),
        flow=load_flow(paths.flow_checkpoint, paths.flow_config, device, dtype),
        vocoder=load_hift(paths.hift, device=device), device=device, dtype=dtype, paths=paths,
        kept_chars=load_kept_chars(paths.kept_chars) if paths.kept_chars else frozenset(),
        dictionary=load_dictionary(paths.dictionary) if paths.dictionary else {},
        replacements=_read_replacements(paths.custom_replace),
    )


def make_voice(models: GlmTtsModels, prompt_wav: torch.Tensor, sample_rate: int, prompt_text: str,
               speaker_embedder: SpeakerEmbedder | None = None) -> Voice:
    """Voice from a (channels, T) prompt and its transcript (which must match what is spoken)."""
    if not prompt_text.strip():
        raise ValueError("empty_prompt_text: the transcript of the prompt audio is required")
    text = text_normalize(prompt_text, models.replacements)
    wav = prompt_wav.float().cpu()
    embed = speaker_embedder or models.speaker_embedder()
    return Voice(
        prompt_text=text,
        prompt_text_tokens=models.tokenizer.encode(text + " "),
        prompt_speech_tokens=models.speech_tokenizer().tokenize(wav, sample_rate),
        prompt_mel=prompt_mel(wav, sample_rate, models.sample_rate)[0],
        embedding=embed(speaker_fbank(wav, sample_rate)).reshape(-1).float(),
        sample_rate=models.sample_rate,
    )


@dataclass
class PromptHistory:
    """Upstream's prompt cache: the voice prompt plus earlier chunks' text and generated speech tokens."""

    text_tokens: list[list[int]]
    speech_tokens: list[list[int]]

    def prompt_for(self, n_text_tokens: int) -> tuple[list[int], list[int]]:
        """Prune entries after the first while the estimated LM input exceeds 750 speech tokens."""
        total_text = sum(map(len, self.text_tokens))
        ratio = sum(map(len, self.speech_tokens)) / (total_text if total_text > 0 else 1.0)
        estimate = int(ratio * n_text_tokens)
        while sum(map(len, self.speech_tokens)) + estimate > MAX_LLM_SEQ_INP_LEN and len(self.speech_tokens) > 1:
            self.text_tokens.pop(1)
            self.speech_tokens.pop(1)
        return [t for x in self.text_tokens for t in x], [t for x in self.speech_tokens for t in x]


def synthesize(
    models: GlmTtsModels,
    voice: Voice,
    text: str,
    seed: int = 0,
    top_p: float = 0.8,
    top_k: int = 25,
    temperature: float = 1.0,
    ras_window: int = 10,
    use_phoneme: bool = False,
    dictionary: dict[str, str] | None = None,
    callback: Progress | None = None,
    sample_method: str = "ras",
    use_prompt_cache: bool = True,
) -> tuple[torch.Tensor, int]:
    """(wav (1, T) float32 on CPU, sample rate) for `text` in `voice`.

    `dictionary` ({"surface": "replacement"}) overrides the shipped one and only applies with
    `use_phoneme`. Each chunk reseeds with `seed`, as upstream does.
    """
    if voice.sample_rate != models.sample_rate:
        raise ValueError(f"voice_rate_mismatch: voice made for {voice.sample_rate} Hz, vocoder is {models.sample_rate}")
    sampling = SamplingConfig(method=sample_method, top_p=top_p, top_k=top_k, temperature=temperature,
                              win_size=ras_window)
    words = models.dictionary if dictionary is None else dictionary
    chunks = split_by_len(text_normalize(text, models.replacements))
    history = PromptHistory([list(voice.prompt_text_tokens)], [list(voice.prompt_speech_tokens)])
    prompt_tokens = torch.tensor([voice.prompt_speech_tokens], dtype=torch.long)
    pieces: list[torch.Tensor] = []
    for k, chunk in enumerate(chunks):
        def report(stage: str, k: int = k) -> Callable[[int, int], None] | None:
            return None if callback is None else (lambda step, steps: callback(k, len(chunks), stage, step, steps))

        generator = torch.Generator(device=models.device).manual_seed(seed)
        chunk_text = text_normalize(chunk, models.replacements)
        if use_phoneme:
            chunk_text = hybrid_g2p(chunk_text, models.kept_chars, words)
        text_ids = models.tokenizer.encode(chunk_text)
        if use_prompt_cache and len(history.text_tokens) > 1:
            prompt_text_ids, prompt_speech = history.prompt_for(len(text_ids))
        else:
            prompt_text_ids, prompt_speech = history.text_tokens[0], history.speech_tokens[0]
        input_ids = build_input_ids(prompt_text_ids, text_ids, prompt_speech, models.ids)
        tokens = generate_speech_tokens(models.llm, input_ids, len(text_ids), models.ids,
                                        exponential_draws(generator), sampling, report("lm"))
        history.text_tokens.append(text_ids)
        history.speech_tokens.append(tokens)
        pieces.append(_tokens_to_wav(models, voice, prompt_tokens, tokens, generator, report("flow")))
    wav = torch.cat(pieces, dim=1) if pieces else torch.zeros(1, 0)
    return wav.float().cpu(), models.sample_rate


def _tokens_to_wav(models: GlmTtsModels, voice: Voice, prompt_tokens: torch.Tensor, tokens: Sequence[int],
                   generator: torch.Generator, callback: Callable[[int, int], None] | None) -> torch.Tensor:
    # Upstream only warns about ids outside the audio range; they cannot be embedded, so they are dropped.
    valid = [t for t in tokens if 0 <= t < models.ids.audio_vocab]
    mel = models.flow.inference(torch.tensor([valid], dtype=torch.long), prompt_tokens, voice.prompt_mel[None],
                                voice.embedding[None], generator=generator, callback=callback)
    if mel.shape[-1] == 0:
        return torch.zeros(1, 0)
    wav, _ = models.vocoder.inference(mel.float(), generator=generator)
    return wav.cpu()

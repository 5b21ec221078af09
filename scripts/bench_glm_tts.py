"""What a saved (cached) GLM-TTS voice saves per request: clone + synthesise against unseal + synthesise.

Both paths run side by side in one process on the same models, text and seed; prints per-stage medians and the
ratio. `--size tiny` uses the test model set through the real loader; `--size full` builds every module at the
upstream sizes with random weights (LM 1.5 B, flow DiT 768x18, HiFT, WhisperVQ encoder; the text tokenizer and
CAM++ are small stand-ins: CAM++'s ONNX graph is not public in a form we can rebuild, the real one is ~7 M params).
Usage: .venv/bin/python scripts/bench_glm_tts.py [--size tiny|full] [--text 你好。] [--repeats 3] [--warmup 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import wave
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nodes.glm_tts import GlmTtsModels, load_glm_tts, make_voice, synthesize  # noqa: E402
from nodes.glm_tts.campplus import campplus_embedder  # noqa: E402
from nodes.glm_tts_comfy.sealed_voice import seal, unseal, voice_key  # noqa: E402
from tests.harness.tiny_models import write_campplus_onnx, write_glm_tts  # noqa: E402

MANIFESTS = REPO / "tests" / "fixtures" / "manifests" / "glm-tts"
PROMPT = REPO / "tests" / "fixtures" / "media" / "speech_en_16k.wav"
REAL_IDS = {"pad": 59246, "eoa": 59253, "boa": 59260, "ats": 61498, "ate": 61498 + 32767}


class CharTokenizer:
    """One id per character below <|endoftext|> (tokenisation costs microseconds either way)."""

    def __init__(self, text_vocab: int):
        self.text_vocab = text_vocab

    def encode(self, text: str) -> list[int]:
        return [ord(c) % self.text_vocab for c in text]


def manifest_config(relative: str) -> dict:
    return json.loads((MANIFESTS / f"{relative}.manifest.json").read_text(encoding="utf-8"))["config"]


def full_size_models(workdir: Path) -> GlmTtsModels:
    from transformers import LlamaConfig, LlamaForCausalLM, WhisperFeatureExtractor

    from nodes.glm_tts.flow import Flow, FlowConfig
    from nodes.glm_tts.hift import HiFTConfig, HiFTGenerator, fold_weight_norm
    from nodes.glm_tts.speech_tokenizer import SpeechTokenizer, WhisperVQConfig, WhisperVQEncoder
    from nodes.glm_tts.tokenizer import SpecialTokenIds

    torch.manual_seed(0)
    llm_config = {k: v for k, v in manifest_config("ckpt/llm/config.json").items()
                  if k not in ("architectures", "transformers_version", "torch_dtype")}
    llm = LlamaForCausalLM(LlamaConfig(**llm_config)).eval()
    flow_kwargs = manifest_config("ckpt/flow/config.yaml")["resolved_constructor_kwargs"]
    flow = Flow(FlowConfig.from_upstream(flow_kwargs)).eval()
    vocoder = fold_weight_norm(HiFTGenerator(HiFTConfig())).eval()
    encoder = WhisperVQEncoder(WhisperVQConfig.from_dict(manifest_config("ckpt/speech_tokenizer/config.json"))).eval()
    features = WhisperFeatureExtractor(feature_size=128)
    return GlmTtsModels(tokenizer=CharTokenizer(REAL_IDS["pad"]), ids=SpecialTokenIds(**REAL_IDS), llm=llm,
                        flow=flow, vocoder=vocoder, device=torch.device("cpu"),
                        loaded_speech_tokenizer=SpeechTokenizer(encoder, features),
                        loaded_speaker_embedder=campplus_embedder(write_campplus_onnx(workdir / "campplus.onnx")))


def read_prompt(seconds: float) -> tuple[torch.Tensor, int]:
    with wave.open(str(PROMPT)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(int(seconds * rate)), dtype="<i2").astype(np.float32) / 32768.0
    return torch.from_numpy(pcm.copy())[None], rate


def timed(call) -> tuple[tuple[float, float], object]:
    """((wall s, CPU s of this process), result): CPU time stays meaningful when other work shares the cores."""
    wall, cpu = time.perf_counter(), time.process_time()
    result = call()
    return (time.perf_counter() - wall, time.process_time() - cpu), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=("tiny", "full"), default="tiny")
    parser.add_argument("--text", default="你好。")
    parser.add_argument("--prompt-seconds", type=float, default=5.0)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        (load_s, _), models = timed(lambda: full_size_models(Path(tmp)) if args.size == "full"
                               else load_glm_tts(write_glm_tts(Path(tmp))))
        params = sum(p.numel() for m in (models.llm, models.flow, models.vocoder) for p in m.parameters())
        print(f"{args.size} models ready in {load_s:.1f} s: LM+flow+HiFT {params / 1e6:.1f} M params, "
              f"{torch.get_num_threads()} threads, prompt {args.prompt_seconds:g} s, text {args.text!r}")
        wav, rate = read_prompt(args.prompt_seconds)
        key = voice_key(b"benchmark master secret", "tenant")
        sealed = seal(make_voice(models, wav, rate, "Hello there."), key, "tenant")
        stages: dict[str, list[tuple[float, float]]] = {"clone": [], "unseal": [], "synth (fresh voice)": [],
                                                        "synth (saved voice)": []}
        for i in range(args.warmup + args.repeats):
            clone_s, fresh = timed(lambda: make_voice(models, wav, rate, "Hello there."))
            fresh_s, _ = timed(lambda v=fresh: synthesize(models, v, args.text, seed=1))
            unseal_s, saved = timed(lambda: unseal(sealed, key, "tenant"))
            saved_s, _ = timed(lambda v=saved: synthesize(models, v, args.text, seed=1))
            if i >= args.warmup:
                for name, value in zip(stages, (clone_s, unseal_s, fresh_s, saved_s), strict=True):
                    stages[name].append(value)
        for clock, index in (("wall", 0), ("CPU", 1)):
            median = {name: statistics.median(v[index] for v in values) for name, values in stages.items()}
            print(f"{clock} time, median of {args.repeats}: " + ", ".join(
                f"{name} {value * 1000:.1f} ms" for name, value in median.items()))
            without = median["clone"] + median["synth (fresh voice)"]
            with_cache = median["unseal"] + median["synth (saved voice)"]
            print(f"  per request: without a saved voice {without:.3f} s, with one {with_cache:.3f} s, ratio "
                  f"{without / with_cache:.2f}x; voice preparation {median['clone'] * 1000:.0f} ms -> "
                  f"{median['unseal'] * 1000:.2f} ms")

if __name__ == "__main__":
    main()

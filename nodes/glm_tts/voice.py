"""A cloned voice: everything GLM-TTS needs from the prompt recording, savable as one safetensors file.

Once saved, synthesis no longer needs the speech tokenizer, CAM++ or the prompt audio.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

VOICE_FORMAT = "glm-tts-voice/1"


@dataclass
class Voice:
    prompt_text: str  # normalised transcript of the prompt
    prompt_text_tokens: list[int]  # LM ids of prompt_text + " "
    prompt_speech_tokens: list[int]  # 25 Hz speech tokens, 0..32767
    prompt_mel: torch.Tensor  # (frames, 80) log-mel at `sample_rate`, 50 Hz
    embedding: torch.Tensor  # (192,) CAM++ speaker embedding
    sample_rate: int = 24000

    def to_bytes(self) -> bytes:
        """The voice as one safetensors blob (tensors + transcript and rate in the metadata)."""
        from safetensors.torch import save

        tensors = {
            "prompt_text_tokens": torch.tensor(self.prompt_text_tokens, dtype=torch.int64),
            "prompt_speech_tokens": torch.tensor(self.prompt_speech_tokens, dtype=torch.int64),
            "prompt_mel": self.prompt_mel.detach().float().cpu().contiguous(),
            "embedding": self.embedding.detach().float().cpu().reshape(-1).contiguous(),
        }
        meta = {"format": VOICE_FORMAT, "prompt_text": json.dumps(self.prompt_text, ensure_ascii=False),
                "sample_rate": str(self.sample_rate)}
        return save(tensors, metadata=meta)

    def save(self, path: str | Path) -> None:
        Path(path).write_bytes(self.to_bytes())

    @classmethod
    def from_bytes(cls, data: bytes, source: str = "voice") -> Voice:
        from safetensors.torch import load

        header_len = int.from_bytes(data[:8], "little") if len(data) >= 8 else 0
        try:
            meta = json.loads(data[8: 8 + header_len]).get("__metadata__") or {}
        except (ValueError, UnicodeDecodeError, AttributeError):
            meta = {}
        if meta.get("format") != VOICE_FORMAT:
            raise ValueError(f"not_a_voice_file: {source} has format {meta.get('format')!r}")
        t = load(data)
        return cls(prompt_text=json.loads(meta["prompt_text"]), prompt_text_tokens=t["prompt_text_tokens"].tolist(),
                   prompt_speech_tokens=t["prompt_speech_tokens"].tolist(), prompt_mel=t["prompt_mel"],
                   embedding=t["embedding"], sample_rate=int(meta["sample_rate"]))

    @classmethod
    def load(cls, path: str | Path) -> Voice:
        return cls.from_bytes(Path(path).read_bytes(), str(path))

"""What a GLM-TTS run reports in its node output, for tests and operators: how often the prompt encoders ran in
this process (a synthesis from a saved voice never runs them), and digests of what reached the LM and the flow.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json

import torch

from ..glm_tts import GlmTtsModels

CALLS = {"speech_tokenizer": 0, "campplus": 0}
"""Process-wide counts of prompt-encoder runs: a synthesis from a saved voice never adds to them."""


def count(name: str) -> None:
    CALLS[name] += 1


def calls() -> dict:
    return {"speech_tokenizer_calls": CALLS["speech_tokenizer"], "campplus_calls": CALLS["campplus"]}


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

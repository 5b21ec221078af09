"""GLM-TTS text tokenizer: tiktoken BPE over the shipped rank file plus the added-token table.

Reads `tokenizer.model` and `tokenizer_config.json` directly, so the remote code shipped with the
weights (`tokenization_chatglm.py`) is never imported or executed.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path

# The GLM-4 pre-tokenizer split pattern (contractions, letter runs, 1-3 digit groups, symbols, spaces).
GLM4_SPLIT_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)


@dataclass(frozen=True)
class AddedToken:
    content: str
    id: int
    lstrip: bool = False
    rstrip: bool = False


def read_rank_file(path: str | Path) -> dict[bytes, int]:
    """`<base64 token> <rank>` per line, as tiktoken rank files are written."""
    ranks: dict[bytes, int] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            parts = line.split()
            if len(parts) == 2:
                ranks[base64.b64decode(parts[0])] = int(parts[1])
    return ranks


def read_added_tokens(config_path: str | Path) -> list[AddedToken]:
    """Added tokens from a Hugging Face `tokenizer_config.json` (`added_tokens_decoder`)."""
    with open(config_path, encoding="utf-8") as f:
        cfg = json.load(f)
    table = cfg.get("added_tokens_decoder", {})
    return [AddedToken(content=v["content"], id=int(k), lstrip=bool(v.get("lstrip", False)),
                       rstrip=bool(v.get("rstrip", False))) for k, v in table.items()]


class GlmTokenizer:
    """Encodes text the way the slow ChatGLM4 tokenizer does (no prefix tokens are added)."""

    def __init__(self, ranks: dict[bytes, int], added_tokens: list[AddedToken]):
        import tiktoken

        self._bpe = tiktoken.Encoding(name="glm_tts", pat_str=GLM4_SPLIT_PATTERN,
                                      mergeable_ranks=ranks, special_tokens={})
        self._added = {t.content: t for t in added_tokens}
        ordered = sorted(self._added, key=len, reverse=True)  # longest match wins at a position
        self._splitter = re.compile("(" + "|".join(map(re.escape, ordered)) + ")") if ordered else None

    @classmethod
    def from_dir(cls, path: str | Path) -> GlmTokenizer:
        path = Path(path)
        return cls(read_rank_file(path / "tokenizer.model"), read_added_tokens(path / "tokenizer_config.json"))

    def encode(self, text: str) -> list[int]:
        pieces = self._splitter.split(text) if self._splitter else [text]
        ids: list[int] = []
        for i, piece in enumerate(pieces):
            token = self._added.get(piece) if i % 2 == 1 else None
            if token is not None:
                ids.append(token.id)
                continue
            # Neighbouring added tokens may swallow whitespace on their side.
            if i + 1 < len(pieces) and pieces[i + 1] in self._added and self._added[pieces[i + 1]].lstrip:
                piece = piece.rstrip()
            if i > 0 and pieces[i - 1] in self._added and self._added[pieces[i - 1]].rstrip:
                piece = piece.lstrip()
            if piece:
                ids.extend(self._bpe.encode_ordinary(piece))
        return ids


@dataclass(frozen=True)
class SpecialTokenIds:
    """LM ids of the audio vocabulary bounds and the control tokens (read, never hard-coded)."""

    ats: int  # <|audio_0|>
    ate: int  # <|audio_32767|>
    boa: int  # <|begin_of_audio|>
    eoa: int  # <|user|>, the end-of-audio stop token
    pad: int  # <|endoftext|>

    @property
    def audio_vocab(self) -> int:
        return self.ate - self.ats + 1


SPECIAL_TOKEN_TEXT = {
    "ats": "<|audio_0|>",
    "ate": "<|audio_32767|>",
    "boa": "<|begin_of_audio|>",
    "eoa": "<|user|>",
    "pad": "<|endoftext|>",
}


def special_token_ids(tokenizer: GlmTokenizer) -> SpecialTokenIds:
    """Encode each control token; each must be one id at or above `<|endoftext|>`, as upstream asserts."""
    floor = tokenizer.encode(SPECIAL_TOKEN_TEXT["pad"])
    ids: dict[str, int] = {}
    for name, text in SPECIAL_TOKEN_TEXT.items():
        encoded = tokenizer.encode(text)
        if len(encoded) != 1 or not floor or encoded[0] < floor[0]:
            raise ValueError(f"bad_special_token: {name} {text!r} encodes to {encoded}")
        ids[name] = encoded[0]
    return SpecialTokenIds(**ids)

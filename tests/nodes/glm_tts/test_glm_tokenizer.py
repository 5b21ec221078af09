"""The GLM-TTS text tokenizer: tiktoken BPE from the rank file, added tokens matched first, no remote code."""

from __future__ import annotations

import base64
import json

import pytest

from nodes.glm_tts.tokenizer import GLM4_SPLIT_PATTERN, GlmTokenizer, SpecialTokenIds, special_token_ids

MERGES = [b"he", b"ll", b"hell", b"hello", b" w", b"or", b" wor", b"ld", b" world"]
ADDED = ["<|endoftext|>", "<|user|>", "<|begin_of_audio|>", "<|audio_0|>", "<|audio_32767|>", "<|X|>", "<|ING2|>"]


@pytest.fixture()
def tokenizer_dir(tmp_path):
    ranks = [bytes([i]) for i in range(256)] + MERGES
    (tmp_path / "tokenizer.model").write_text(
        "".join(f"{base64.b64encode(tok).decode()} {rank}\n" for rank, tok in enumerate(ranks)), encoding="utf-8")
    table = {str(len(ranks) + i): {"content": t, "special": True} for i, t in enumerate(ADDED)}
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"added_tokens_decoder": table}), encoding="utf-8")
    (tmp_path / "tokenization_chatglm.py").write_text("raise SystemExit('remote code executed')\n")
    return tmp_path


def _id(token: str) -> int:
    return 256 + len(MERGES) + ADDED.index(token)


def test_plain_text_is_bpe_encoded_like_tiktoken_with_the_glm4_pattern(tokenizer_dir):
    import tiktoken

    tok = GlmTokenizer.from_dir(tokenizer_dir)
    ranks = {bytes([i]): i for i in range(256)} | {m: 256 + i for i, m in enumerate(MERGES)}
    reference = tiktoken.Encoding("ref", pat_str=GLM4_SPLIT_PATTERN, mergeable_ranks=ranks, special_tokens={})
    for text in ["hello world", "hello, 世界 123456", "  spaces\n\nand lines"]:
        assert tok.encode(text) == reference.encode_ordinary(text)
    assert tok.encode("hello world") == [256 + MERGES.index(b"hello"), 256 + MERGES.index(b" world")]


def test_added_tokens_encode_to_single_ids_inside_text(tokenizer_dir):
    tok = GlmTokenizer.from_dir(tokenizer_dir)
    ids = tok.encode("<|begin_of_audio|>hello<|X|><|ING2|>")
    assert ids == [_id("<|begin_of_audio|>"), 256 + MERGES.index(b"hello"), _id("<|X|>"), _id("<|ING2|>")]


def test_special_ids_are_read_from_the_tokenizer(tokenizer_dir):
    ids = special_token_ids(GlmTokenizer.from_dir(tokenizer_dir))
    assert ids == SpecialTokenIds(ats=_id("<|audio_0|>"), ate=_id("<|audio_32767|>"),
                                  boa=_id("<|begin_of_audio|>"), eoa=_id("<|user|>"), pad=_id("<|endoftext|>"))
    assert ids.audio_vocab == 2


def test_a_control_token_that_is_not_an_added_token_is_rejected(tokenizer_dir):
    cfg = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
    cfg["added_tokens_decoder"] = {k: v for k, v in cfg["added_tokens_decoder"].items() if v["content"] != "<|user|>"}
    (tokenizer_dir / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="bad_special_token: eoa"):
        special_token_ids(GlmTokenizer.from_dir(tokenizer_dir))

"""GLM-TTS text front end against upstream: normalisation, chunking, the full chain and hybrid G2P."""

from __future__ import annotations

import json

import pytest

from nodes.glm_tts.frontend import split_by_len, text_normalize
from nodes.glm_tts.g2p import hybrid_g2p, is_hanzi, load_dictionary, parse_dictionary, phonemize, split_by_dictionary

NAME = "frontend"


@pytest.fixture(scope="module")
def cases(parity):
    return json.loads((parity.dir(NAME) / "cases.json").read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def replacements(cases):
    return [(r["origin"], r["new"]) for r in cases["custom_replace_jsonl_applied_by_pre_replace"]]


@pytest.fixture(scope="module")
def dictionaries(parity, cases):
    return {"default_dict": cases["default_replace_dict"], "empty_dict": {},
            "custom_dict": load_dictionary(parity.dir(NAME) / "custom_G2P_replace_dict.jsonl")}


@pytest.fixture(scope="module")
def kept_chars(cases):
    """Upstream's kept-character list is not shipped here; the hanzi the reference outputs keep as text
    (no dictionary involved) stand in for it, so every other step of the G2P is still checked."""
    kept = {ch for c in cases["g2p"]["empty_dict"] for ch in c["g2p_infer"] if is_hanzi(ch)}
    for c in cases["split_and_pipeline"]:
        kept |= {ch for chunk in c["pipeline"]["chunks"] for ch in chunk["g2p"] if is_hanzi(ch)}
    return frozenset(kept)


def test_every_normalisation_case_matches_upstream(cases, replacements):
    wrong = [(c["input"], text_normalize(c["input"], replacements), c["text_normalize"])
             for c in cases["text_normalize"] if text_normalize(c["input"], replacements) != c["text_normalize"]]
    assert not wrong, f"{len(wrong)}/{len(cases['text_normalize'])} differ: {wrong}"


def test_split_by_len_matches_upstream_chunks(cases):
    for c in cases["split_and_pipeline"]:
        assert split_by_len(c["input"]) == c["split_by_len_raw"], c["input"]


def test_pipeline_normalise_split_renormalise_and_g2p_matches_upstream(cases, replacements, dictionaries,
                                                                       kept_chars):
    for c in cases["split_and_pipeline"]:
        p = c["pipeline"]
        whole = text_normalize(c["input"], replacements)
        assert whole == p["text_normalize"]
        assert split_by_len(whole) == p["split_by_len_of_normalized"]
        for chunk in p["chunks"]:
            tn = text_normalize(chunk["chunk"], replacements)
            assert tn == chunk["chunk_tn"]
            assert hybrid_g2p(tn, kept_chars, dictionaries["default_dict"]) == chunk["g2p"]


@pytest.mark.parametrize("dictionary", ["default_dict", "custom_dict", "empty_dict"])
def test_g2p_segments_phones_and_output_match_upstream(cases, dictionaries, kept_chars, dictionary):
    words = dictionaries[dictionary]
    for c in cases["g2p"][dictionary]:
        assert [list(s) for s in split_by_dictionary(c["input"], words)] == c["replace_segments"], c["input"]
        for chunk in c["g2p_zh_chunks"]:
            assert phonemize(chunk["chunk"]) == chunk["process_one"], chunk["chunk"]
        assert hybrid_g2p(c["input"], kept_chars, words) == c["g2p_infer"], c["input"]


def test_raw_phoneme_tokens_in_the_input_pass_through(kept_chars):
    assert hybrid_g2p("<|X|><|ING2|>", kept_chars, {}) == "<|X|><|ING2|>"


def test_dictionary_lines_must_map_strings_to_strings():
    assert parse_dictionary(['{"银行": "银<|H|><|ANG2|>"}', "", '{"银行": "x"}']) == {"银行": "x"}
    with pytest.raises(ValueError, match="bad_dictionary_line 1"):
        parse_dictionary(['["not", "a", "mapping"]'])


def test_empty_text_normalises_to_a_bare_full_stop():
    assert text_normalize("") == "."

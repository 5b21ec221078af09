"""WeTextProcessing 1.0.3's grammars run through kaldifst give what WeTextProcessing itself (pynini) gives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nodes.glm_tts import grammars
from nodes.glm_tts.text_grammar import (
    EN_FIELD_ORDER,
    ZH_FIELD_ORDER,
    Token,
    normalize_en,
    normalize_zh,
    parse_tokens,
)

CASES = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "wetext" / "tn_cases.json")
                   .read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", CASES["zh"], ids=lambda c: c["input"][:24])
def test_chinese_grammar_reads_like_wetextprocessing_with_glm_tts_options(case):
    assert normalize_zh(case["input"]) == case["normalized"]


@pytest.mark.parametrize("case", CASES["en"], ids=lambda c: c["input"][:24])
def test_english_grammar_reads_like_wetextprocessing(case):
    assert normalize_en(case["input"]) == case["normalized"]


def test_tokens_are_parsed_with_any_spacing_and_escaped_quotes():
    tokens = parse_tokens('char { value: "\\"" }  money {  currency_maj: "dollars" integer_part: "one"  } ')
    assert tokens == [Token("char", {"value": '\\"'}),
                      Token("money", {"currency_maj": "dollars", "integer_part": "one"})]


def test_fields_take_the_verbalisers_order_and_unlisted_fields_drop_unless_order_is_preserved():
    money = Token("money", {"currency_maj": "dollars", "integer_part": "one", "extra": "x"})
    assert money.render(EN_FIELD_ORDER) == 'money { integer_part: "one" currency_maj: "dollars" }'
    date = Token("date", {"month": "may", "day": "sixth", "preserve_order": "true"})
    assert date.render(EN_FIELD_ORDER) == 'date { month: "may" day: "sixth" preserve_order: "true" }'
    assert Token("char", {"value": "a"}).render(ZH_FIELD_ORDER) == 'char { value: "a" }'


def test_a_missing_grammar_file_names_the_package_and_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setenv(grammars.ENV, str(tmp_path))
    monkeypatch.setattr(grammars, "default_dir", lambda: tmp_path / "absent")
    monkeypatch.setattr(grammars, "PACKAGE", "WeTextProcessing-not-installed")
    with pytest.raises(grammars.MissingGrammar, match=r"tn/zh_tn_tagger.fst of WeTextProcessing-not-installed==1.0.3"):
        grammars.grammar_path("tn/zh_tn_tagger.fst")


def test_extract_refuses_a_wheel_whose_grammar_differs(tmp_path):
    import zipfile

    wheel = tmp_path / "WeTextProcessing-1.0.3-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        for name in grammars.FILES:
            zf.writestr(name, b"not the grammar")
    with pytest.raises(ValueError, match="does not match"):
        grammars.extract(wheel, tmp_path / "out")
    assert not (tmp_path / "out" / "tn" / "zh_tn_tagger.fst").exists()


def test_only_what_the_emoji_package_calls_an_emoji_is_dropped():
    from nodes.glm_tts.frontend import remove_emoji

    assert remove_emoji("好★☆😊👍🏽!") == "好★☆!"  # stars are not emoji; a skin-tone sequence is one


FRONTEND = json.loads((Path(__file__).resolve().parents[2] / "fixtures" / "wetext" / "glm_frontend_cases.json")
                      .read_text(encoding="utf-8"))


@pytest.mark.parametrize("case", FRONTEND["cases"], ids=lambda c: c["input"][:24])
def test_whole_front_end_matches_upstream_on_sentences_outside_the_parity_set(case):
    from nodes.glm_tts.frontend import split_by_len, text_normalize

    normalized = text_normalize(case["input"])
    assert normalized == case["text_normalize"]
    assert split_by_len(normalized) == case["split_by_len"]

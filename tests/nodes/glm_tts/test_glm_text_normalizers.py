"""Our own Chinese and English number normalisers beyond the fixture cases (WeTextProcessing's readings)."""

from __future__ import annotations

import pytest

from nodes.glm_tts.normalize_en import cardinal, normalize_en, ordinal, year
from nodes.glm_tts.normalize_zh import normalize_zh, read_integer


@pytest.mark.parametrize(("n", "reading"), [
    (10, "十"), (15, "十五"), (101, "一百零一"), (110, "一百一十"), (1001, "一千零一"), (1010, "一千零一十"),
    (2000, "两千"), (1200, "一千两百"), (10500, "一万零五百"), (110000, "十一万"), (220000, "二十二万"),
])
def test_chinese_integers_read_with_wetext_zeros_and_liang(n, reading):
    assert read_integer(n) == reading


@pytest.mark.parametrize(("text", "reading"), [
    ("共15人", "共十五人"),  # 2 digits: a number
    ("房间1024", "房间一千零二十四"),  # 4 digits: a number
    ("编号12345", "编号幺二三四五"),  # 5 digits: read digit by digit
    ("买2个", "买两个"),  # 二 before a measure word is 两
    ("2月", "二月"),  # ... except before 月/号
    ("90后", "九零后"),
    ("2024/3/8", "二零二四年三月八日"),
    ("8:05am", "上午八点零五分"),
    ("5~10个", "五到十个"),
    ("速度是50km", "速度是五十公里"),
    ("ＡＢＣ，好", "ABC,好"),  # full width folded to half width (the post rules turn ',' back into '，')
])
def test_chinese_numbers_dates_times_and_units(text, reading):
    assert normalize_zh(text) == reading


@pytest.mark.parametrize(("n", "words"), [
    (0, "zero"), (7, "seven"), (42, "forty two"), (100, "one hundred"), (221, "two hundred and twenty one"),
    (1005, "one thousand and five"), (1234, "one thousand two hundred and thirty four"), (2_000_000, "two million"),
])
def test_english_cardinals_are_british_style_without_hyphens(n, words):
    assert cardinal(n) == words


def test_english_ordinals_and_years():
    assert [ordinal(n) for n in (1, 2, 3, 5, 12, 20, 21)] == [
        "first", "second", "third", "fifth", "twelfth", "twentieth", "twenty first"]
    assert [year(n) for n in (1999, 2005, 2024, 1900, 1905)] == [
        "nineteen ninety nine", "two thousand five", "twenty twenty four", "nineteen hundred", "nineteen oh five"]


@pytest.mark.parametrize(("text", "spoken"), [
    ("It was 25% off", "It was twenty five percent off"),
    ("in 1999", "in nineteen ninety nine"),
    ("1999 people", "one thousand nine hundred and ninety nine people"),
    ("Mr. Lee paid £3", "mister Lee paid three pounds"),
    ("on March 3rd", "on the third of march"),
    ("at 10:00", "at ten o'clock"),
])
def test_english_numbers_money_dates_and_abbreviations(text, spoken):
    assert normalize_en(text) == spoken

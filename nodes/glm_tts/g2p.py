"""Hybrid G2P of GLM-TTS ("Phoneme-in"): hanzi outside the kept-character list become phone tokens.

A user pronunciation dictionary (jsonl lines `{"surface": "replacement"}`, longest key wins) is applied
first; its replacements and raw `<|X|><|ING2|>` tokens pass through untouched.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

PUNCTUATION = "。？！；：、.?!;:，,"
PINYIN_PUNCTUATION = "，。；：！？、"
RETROFLEX = {"zh", "ch", "sh", "r"}
DENTAL_SIBILANTS = {"z", "c", "s"}
SYLLABLE_SEP, PHONE_SEP = "-", "|"

_HANZI_RANGES = (
    (0x4E00, 0x9FFF), (0x3400, 0x4DBF), (0x20000, 0x2A6DF), (0x2A700, 0x2B73F), (0x2B740, 0x2B81F),
    (0x2B820, 0x2CEAF), (0x2CEB0, 0x2EBEF), (0x30000, 0x3134F), (0x31350, 0x323AF), (0xF900, 0xFAFF),
    (0x2F800, 0x2FA1F), (0x2E80, 0x2EFF),
)


def is_hanzi(ch: str) -> bool:
    cp = ord(ch)
    return any(lo <= cp <= hi for lo, hi in _HANZI_RANGES)


def script_runs(text: str) -> list[tuple[str, bool]]:
    """Maximal runs of hanzi / non-hanzi characters as (run, is_hanzi)."""
    runs: list[tuple[str, bool]] = []
    for ch in text:
        zh = is_hanzi(ch)
        if runs and runs[-1][1] == zh:
            runs[-1] = (runs[-1][0] + ch, zh)
        else:
            runs.append((ch, zh))
    return runs


@lru_cache(maxsize=1)
def _segmenter():
    import jieba
    import jieba.posseg

    jieba.setLogLevel(logging.WARNING)
    return jieba.posseg


def _syllables(word: str) -> list[tuple[str, str]]:
    from pypinyin import Style, pinyin

    initials = pinyin(word, style=Style.INITIALS, neutral_tone_with_five=True, strict=True)
    finals = pinyin(word, style=Style.FINALS_TONE3, neutral_tone_with_five=True, strict=True)
    return [(i[0], f[0]) for i, f in zip(initials, finals, strict=False)]


def _strip_trailing(items: list[str], sep: str) -> list[str]:
    while items and items[-1] == sep:
        items.pop()
    return items


def phonemize(text: str) -> list[str]:
    """Phones of a hanzi chunk: initial and tonal final per syllable, syllables joined by '-'.

    Finals are in pypinyin TONE3 spelling (neutral tone 5, ü as v); `i` becomes `iii` after zh/ch/sh/r
    and `ii` after z/c/s; 嗯 and 呣 are read as 恩 and 母. Example: 你好 -> n i3 - h ao3.
    """
    text = re.sub(r'[",!\.\?\-—…“”‘’\s]', "，", text.strip())
    text = re.sub(r"[，。；：！？、\s]+", "，", text).strip()
    text = text.replace("嗯", "恩").replace("呣", "母")
    phones: list[str] = []
    for run, _ in script_runs(text):
        current: list[str] = []
        for word, _tag in _segmenter().lcut(run.strip()):
            for initial, final in _syllables(word):
                spelled = initial + final
                if all(c in PINYIN_PUNCTUATION for c in spelled):
                    if current and current[-1] == SYLLABLE_SEP:
                        current.pop()
                    current.append(spelled[0])
                    continue
                if final.startswith("i") and initial in RETROFLEX:
                    final = "iii" + final[1:]
                elif final.startswith("i") and initial in DENTAL_SIBILANTS:
                    final = "ii" + final[1:]
                current += [initial, PHONE_SEP, final, SYLLABLE_SEP] if initial else [final, SYLLABLE_SEP]
        phones += _strip_trailing(current, SYLLABLE_SEP)
    return _strip_trailing([p for p in phones if p not in (PHONE_SEP, "")], SYLLABLE_SEP)


def format_phones(phones: Iterable[str]) -> str:
    """['sh', 'ang4'] -> '<|SH|><|ANG4|>' (punctuation stays bare)."""
    out = []
    for p in phones:
        p = p.strip()
        if not p or p == PHONE_SEP:
            continue
        up = p.upper().replace("-", " ")
        out.append(up if up in PUNCTUATION else f"<|{up}|>")
    return "".join(out)


def align_and_replace(chunk: str, phones: list[str], kept_chars: set[str] | frozenset[str]) -> str:
    """Walk the chunk and its phones together; characters outside `kept_chars` become phone tokens."""
    out, i, n = [], 0, len(phones)
    for ch in chunk:
        if ch in PUNCTUATION:
            out.append(ch)
            if i < n and phones[i] in PUNCTUATION:
                i += 1
            continue
        mine: list[str] = []
        while i < n:
            tok = phones[i]
            if tok == SYLLABLE_SEP:
                i += 1
                break
            if tok in PUNCTUATION:  # substring test, as upstream
                break
            mine.append(tok)
            i += 1
        out.append(format_phones(mine) if ch not in kept_chars and mine else ch)
    return "".join(out)


def split_by_dictionary(text: str, dictionary: dict[str, str]) -> list[tuple[str, bool]]:
    """(fragment, replaced) pieces; at each position the longest matching dictionary key wins."""
    if not dictionary:
        return [(text, False)]
    keys = sorted(dictionary, key=len, reverse=True)
    pieces: list[tuple[str, bool]] = []
    i = 0
    while i < len(text):
        key = next((k for k in keys if k and text.startswith(k, i)), None)
        if key is not None:
            pieces.append((dictionary[key], True))
            i += len(key)
        elif pieces and not pieces[-1][1]:
            pieces[-1] = (pieces[-1][0] + text[i], False)
            i += 1
        else:
            pieces.append((text[i], False))
            i += 1
    return pieces


def hybrid_g2p(text: str, kept_chars: set[str] | frozenset[str], dictionary: dict[str, str] | None = None) -> str:
    """Upstream `g2p_infer`: dictionary first, then phone tokens for hanzi not in `kept_chars`."""
    out = []
    for fragment, replaced in split_by_dictionary(text, dictionary or {}):
        if replaced:
            out.append(fragment)
            continue
        for run, zh in script_runs(fragment):
            if not zh:
                out.append(run)
                continue
            try:
                out.append(align_and_replace(run, phonemize(run), kept_chars))
            except (IndexError, ValueError) as err:  # pypinyin/jieba edge cases: keep the text
                logging.getLogger(__name__).warning("g2p_failed for %r: %s", run, err)
                out.append(run)
    return "".join(out)


def parse_dictionary(lines: Iterable[str]) -> dict[str, str]:
    """Pronunciation dictionary from jsonl lines; later entries override earlier ones."""
    entries: dict[str, str] = {}
    for n, line in enumerate(lines, start=1):
        line = line.strip()
        if not line:
            continue
        obj = json.loads(line)
        if not isinstance(obj, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in obj.items()):
            raise ValueError(f"bad_dictionary_line {n}: expected {{\"surface\": \"replacement\"}}, got {line!r}")
        entries.update(obj)
    return entries


def load_dictionary(path: str | Path) -> dict[str, str]:
    with open(path, encoding="utf-8") as f:
        return parse_dictionary(f)


def load_kept_chars(path: str | Path) -> frozenset[str]:
    """Upstream `configs/G2P_able_1word.json`: the hanzi the LM reads reliably as text."""
    with open(path, encoding="utf-8") as f:
        return frozenset(json.load(f))

"""GLM-TTS text front end: normalisation (upstream's pre/post rules around WeTextProcessing) and chunking.

`text_normalize` follows upstream `TextFrontEnd.text_normalize` step by step, with WeTextProcessing
1.0.3's own grammars (text_grammar) as the normaliser; `split_by_len` cuts long text into chunks of about
30-60 character equivalents (an English syllable counts 0.7).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Sequence
from functools import lru_cache

from .text_grammar import normalize_en, normalize_zh

PUNCTUATION = "。？！；：、.?!;:，,"
PUNCTUATION_SET = frozenset(PUNCTUATION)
LINE_ENDINGS = {".", "!", "?", ";", ":", "：", "。", "！", "？", "；", "，"}
BRACKETS = [("(", ")"), ("（", "）"), ("【", "】"), ("「", "」"), ("`", "`"), ("《", "》"), ("『", "』"),
            ("{", "}"), ("[", "]")]
CHINESE = re.compile(r"[\u4e00-\u9fff]")
SYMBOL_READINGS = {
    "†": "，", "²": "平方", "³": "立方", "/": "每", "~": "到", "～": "到",
    "①": "一", "②": "二", "③": "三", "④": "四", "⑤": "五", "⑥": "六", "⑦": "七", "⑧": "八", "⑨": "九", "⑩": "十",
    "α": "阿尔法", "β": "贝塔", "γ": "伽玛", "Γ": "伽玛", "δ": "德尔塔", "Δ": "德尔塔", "△": "德尔塔",
    "ε": "艾普西龙", "ζ": "捷塔", "η": "依塔", "θ": "西塔", "Θ": "西塔", "ι": "艾欧塔", "κ": "喀帕",
    "λ": "拉姆达", "Λ": "拉姆达", "μ": "缪", "ν": "拗", "ξ": "克西", "Ξ": "克西", "ο": "欧米克伦", "π": "派",
    "Π": "派", "ρ": "肉", "ς": "西格玛", "Σ": "西格玛", "σ": "西格玛", "τ": "套", "υ": "宇普西龙", "φ": "服艾",
    "Φ": "服艾", "χ": "器", "ψ": "普赛", "Ψ": "普赛", "ω": "欧米伽", "Ω": "欧米伽", "□": "方框",
    ">": "大于", "<": "小于", "∈": "属于", "∉": "不属于", "∪": "并", "∩": "交", "⊥": "垂直", "∥": "平行",
    "≠": "不等于", "∵": "因为", "∴": "所以", "∅": "空集", "⊂": "真包含于", "⊃": "包含", "⊆": "包含于",
    "⊇": "真包含", "⊄": "不属于", "⊅": "非超集", "⊈": "不属于", "⊉": "非超集",
}
ZH_DIGITS = "零一二三四五六七八九"


def remove_emoji(text: str) -> str:
    """Upstream drops what the `emoji` package (its pin, 2.14.1) calls an emoji."""
    import emoji

    return emoji.replace_emoji(text, replace="")


def contains_chinese(text: str) -> bool:
    return bool(CHINESE.search(text))


def remove_brackets(text: str, lang: str = "zh") -> str:
    pairs = BRACKETS if lang == "en" else [*BRACKETS, ("‘", "’")]
    for left, right in pairs:
        text = text.replace(left, "").replace(right, "")
    return text


def multiply_asterisks(text: str, lang: str = "zh") -> str:
    """'*' between numbers/letters is read as multiplication; any other '*' is dropped."""
    word, nums = ("multiply", "0-9") if lang == "en" else ("乘", "一二三四五六七八九十百千万亿")
    c = rf"[{nums}a-zA-Z]"
    pattern = (rf"(?<={c})\s*\*\s*(?={c})|(?<={c}\))\s*\*\s*(?={c})|(?<={c})\s*\*\s*(?=\({c})"
               rf"|(?<={c}\))\s*\*\s*(?=\({c})")
    return re.sub(pattern, word, text).replace("*", "")


def _spoken_integer(n: int) -> str:
    # Upstream's own reader for scientific notation: one unit per digit position, then zero clean-up.
    units = ["", "十", "百", "千", "万", "十万", "百万", "千万", "亿", "十亿", "百亿", "千亿"]
    if n == 0:
        return "零"
    if n < 0:
        return "负" + _spoken_integer(-n)
    out: list[str] = []
    pos, zero, last_unit = 0, False, ""
    while n > 0:
        d, unit = n % 10, units[pos] if pos < len(units) else ""
        if d == 0:
            if not zero and out and last_unit not in ("万", "亿"):
                out.append(ZH_DIGITS[0])
                zero = True
        else:
            if unit:
                out.append(unit)
            out.append(ZH_DIGITS[d])
            zero, last_unit = False, unit
        pos, n = pos + 1, n // 10
    text = "".join(reversed(out))
    return re.sub(r"零$", "", re.sub(r"零+", "零", re.sub(r"^一十", "十", text)))


def _spoken_decimal(s: str) -> str:
    whole, _, frac = repr(float(s)).partition(".")
    if frac.strip("0") == "":
        return _spoken_integer(int(whole))
    head = _spoken_integer(int(whole)) if int(whole) != 0 else "零"
    return head + "点" + "".join(ZH_DIGITS[int(d)] for d in frac)


def scientific_notation(text: str) -> str:
    """'3.0×10^8' -> 三乘十的八次方 (only the last such expression of the text, as upstream)."""
    m = re.match(r"(.*?)(-?\d+(?:\.\d+)?)[*x×](\d+(?:\.\d+)?)\^(-?\d+(?:\.\d+)?)(.*?)$", text)
    if not m:
        return text
    pre, base, mult, exp, post = m.groups()
    return f"{pre}{_spoken_decimal(base)}乘{_spoken_decimal(mult)}的{_spoken_decimal(exp)}次方{post}"


def pre_replace(text: str, replacements: Sequence[tuple[str, str]] = ()) -> str:
    text = scientific_notation(text)
    text = re.sub(r"(?<=\d)\s*-\s*(?=\d)", "减", text).replace("-", "")
    text = re.sub("咯([" + re.escape(PUNCTUATION) + "])", r"喽\1", text)
    for origin, new in replacements:
        text = text.replace(origin, new)
    return text


def special_replace(text: str) -> str:
    text = re.sub(r"(?<=\W)额(?=\W)", "呃", f" {text.replace(chr(92), '')} ")
    text = re.sub(r"[~～]+", "。", text)
    return multiply_asterisks(text, "zh").strip()


def post_replace(text: str) -> str:
    text = remove_brackets(text)
    text = text.replace(" - ", "，").replace("——", "，")
    text = re.sub(r"[,:：;；、]+", "，", text)
    text = re.sub(r"[.…]+", "。", text)
    text = re.sub(r"[_·]+", "", text)
    text = re.sub(r"""['"‘’“”|]+""", "", text)
    for symbol, reading in SYMBOL_READINGS.items():
        text = text.replace(symbol, reading)
    return text


def normalize_chinese(text: str, replacements: Sequence[tuple[str, str]] = ()) -> str:
    text = normalize_zh(pre_replace(text, replacements))
    return post_replace(special_replace(text)).lower()


@lru_cache(maxsize=1)
def _inflect_engine():
    import inflect

    return inflect.engine()


def spell_out_digits(text: str) -> str:
    """Digit runs the grammar left (str.isdigit, as upstream) read by inflect, as upstream does."""
    out, start = [], None
    for i, ch in enumerate(text):
        if ch.isdigit():
            start = i if start is None else start
            continue
        if start is not None:
            out.append(_inflect_engine().number_to_words(text[start:i]))
            start = None
        out.append(ch)
    if start is not None:
        out.append(_inflect_engine().number_to_words(text[start:]))
    return "".join(out)


def normalize_english(text: str) -> str:
    text = normalize_en(text.replace("'", "’"))
    text = multiply_asterisks(remove_brackets(text, "en"), "en")
    text = spell_out_digits(text.replace("—", " ").replace("’", "'"))
    text = re.sub(r"\s+", " ", text)
    text = re.sub(r"[^\w\s.,!?':;]", "", text).lower()
    for mark in ".,!?':;":
        text = re.sub(re.escape(mark) + "+", mark, text)
    return re.sub(r"\s*([.,?!':;])\s*", r"\1 ", text).strip()


def markdown_norm(text: str) -> str:
    return re.sub(r"^(\d+)\. ", r"\1。", text).replace("\\n", "\n")


def join_lines(text: str) -> str:
    """Drop empty lines, end every line with punctuation, join (with spaces for non-Chinese text)."""
    lines = []
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if line[-1] not in LINE_ENDINGS:
            line = line + "。" if contains_chinese(line) else line + ". "
        lines.append(line)
    return "".join(lines) if contains_chinese("".join(lines)) else " ".join(lines)


def keep_word_spaces(text: str) -> str:
    """Keep a space only between two alphanumerics or after . , ! ? ; : before an alphanumeric."""
    text = re.sub(r" +", " ", text)
    out = []
    for i, ch in enumerate(text):
        if ch != " ":
            out.append(ch)
            continue
        prev, nxt = text[i - 1] if i else "", text[i + 1] if i + 1 < len(text) else ""
        if re.match(r"[a-zA-Z0-9]", nxt) and re.match(r"[a-zA-Z0-9.,!?;:]", prev):
            out.append(" ")
    return "".join(out)


def normalize_punctuation(text: str) -> str:
    text = keep_word_spaces(text)
    p = re.escape(PUNCTUATION)
    text = re.sub(rf"([{p}])\1+", r"\1", text)
    text = re.sub(rf"([{p}])(?=[{p}])", "", text)
    return text.replace("#", "").replace("！", "。").replace("!", ".")


def ensure_ending(text: str) -> str:
    if text and text[-1] in "？?":
        return text
    end = "。" if contains_chinese(text) else "."
    return text[:-1] + end if text and text[-1] in PUNCTUATION else text + end


def text_normalize(text: str, replacements: Sequence[tuple[str, str]] = ()) -> str:
    """Normalise one text for the LM. `replacements` are (origin, new) pairs applied to Chinese text
    before TN (upstream reads them from configs/custom_replace.jsonl)."""
    text = remove_emoji(join_lines(markdown_norm(text)))
    text = re.sub(r"(?<=[a-zA-Z])-(?=[a-zA-Z])", " ", text)
    text = normalize_chinese(text, replacements) if contains_chinese(text) else normalize_english(text)
    return ensure_ending(normalize_punctuation(text))


def _is_cjk(ch: str) -> bool:
    try:
        name = unicodedata.name(ch)
    except ValueError:
        return False
    return "CJK" in name or "IDEOGRAPH" in name


def split_into_units(text: str) -> list[str]:
    """Hanzi, English words (with inner ' or -) and single other characters; spaces join the unit before."""
    units: list[str] = []
    word: list[str] = []
    for ch in text:
        if (ch.isalpha() and not _is_cjk(ch)) or (word and ch in "'-"):
            word.append(ch)
            continue
        if word:
            units.append("".join(word))
            word = []
        units.append(ch)
    if word:
        units.append("".join(word))
    merged: list[str] = []
    for u in units:
        if u.isspace() and merged:
            merged[-1] += u
        else:
            merged.append(u)
    return merged


def count_syllables(word: str) -> int:
    """Vowel groups, not counting a final silent e (upstream's fallback when no dictionary is available)."""
    word = word.lower()
    groups = re.findall(r"(?!e$)[aeiouy]+", word)
    if re.fullmatch(r"[^aeiouy]*e", word):
        groups.append("e")
    return max(len(groups), 1)


def count_char(units: Iterable[str]) -> float:
    total = 0.0
    for u in units:
        s = u.strip()
        total += count_syllables(s) * 0.7 if s and s.isalpha() and s.isascii() else 1
    return total


def split_by_len(text: str, min_text_len: int = 30, max_text_len: int = 60) -> list[str]:
    """Chunks ending at punctuation once >= min_text_len, hard-cut when longer than max_text_len units."""
    sentences: list[list[str]] = []
    current: list[str] = []
    for u in split_into_units(text):
        current.append(u)
        if u.strip() in PUNCTUATION_SET and count_char(current) >= min_text_len:
            sentences.append(current)
            current = []
    if current:
        sentences.append(current)
    chunks: list[list[str]] = []
    for sent in sentences:
        while count_char(sent) > max_text_len:
            cut = max_text_len + 1 if sent[max_text_len].strip() in PUNCTUATION_SET else max_text_len
            chunks.append(sent[:cut])
            sent = sent[cut:]
        if sent:
            chunks.append(sent)
    return ["".join(c) for c in chunks]

"""English text normalisation: numbers, years, dates, times, money, ranges, e-mails, abbreviations.

Our own stand-in for WeTextProcessing's English normaliser, written to produce its style of reading
("two hundred and twenty one", "the fifth of january, twenty twenty four", "three thirty pm").
"""

from __future__ import annotations

import re

_ONES_TEXT = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
              "sixteen seventeen eighteen nineteen")
_TENS_TEXT = "_ _ twenty thirty forty fifty sixty seventy eighty ninety"
_MONTHS_TEXT = "january february march april may june july august september october november december"
ONES = tuple(_ONES_TEXT.split())
TENS = tuple(_TENS_TEXT.split())
SCALES = ["", "thousand", "million", "billion", "trillion"]
ORDINAL_IRREGULAR = {"one": "first", "two": "second", "three": "third", "five": "fifth", "eight": "eighth",
                     "nine": "ninth", "twelve": "twelfth"}
MONTHS = tuple(_MONTHS_TEXT.split())
MONTH_ABBR = {m[:3]: m for m in MONTHS} | {"sept": "september"}
ABBREVIATIONS = {"Dr.": "doctor", "Mr.": "mister", "Mrs.": "missus", "Ms.": "miss", "Prof.": "professor",
                 "Jr.": "junior", "Sr.": "senior", "vs.": "versus", "etc.": "et cetera", "Co.": "company"}
CURRENCY = {"$": ("dollar", "dollars"), "£": ("pound", "pounds"), "€": ("euro", "euros")}
YEAR_CUES = ("year", "in", "since", "by", "of", "until", "from")


def _below_thousand(n: int) -> list[str]:
    words: list[str] = []
    hundreds, rest = divmod(n, 100)
    if hundreds:
        words += [ONES[hundreds], "hundred"]
        if rest:
            words.append("and")
    if rest >= 20:
        words.append(TENS[rest // 10])
        if rest % 10:
            words.append(ONES[rest % 10])
    elif rest or not hundreds:
        words.append(ONES[rest])
    return words


def cardinal(n: int) -> str:
    """British-style cardinal: 221 -> 'two hundred and twenty one' (no hyphens)."""
    if n == 0:
        return "zero"
    groups: list[str] = []
    scale = 0
    while n:
        n, chunk = divmod(n, 1000)
        if chunk:
            words = _below_thousand(chunk)
            if scale == 0 and groups == [] and n and chunk < 100:
                words = ["and", *words]
            groups.insert(0, " ".join(words + ([SCALES[scale]] if scale else [])))
        scale += 1
    return " ".join(groups)


def ordinal(n: int) -> str:
    words = cardinal(n).split()
    last = words[-1]
    if last in ORDINAL_IRREGULAR:
        words[-1] = ORDINAL_IRREGULAR[last]
    elif last.endswith("y"):
        words[-1] = last[:-1] + "ieth"
    else:
        words[-1] = last + "th"
    return " ".join(words)


def year(n: int) -> str:
    """1999 -> nineteen ninety nine, 2024 -> twenty twenty four, 2005 -> two thousand five."""
    if 2000 <= n <= 2009:
        return cardinal(n).replace(" and", "")
    high, low = divmod(n, 100)
    if low == 0:
        return cardinal(high) + " hundred"
    return cardinal(high) + " " + ("oh " + ONES[low] if low < 10 else cardinal(low))


def digits_after_point(s: str) -> str:
    return " ".join(ONES[int(c)] for c in s)


def decimal(s: str) -> str:
    whole, _, frac = s.replace(",", "").partition(".")
    text = cardinal(int(whole)) if whole else "zero"
    return f"{text} point {digits_after_point(frac)}" if frac else text


def _money(m: re.Match[str]) -> str:
    one, many = CURRENCY[m.group(1)]
    whole, _, frac = m.group(2).replace(",", "").partition(".")
    frac = frac.rstrip("0")
    amount = decimal(f"{whole}.{frac}" if frac else whole)
    return f"{amount} {one if amount == 'one' else many}"


def _date(m: re.Match[str]) -> str:
    month = MONTH_ABBR[m.group(1).lower()]
    text = f"the {ordinal(int(m.group(2)))} of {month}"
    return text + (f", {year(int(m.group(3)))}" if m.group(3) else "")


def _time(m: re.Match[str]) -> str:
    hour, minute = int(m.group(1)), int(m.group(2))
    text = cardinal(hour)
    if minute:
        text += " " + ("oh " + ONES[minute] if minute < 10 else cardinal(minute))
    elif not m.group(3):
        text += " o'clock"
    if m.group(3):
        text += " " + m.group(3).replace(".", "").lower()
    return text


def _number(m: re.Match[str]) -> str:
    value = m.group(0).replace(",", "")
    previous_word = (m.string[: m.start()].split() or [""])[-1].lower()
    if "." in value:
        text = decimal(value)
    elif len(value) == 4 and 1000 <= int(value) <= 2099 and previous_word in YEAR_CUES:
        text = year(int(value))
    else:
        text = cardinal(int(value))
    return text + " " if m.string[m.end(): m.end() + 1].isalpha() else text  # 221B -> ... one B


_MONTH_RE = r"(jan|feb|mar|apr|may|jun|jul|aug|sept|sep|oct|nov|dec)[a-z]*\.?"
RULES: list[tuple[re.Pattern[str], object]] = [
    (re.compile(r"([\w.+-]+)@([\w-]+(?:\.[\w-]+)+)"),
     lambda m: f"{m.group(1)} at {m.group(2).replace('.', ' dot ')}"),
    (re.compile(r"([$£€])\s?(\d[\d,]*(?:\.\d+)?)"), _money),
    (re.compile(_MONTH_RE + r"\s+(\d{1,2})(?:st|nd|rd|th)?\b(?:,?\s+(\d{4})\b)?", re.I), _date),
    (re.compile(r"\b(\d{1,2}):(\d{2})\s*(a\.m\.|p\.m\.|am|pm)?(?![\w:])", re.I), _time),
    (re.compile(r"\b(\d+)(st|nd|rd|th)\b", re.I), lambda m: ordinal(int(m.group(1)))),
    (re.compile(r"(\d+(?:\.\d+)?)\s*%"), lambda m: f"{decimal(m.group(1))} percent"),
    (re.compile(r"\b(\d+)\s*-\s*(\d+)\b"), lambda m: f"{cardinal(int(m.group(1)))} to {cardinal(int(m.group(2)))}"),
    (re.compile(r"(\d+(?:\.\d+)?)\s*[*x×]\s*(\d+(?:\.\d+)?)"),
     lambda m: f"{decimal(m.group(1))} times {decimal(m.group(2))}"),
]


def normalize_en(text: str) -> str:
    """Spell out numbers and symbols of English text; letters and punctuation are left as they are."""
    for abbr, full in ABBREVIATIONS.items():
        text = re.sub(rf"(?<![\w.]){re.escape(abbr)}(?=\s)", full, text)
    for pattern, repl in RULES:
        text = pattern.sub(repl, text)  # type: ignore[arg-type]
    text = re.sub(r"\d+(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?", _number, text)
    return text.replace("&", " and ")

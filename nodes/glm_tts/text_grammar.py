"""WeTextProcessing 1.0.3's text normalisers, run from its compiled grammars with kaldifst (no pynini).

A normaliser is two transducers over UTF-8 bytes: the tagger turns text into tokens
(`measure { value: "两个" } char { value: "的" }`), the tokens' fields are put into the order the
verbaliser expects, and the verbaliser turns the tokens back into text. Each step keeps the single best
path, as WeTextProcessing does. Upstream GLM-TTS builds its Chinese normaliser with erhua and interjections
kept, while the shipped Chinese verbaliser drops them; those tokens are spoken here as the kept form.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

from .grammars import grammar_path

# The field order each verbaliser reads (WeTextProcessing 1.0.3's token parser); a token named here
# keeps exactly these fields, in this order, unless it carries preserve_order: "true".
ZH_FIELD_ORDER = {
    "date": ("year", "month", "day"),
    "fraction": ("denominator", "numerator"),
    "measure": ("denominator", "numerator", "value"),
    "money": ("value", "currency"),
    "time": ("noon", "hour", "minute", "second"),
}
EN_FIELD_ORDER = {
    "date": ("preserve_order", "text", "day", "month", "year"),
    "money": ("integer_part", "fractional_part", "quantity", "currency_maj"),
}
HEAD = re.compile(r"([A-Za-z_]*) ?\{ ?")
FIELD = re.compile(r'([A-Za-z_]*):? ?"((?:[^"\\]|\\.)*)"')


class GrammarError(ValueError):
    """The grammar found no reading for a text (it has one for every valid input)."""


def _kaldifst():
    try:
        import kaldifst
    except ImportError as exc:  # pragma: no cover - kaldifst is in requirements.txt
        raise ImportError("GLM-TTS text normaliser needs the kaldifst package (requirements.txt)") from exc
    return kaldifst


class Transducer:
    """One compiled grammar: the output of its best path for an input string."""

    def __init__(self, name: str) -> None:
        kaldifst = _kaldifst()
        self.fst = kaldifst.StdVectorFst.read(str(grammar_path(name)))
        # Input-label order lets composition find the arcs matching each input byte by binary search
        # instead of scanning every arc of a state (the shipped files are not sorted).
        kaldifst.arcsort(self.fst, "ilabel")

    def __call__(self, text: str) -> str:
        if not text:
            return ""
        kaldifst = _kaldifst()
        data = text.encode("utf-8")
        lines = [f"{i} {i + 1} {byte}" for i, byte in enumerate(data)]
        lines.append(str(len(data)))
        lattice = kaldifst.compose(kaldifst.compile("\n".join(lines), acceptor=True), self.fst)
        if lattice.start == -1:
            raise GrammarError(f"no reading for {text!r}")
        ok, _, olabels, _ = kaldifst.get_linear_symbol_sequence(kaldifst.shortest_path(lattice, 1))
        if not ok:
            raise GrammarError(f"no reading for {text!r}")
        return bytes(olabels).decode("utf-8")


@dataclass
class Token:
    name: str
    fields: dict[str, str] = field(default_factory=dict)

    def render(self, orders: dict[str, tuple[str, ...]]) -> str:
        keys: tuple[str, ...] | list[str] = list(self.fields)
        if self.name in orders and self.fields.get("preserve_order") != "true":
            keys = orders[self.name]
        body = "".join(f' {k}: "{self.fields[k]}"' for k in keys if k in self.fields)
        return f"{self.name} {{{body} }}"


def parse_tokens(tagged: str) -> list[Token]:
    """Tokens of the tagger's output: `name { key: "value" ... }`, any number of spaces between parts."""
    tokens: list[Token] = []
    pos, end = 0, len(tagged)
    while True:
        pos = _skip_spaces(tagged, pos)
        if pos >= end:
            return tokens
        m = HEAD.match(tagged, pos)
        if not m:
            raise GrammarError(f"unreadable tagger output at {pos}: {tagged[pos:pos + 40]!r}")
        token, pos = Token(m.group(1)), m.end()
        while True:
            pos = _skip_spaces(tagged, pos)
            if pos >= end or tagged[pos] == "}":
                pos += 1
                break
            f = FIELD.match(tagged, pos)
            if not f:
                raise GrammarError(f"unreadable tagger output at {pos}: {tagged[pos:pos + 40]!r}")
            token.fields[f.group(1)] = f.group(2)
            pos = f.end()
        tokens.append(token)


def _skip_spaces(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] == " ":
        pos += 1
    return pos


class Normalizer:
    """tag -> order the fields -> verbalise, with some tokens spoken directly (see `spoken`)."""

    def __init__(self, prefix: str, orders: dict[str, tuple[str, ...]]) -> None:
        self.tagger = Transducer(f"tn/{prefix}_tagger.fst")
        self.verbalizer = Transducer(f"tn/{prefix}_verbalizer.fst")
        self.orders = orders

    def spoken(self, token: Token) -> str | None:
        """The text of a token the shipped verbaliser reads differently from upstream's; None otherwise."""
        return None

    def tokens(self, text: str) -> list[Token]:
        return parse_tokens(self.tagger(text))

    def normalize(self, text: str) -> str:
        out: list[str] = []
        pending: list[str] = []
        for token in self.tokens(text):
            direct = self.spoken(token)
            if direct is None:
                pending.append(token.render(self.orders))
                continue
            out.append(self.verbalizer(" ".join(pending)))
            out.append(direct)
            pending = []
        out.append(self.verbalizer(" ".join(pending)))
        return "".join(out)


class ChineseNormalizer(Normalizer):
    """zh TN as upstream GLM-TTS configures it: erhua and interjections kept, full width folded."""

    def __init__(self) -> None:
        super().__init__("zh_tn", ZH_FIELD_ORDER)
        path = grammar_path("tn/chinese/data/default/blacklist.tsv")
        self.interjections = frozenset(w.strip() for w in path.read_text(encoding="utf-8").splitlines() if w.strip())

    def spoken(self, token: Token) -> str | None:
        if token.name == "whitelist" and "erhua" in token.fields:
            return token.fields["erhua"]
        if token.name == "char" and token.fields.get("value") in self.interjections:
            return token.fields["value"]
        return None


class EnglishNormalizer(Normalizer):
    def __init__(self) -> None:
        super().__init__("en_tn", EN_FIELD_ORDER)


@lru_cache(maxsize=1)
def chinese() -> ChineseNormalizer:
    return ChineseNormalizer()


@lru_cache(maxsize=1)
def english() -> EnglishNormalizer:
    return EnglishNormalizer()


def normalize_zh(text: str) -> str:
    return chinese().normalize(text)


def normalize_en(text: str) -> str:
    return english().normalize(text)

"""Unicode tables the tokenizer needs, as llama.cpp's unicode.cpp defines them.

- Per-codepoint category flags (\\p{L}, \\p{N}, ... and White_Space), computed lazily from
  :mod:`unicodedata` and cached per codepoint.
- The "collapsed" text llama.cpp matches its pre-tokenizer regexes against: ASCII stays as it
  is, a non-ASCII codepoint becomes one placeholder character per category.
- GPT-2's byte <-> unicode mapping used by byte-level BPE vocabularies.
"""

from __future__ import annotations

import unicodedata
from functools import cache

# category flags (unicode.h: unicode_cpt_flags)
UNDEFINED = 0x0001
NUMBER = 0x0002
LETTER = 0x0004
SEPARATOR = 0x0008
ACCENT_MARK = 0x0010
PUNCTUATION = 0x0020
SYMBOL = 0x0040
CONTROL = 0x0080
WHITESPACE = 0x0100

_CATEGORY_FLAG = {
    "Cn": UNDEFINED,
    "Cc": CONTROL, "Cf": CONTROL, "Co": CONTROL, "Cs": CONTROL,
    "Ll": LETTER, "Lm": LETTER, "Lo": LETTER, "Lt": LETTER, "Lu": LETTER,
    "Mc": ACCENT_MARK, "Me": ACCENT_MARK, "Mn": ACCENT_MARK,
    "Nd": NUMBER, "Nl": NUMBER, "No": NUMBER,
    "Pc": PUNCTUATION, "Pd": PUNCTUATION, "Pe": PUNCTUATION, "Pf": PUNCTUATION,
    "Pi": PUNCTUATION, "Po": PUNCTUATION, "Ps": PUNCTUATION,
    "Sc": SYMBOL, "Sk": SYMBOL, "Sm": SYMBOL, "So": SYMBOL,
    "Zl": SEPARATOR, "Zp": SEPARATOR, "Zs": SEPARATOR,
}  # fmt: skip

# White_Space property (PropList.txt). Not str.isspace(): that also says yes to U+001C..U+001F.
WHITESPACE_CODEPOINTS = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B),
     0x2028, 0x2029, 0x202F, 0x205F, 0x3000]
)  # fmt: skip

# collapsed placeholders (unicode.cpp: k_ucat_cpt); \x0b stands for non-ASCII whitespace
COLLAPSED_WHITESPACE = "\x0b"
COLLAPSED_OTHER = "\xd0"
COLLAPSED = {
    NUMBER: "\xd1",
    LETTER: "\xd2",
    PUNCTUATION: "\xd3",
    ACCENT_MARK: "\xd4",
    SYMBOL: "\xd5",
}
# ASCII members of each class, for building collapsed regex classes (k_ucat_map)
ASCII_CLASS = {
    NUMBER: "0-9",
    LETTER: "A-Za-z",
    PUNCTUATION: r"!-#%-*,-/:-;?-@\[-\]_\{\}",
    ACCENT_MARK: "",
    SYMBOL: r"\$\+<->\^`\|",
}


@cache
def cpt_flags(cpt: int) -> int:
    """Category flags of one codepoint (plus WHITESPACE), as llama.cpp's table has them."""
    if cpt > 0x10FFFF:
        return UNDEFINED
    flags = _CATEGORY_FLAG[unicodedata.category(chr(cpt))]
    if cpt in WHITESPACE_CODEPOINTS:
        flags |= WHITESPACE
    return flags


class _CollapseTable(dict):
    """str.translate table: codepoint -> collapsed placeholder, filled on first use."""

    def __missing__(self, cpt: int) -> str:
        if cpt < 128:
            value = chr(cpt)
        else:
            flags = cpt_flags(cpt)
            if flags & WHITESPACE:
                value = COLLAPSED_WHITESPACE
            else:
                value = COLLAPSED.get(flags & 0xFF, COLLAPSED_OTHER)
        self[cpt] = value
        return value


class _WhitespaceTable(dict):
    """str.translate table: non-ASCII whitespace -> \\x0b, everything else unchanged."""

    def __missing__(self, cpt: int) -> str:
        value = COLLAPSED_WHITESPACE if cpt >= 128 and cpt in WHITESPACE_CODEPOINTS else chr(cpt)
        self[cpt] = value
        return value


_COLLAPSE = _CollapseTable()
_WS = _WhitespaceTable()


def collapse(text: str) -> str:
    """One character per codepoint: ASCII unchanged, others replaced by their category's
    placeholder (llama.cpp's ``text_collapsed``)."""
    return text if text.isascii() else text.translate(_COLLAPSE)


def collapse_whitespace(text: str) -> str:
    """Non-ASCII whitespace replaced by \\x0b (what llama.cpp feeds std::wregex)."""
    return text if text.isascii() else text.translate(_WS)


def _bytes_to_unicode() -> list[str]:
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = [""] * 256
    for b in keep:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


BYTE_TO_UNICODE: list[str] = _bytes_to_unicode()
UNICODE_TO_BYTE: dict[str, int] = {ch: b for b, ch in enumerate(BYTE_TO_UNICODE)}
# str.translate table taking a latin-1 decoded byte string to its GPT-2 characters
BYTE_ENCODE_TABLE = {b: ch for b, ch in enumerate(BYTE_TO_UNICODE)}


def byte_encode(text: str) -> str:
    """GPT-2 byte-level encoding: UTF-8 bytes of ``text``, each shown as one character."""
    return text.encode("utf-8", "surrogatepass").decode("latin-1").translate(BYTE_ENCODE_TABLE)

"""trueno.llm.pretokenize: llama.cpp's pre-tokenizer regexes on Python's ``re`` through the
collapsed text, checked on hand-worked splits and against the ``regex`` package's native
\\p{...} classes where that package happens to be installed."""

from __future__ import annotations

import unicodedata
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trueno.errors import UnsupportedError
from trueno.llm import pretokenize as pt
from trueno.llm import unicode_data as ud


def split(name: str, text: str) -> list[str]:
    return pt.split(text, pt.pre_tokenizer(name).regexes)


@pytest.mark.parametrize(
    "name, text, pieces",
    [
        ("gpt-2", "Hello world's  123!!", ["Hello", " world", "'s", " ", " 123", "!!"]),
        ("gpt-2", "naïve café", ["naïve", " café"]),
        ("gpt-2", "a\u00a0b", ["a", "\u00a0", "b"]),  # NBSP is whitespace, not " "
        ("gpt-2", "a\u3000\u3000b", ["a", "\u3000", "\u3000", "b"]),
        ("gpt-2", "!\x1c", ["!\x1c"]),  # U+001C is not White_Space (str.isspace says it is)
        ("gpt-2", "!\u3000", ["!", "\u3000"]),
        ("llama-bpe", "1234567", ["123", "456", "7"]),
        ("llama-bpe", "Hello\n\n world", ["Hello", "\n\n", " world"]),
        ("llama-bpe", "I'M here", ["I", "'M", " here"]),
        ("qwen2", "x 2024", ["x", " ", "2", "0", "2", "4"]),
        ("qwen2", "cafe\u0301 x", ["cafe", "\u0301", " x"]),  # a combining mark splits off
        ("qwen35", "cafe\u0301 x", ["cafe\u0301", " x"]),  # ... but stays in qwen3.5's words
        ("granite-docling", "Hello world's  12", ["Hello", " world", "'s", " ", " 12"]),
        ("smollm", "abc123 de", ["abc", "1", "2", "3", " de"]),
        ("deepseek-coder", "ab 12\ncd", ["ab", " ", "1", "2", "\n", "cd"]),
        ("deepseek-llm", "ab, 中文\n", ["ab", ",", " ", "中文", "\n"]),
        ("default", "x, 12345", ["x", ",", " ", "123", "45"]),
        # llama.cpp quirk kept: the ASCII members it gives \p{S} lack "~"
        ("deepseek-v3", "a ~-", ["a", " ", "~", "-"]),
    ],
)
def test_hand_worked_splits(name, text, pieces):
    assert split(name, text) == pieces


def test_regex_translation():
    pattern, collapsed = pt.compile_regex(r" ?\p{L}+|[^\s\p{N}]$")
    assert collapsed
    assert pattern.pattern == " ?[\xd2A-Za-z]+|[^\\s\xd10-9]\\Z"
    pattern, collapsed = pt.compile_regex("[\r\n]")
    assert not collapsed and pattern.pattern == "[\r\n]"


def test_collapse_maps_categories():
    assert ud.collapse("aZ9 !") == "aZ9 !"
    assert ud.collapse("é٣、€\u0301\u00a0\u200b\U000e0001") == "\xd2\xd1\xd3\xd5\xd4\x0b\xd0\xd0"
    assert ud.collapse_whitespace("a\u3000\u00e9") == "a\x0b\u00e9"
    assert ud.cpt_flags(0x20) == ud.SEPARATOR | ud.WHITESPACE
    assert ud.cpt_flags(0x1C) == ud.CONTROL
    assert ud.cpt_flags(0x0378) == ud.UNDEFINED


def test_byte_alphabet_is_a_bijection():
    assert len(set(ud.BYTE_TO_UNICODE)) == 256
    assert ud.byte_encode(" é") == "\u0120\u00c3\u00a9"
    assert all(ud.UNICODE_TO_BYTE[ud.BYTE_TO_UNICODE[b]] == b for b in range(256))


def test_unknown_pre_tokenizer():
    with pytest.raises(UnsupportedError, match="unknown pre-tokenizer type 'bogus'"):
        pt.pre_tokenizer("bogus")
    assert pt.pre_tokenizer(None).name == "default"
    assert pt.pre_tokenizer("llama-bpe").ignore_merges and pt.pre_tokenizer("llama3").add_bos
    assert not pt.pre_tokenizer("smollm").clean_spaces


TRICKY = list(" \t\n\r\x0b\x0c\x85\u00a0\u3000\u2009'sStTdDmMlLrReEvV019٣.,!?-_$+<=>^`|~中é\u0301")
TEXT = st.text(
    st.one_of(st.sampled_from(TRICKY), st.characters(blacklist_categories=("Cs",))), max_size=40
)


@settings(max_examples=100, deadline=None)
@given(text=TEXT, name=st.sampled_from(sorted(pt.SUPPORTED)))
def test_split_partitions_the_text(text, name):
    pieces = split(name, text)
    assert "".join(pieces) == text
    assert all(pieces)


# ---- against the `regex` package (an optional, independent \p{...} implementation) ----------


@pytest.fixture(scope="module")
def native():
    mod = pytest.importorskip("regex")

    def run(text: str, exprs: tuple[str, ...]) -> list[str]:
        bounds = [0, len(text)]
        for expr in exprs:
            pattern = mod.compile(expr.replace(r"\s+$", r"\s+\Z"), mod.V0)
            # like llama.cpp's std::wregex path, regexes without \p{..} see non-ASCII
            # whitespace as \x0b
            view = (
                text
                if "\\p{" in expr
                else "".join(
                    "\x0b" if ord(c) > 127 and ord(c) in ud.WHITESPACE_CODEPOINTS else c
                    for c in text
                )
            )
            new = [0]
            for start, end in pairwise(bounds):
                for m in pattern.finditer(view, start, end):
                    s, e = m.span()
                    new += [x for x in (s, e) if x > new[-1]]
                if end > new[-1]:
                    new.append(end)
            bounds = new
        return [text[s:e] for s, e in pairwise(bounds)]

    def agrees(ch: str) -> bool:  # same category and whitespace verdict in both Unicode tables
        cat = unicodedata.category(ch)
        if cat == "Cn" or "\x1c" <= ch <= "\x1f":  # regex's \s also takes U+001C..U+001F
            return False
        return all(bool(mod.match(rf"\p{{{c}}}", ch)) == cat.startswith(c) for c in "LNPSM") and \
            bool(mod.match(r"\s", ch)) == (ord(ch) in ud.WHITESPACE_CODEPOINTS)  # fmt: skip

    run.agrees = agrees
    return run


NATIVE_TEXT = st.text(
    st.one_of(st.sampled_from(TRICKY), st.characters(blacklist_categories=("Cs", "Cn"))),
    max_size=40,
)


@settings(max_examples=100, deadline=None)
@given(text=NATIVE_TEXT, name=st.sampled_from(
    ["default", "gpt-2", "llama-bpe", "qwen2", "starcoder", "deepseek-coder", "deepseek-llm",
     "deepseek-v3", "falcon", "tekken", "gpt-4o", "viking"]))  # fmt: skip
def test_split_matches_native_unicode_regex(native, text, name):
    text = "".join(ch for ch in text if native.agrees(ch))
    if name == "deepseek-v3":  # llama.cpp's ASCII part of \p{S} lacks "~" (see test above)
        text = text.replace("~", "")
    exprs = pt.pre_tokenizer(name).regexes
    assert split(name, text) == native(text, exprs)


@pytest.mark.parametrize(
    "name, regexes, clean_spaces",
    [
        ("qwen2", pt.QWEN2, False),  # qwen2 and qwen3 files (Qwen3-Embedding's hash)
        ("llama-bpe", pt.LLAMA3, True),
        ("smollm", r"\p{N}", False),  # smollm 1/2: starcoder's digit split first
        ("olmo", pt.GPT2, True),
        ("dbrx", pt.LLAMA3, True),
        ("refact", r"\p{N}", True),
        ("granite-docling", pt.GPT2, False),
        ("trillion", pt.GPT2, False),
        ("qwen35", pt.QWEN35, False),
    ],
)
def test_family_names_take_llama_cpps_regex_sets(name, regexes, clean_spaces):
    p = pt.pre_tokenizer(name)
    assert p.regexes[0] == regexes and p.clean_spaces == clean_spaces

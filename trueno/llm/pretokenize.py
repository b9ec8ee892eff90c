"""Pre-tokenizers of byte-level BPE vocabularies: split text into words before BPE merges.

Each ``tokenizer.ggml.pre`` name maps to llama.cpp's list of regexes (llama-vocab.cpp), applied
in turn: every regex re-splits each piece the previous one produced, and text between matches
is kept as a piece of its own. Python's ``re`` has no ``\\p{L}``; like llama.cpp's
``unicode_regex_split`` we match against a "collapsed" copy of the text (one placeholder
character per Unicode category, see :mod:`trueno.llm.unicode_data`) and rewrite ``\\p{X}`` as a
class of that placeholder plus its ASCII members. Regexes without ``\\p{...}`` run on the text
itself with non-ASCII whitespace folded to ``\\x0b``, as llama.cpp's std::wregex path does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from itertools import pairwise

from trueno.errors import UnsupportedError
from trueno.llm import unicode_data as ud

_CATEGORY = {
    "N": ud.NUMBER, "L": ud.LETTER, "P": ud.PUNCTUATION, "M": ud.ACCENT_MARK, "S": ud.SYMBOL,
    "Lu": ud.LETTER, "Ll": ud.LETTER, "Lt": ud.LETTER, "Lm": ud.LETTER, "Lo": ud.LETTER,
}  # fmt: skip

# llama.cpp's regexes, verbatim (C escapes resolved)
GPT2 = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"
_CONTRACTIONS = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])"
LLAMA3 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN2 = (
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN35 = (  # qwen2's, with combining marks (\p{M}) kept inside words
    _CONTRACTIONS + r"|[^\r\n\p{L}\p{N}]?[\p{L}\p{M}]+|\p{N}| ?[^\s\p{L}\p{M}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_CJK = "[\u4e00-\u9fa5\u0800-\u4e00\uac00-\ud7ff]+"
_DEEPSEEK_LETTERS = (
    "\\s?[A-Za-z\u00b5\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u01ba\u01bc-\u01bf\u01c4-\u0293"
    "\u0295-\u02af\u0370-\u0373\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c"
    "\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481\u048a-\u052f\u0531-\u0556\u10a0-\u10c5"
    "\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf\u1d00-\u1d2b\u1d6b-\u1d77"
    "\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d\u1f50-\u1f57\u1f59"
    "\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-\u1fcc"
    "\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107"
    "\u210a-\u2113\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139"
    "\u213c-\u213f\u2145-\u2149\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee"
    "\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e"
    "\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a\uff41-\uff5a"
    "\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-\U00010cb2"
    "\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
)
_PORO = " ?[^(\\s|.,!?\u2026\u3002\uff0c\u3001\u0964\u06d4\u060c)]+"
_UPPER_LOWER = (
    r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+"
    r"|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*"
)

_REGEXES: dict[str, tuple[str, ...]] = {
    "default": (r"[\p{P}\$\+<=>\^~\|]+", GPT2, r"\p{N}+", "[0-9][0-9][0-9]"),
    "gpt2": (GPT2,),
    "llama3": (LLAMA3,),
    "qwen2": (QWEN2,),
    "qwen35": (QWEN35,),
    "starcoder": (r"\p{N}", GPT2),
    "falcon": (r"[\p{P}\$\+<=>\^~\|`]+", GPT2, "[0-9][0-9][0-9]"),
    "deepseek-llm": (
        "[\r\n]", _DEEPSEEK_LETTERS, "\\s?[!-/:-~\uff01-\uff0f\uff1a-\uff5e\u2018-\u201f"
        "\u3000-\u3002]+", r"\s+$", _CJK, r"\p{N}+",
    ),
    "deepseek-coder": ("[\r\n]", r"\s?\p{L}+", r"\s?\p{P}+", _CJK, r"\p{N}"),
    "deepseek-v3": (
        r"\p{N}{1,3}", "[\u4e00-\u9fa5\u3040-\u309f\u30a0-\u30ff]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?"
        "[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ),
    "poro": (_PORO,),
    "viking": (_PORO, r"\p{N}"),
    "tekken": (
        _UPPER_LOWER + r"|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
    "gpt-4o": (
        r"[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))*((?=[\p{L}])([^A-Z]))+" + _CONTRACTIONS
        + r"?|[^\r\n\p{L}\p{N}]?((?=[\p{L}])([^a-z]))+((?=[\p{L}])([^A-Z]))*" + _CONTRACTIONS
        + r"?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+",
    ),
}  # fmt: skip


@dataclass(frozen=True)
class PreTokenizer:
    """One ``tokenizer.ggml.pre`` type: its regexes and the vocab flags llama.cpp ties to it."""

    name: str
    regexes: tuple[str, ...]
    ignore_merges: bool = False  # a word that is already a token skips the merges
    clean_spaces: bool = True  # detokenizer removes " ," " ." ... (clean_up_tokenization_spaces)
    add_bos: bool = False  # default of tokenizer.ggml.add_bos_token
    has_bos: bool = True  # False: the vocab has no BOS token (chatglm)


def _pre(regexes: str, **flags) -> dict:
    return {"regexes": regexes, **flags}


# tokenizer.ggml.pre -> (regex set, flags), as llama_vocab::impl::load assigns them
_NAMES: dict[str, dict] = {
    "default": _pre("default"),
    **{n: _pre("llama3", ignore_merges=True, add_bos=True) for n in (
        "llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0",
        "lfm2")},
    "dbrx": _pre("llama3"),
    "smaug-bpe": _pre("llama3"),
    "deepseek-llm": _pre("deepseek-llm", clean_spaces=False),
    "deepseek-coder": _pre("deepseek-coder", clean_spaces=False),
    "deepseek-v3": _pre("deepseek-v3", clean_spaces=False),
    "falcon": _pre("falcon"),
    "mpt": _pre("gpt2"),
    "olmo": _pre("gpt2"),
    "jais": _pre("gpt2"),
    "exaone4": _pre("gpt2"),
    **{n: _pre("gpt2") for n in (
        "gpt-2", "phi-2", "jina-es", "jina-de", "gigachat", "jina-v2-es", "jina-v2-de",
        "a.x-4.0", "mellum", "modern-bert", "jina-v1-en", "jina-v2-code", "roberta-bpe")},
    "starcoder": _pre("starcoder"),
    "refact": _pre("starcoder"),
    "codeshell": _pre("starcoder"),
    "exaone": _pre("starcoder"),
    "minerva-7b": _pre("starcoder"),
    "command-r": _pre("starcoder", clean_spaces=False),
    "smollm": _pre("starcoder", clean_spaces=False),
    **{n: _pre("qwen2", clean_spaces=False) for n in (
        "qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2")},
    "qwen35": _pre("qwen35", clean_spaces=False),
    **{n: _pre("gpt2", clean_spaces=False) for n in ("granite-docling", "trillion")},
    "stablelm2": _pre("qwen2"),
    "megrez": _pre("qwen2"),
    "poro-chat": _pre("poro", clean_spaces=False),
    "bloom": _pre("poro"),
    "gpt3-finnish": _pre("poro"),
    "viking": _pre("viking", clean_spaces=False),
    "glm4": _pre("llama3", has_bos=False),
    "chatglm-bpe": _pre("llama3", has_bos=False),
    "tekken": _pre("tekken", clean_spaces=False, ignore_merges=True, add_bos=True),
    **{n: _pre("gpt-4o", clean_spaces=False) for n in ("gpt-4o", "llama4")},
}  # fmt: skip

SUPPORTED = tuple(sorted(_NAMES))


def pre_tokenizer(name: str | None) -> PreTokenizer:
    """The pre-tokenizer llama.cpp uses for ``tokenizer.ggml.pre`` = ``name`` (None: default)."""
    key = name or "default"
    spec = _NAMES.get(key)
    if spec is None:
        raise UnsupportedError(
            f"unknown pre-tokenizer type {key!r}; supported: {', '.join(SUPPORTED)}"
        )
    return PreTokenizer(name=key, regexes=_REGEXES[spec["regexes"]],
                        **{k: v for k, v in spec.items() if k != "regexes"})  # fmt: skip


@cache
def compile_regex(expr: str) -> tuple[re.Pattern, bool]:
    """(Python pattern, whether it runs on the collapsed text) for one llama.cpp regex."""
    collapsed = "\\p{" in expr
    out = []
    inside = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "\\" and i + 1 < len(expr):
            if expr[i + 1] == "p" and expr[i + 2 : i + 3] == "{":
                end = expr.index("}", i)
                flag = _CATEGORY[expr[i + 3 : end]]
                members = ud.COLLAPSED[flag] + ud.ASCII_CLASS[flag]
                out.append(members if inside else f"[{members}]")
                i = end + 1
                continue
            out.append(expr[i : i + 2])
            i += 2
            continue
        if c == "[" and not inside:
            inside = True
        elif c == "]" and inside:
            inside = False
        elif c == "$" and not inside:
            c = r"\Z"  # ECMAScript $ is end of input; Python's also matches before a final \n
        out.append(c)
        i += 1
    return re.compile("".join(out), re.ASCII), collapsed


def split(text: str, regexes: tuple[str, ...]) -> list[str]:
    """Split ``text`` into words with llama.cpp's ``unicode_regex_split`` semantics."""
    if not text:
        return []
    views: dict[bool, str] = {}
    bounds = [0, len(text)]  # piece i is text[bounds[i]:bounds[i + 1]]
    for expr in regexes:
        pattern, collapsed = compile_regex(expr)
        view = views.get(collapsed)
        if view is None:
            view = ud.collapse(text) if collapsed else ud.collapse_whitespace(text)
            views[collapsed] = view
        finditer = pattern.finditer
        new = [0]
        append = new.append
        for start, end in pairwise(bounds):
            for m in finditer(view, start, end):
                s, e = m.span()
                if s > new[-1]:
                    append(s)
                if e > new[-1]:
                    append(e)
            if end > new[-1]:
                append(end)
        bounds = new
    return [text[s:e] for s, e in pairwise(bounds)]

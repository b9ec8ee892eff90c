"""The LLM tokenizer, built from GGUF metadata alone, matching llama.cpp's ids exactly.

Two vocabulary types, as llama.cpp's llama-vocab.cpp implements them:

- ``llama``: SentencePiece-style. Spaces become U+2581, adjacent symbols merge greedily by the
  merged piece's score, characters outside the vocabulary fall back to ``<0xNN>`` byte tokens.
- ``gpt2``: byte-level BPE. A pre-tokenizer regex (``tokenizer.ggml.pre``) splits the text into
  words, each word's UTF-8 bytes are spelled with GPT-2's byte alphabet and merged by rank.

Control, user-defined and unknown tokens are cut out of the text first
(``tokenizer_st_partition``): user-defined ones always, control ones with ``parse_special``.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from trueno import trace
from trueno.errors import ModelError, TokenizerError, UnsupportedError
from trueno.gguf.constants import Keys
from trueno.llm import pretokenize
from trueno.llm.detokenize import StreamDecoder, clean_up_spaces
from trueno.llm.special_tokens import (
    BYTE,
    CONTROL,
    NORMAL,
    TYPE_ATTR,
    UNKNOWN,
    USER_DEFINED,
    find_special_tokens,
)
from trueno.llm.unicode_data import UNICODE_TO_BYTE, byte_encode

if TYPE_CHECKING:
    from trueno.gguf.reader import GGUFFile

SPACE = "\u2581"  # SentencePiece's escaped space


def _as_list(seq) -> list:
    return seq.tolist() if hasattr(seq, "tolist") else list(seq)


def merge_symbols(sym: list[str], priority: Callable[[str, str], Any]) -> list[str]:
    """The merge loop shared by llama.cpp's SPM and BPE sessions: repeatedly join the adjacent
    pair with the lowest ``priority(left, right)`` (None: never joined; ties: leftmost first)
    and return the final symbols in order. ``sym`` is consumed."""
    n = len(sym)
    if n == 0:
        return []
    prev = list(range(-1, n - 1))
    nxt = list(range(1, n + 1))
    nxt[-1] = -1
    heap: list[tuple] = []

    def add(left: int, right: int) -> None:
        if left >= 0 and right >= 0:
            key = priority(sym[left], sym[right])
            if key is not None:
                heapq.heappush(heap, (key, left, right, sym[left] + sym[right]))

    for i in range(1, n):
        add(i - 1, i)
    while heap:
        _, left, right, merged = heapq.heappop(heap)
        if not sym[left] or not sym[right] or sym[left] + sym[right] != merged:
            continue  # stale: one side was merged since this pair was queued
        sym[left], sym[right] = merged, ""
        nxt[left] = nxt[right]
        if nxt[right] >= 0:
            prev[nxt[right]] = left
        add(prev[left], left)
        add(left, nxt[left])
    return [s for s in sym if s]


class Tokenizer:
    """Text <-> token ids for one GGUF vocabulary. Build it with :meth:`from_gguf`."""

    @classmethod
    def from_gguf(cls, path_or_file: str | os.PathLike[str] | GGUFFile) -> Tokenizer:
        """From a GGUF path, or an already loaded file (anything with ``.metadata``)."""
        if hasattr(path_or_file, "metadata"):
            metadata = path_or_file.metadata
        else:
            from trueno.gguf import load

            metadata = load(Path(path_or_file)).metadata
        with trace.span("tokenizer.load", category="llm"):
            return cls(metadata)

    def __init__(self, md: dict):
        self.model = md.get(Keys.TOKENIZER_MODEL)
        if self.model not in ("llama", "gpt2"):
            raise UnsupportedError(
                f"{Keys.TOKENIZER_MODEL} = {self.model!r}; supported: 'llama' (SentencePiece), "
                "'gpt2' (byte-level BPE)"
            )
        if Keys.TOKENS not in md:
            raise ModelError(f"GGUF metadata has no {Keys.TOKENS}")
        self._spm = self.model == "llama"
        tokens = _as_list(md[Keys.TOKENS])
        n = self.vocab_size = len(tokens)
        self._tok2id = dict(zip(tokens, range(n), strict=True))
        if "" in self._tok2id:  # llama.cpp renames empty tokens so they never match
            for i in [i for i, t in enumerate(tokens) if not t]:
                tokens[i] = f"[EMPTY_{i}]"
            self._tok2id = dict(zip(tokens, range(n), strict=True))
        if len(self._tok2id) != n:
            seen: dict[str, int] = {}
            dup = next((t, seen[t], i) for i, t in enumerate(tokens) if seen.setdefault(t, i) != i)
            raise ModelError(f"duplicate token {dup[0]!r} in vocabulary: ids {dup[1]} and {dup[2]}")
        self._tokens = tokens
        scores = md.get(Keys.SCORES)
        if scores is not None and len(scores) < n:
            raise ModelError(f"{Keys.SCORES} has {len(scores)} entries, expected {n}")
        self._scores = np.asarray(scores, np.float32)[:n].tolist() if scores is not None else None
        types = md.get(Keys.TOKEN_TYPE)
        if types is None:
            attr = np.full(n, NORMAL, np.int32)
        else:
            types = np.asarray(types, np.int64)[:n]
            attr = TYPE_ATTR[np.where((types >= 0) & (types < 8), types, 0)]
        if len(attr) != n:
            raise ModelError(f"{Keys.TOKEN_TYPE} has {len(attr)} entries, expected {n}")
        self._attr = attr

        if self._spm:
            self.pre = None
            self._ranks: dict[tuple[str, str], int] = {}
            defaults: dict[str, int | None] = {"bos": 1, "eos": 2, "unk": 0}
            self.add_space_prefix, self.add_bos, self.clean_spaces = True, True, False
        else:
            self.pre = pretokenize.pre_tokenizer(md.get(Keys.TOKENIZER_PRE))
            self._ranks = self._load_ranks(md)
            defaults = {"bos": 11 if self.pre.has_bos else None, "eos": 11, "unk": None}
            self.add_space_prefix, self.add_bos = False, self.pre.add_bos
            self.clean_spaces = self.pre.clean_spaces
        self.add_eos = False
        self.add_space_prefix = bool(md.get(Keys.ADD_SPACE_PREFIX, self.add_space_prefix))
        self.add_bos = bool(md.get(Keys.ADD_BOS, self.add_bos))
        self.add_eos = bool(md.get(Keys.ADD_EOS, self.add_eos))

        def special(key, default):
            if default is not None and default >= n:
                default = None
            value = md.get(key)
            return int(value) if value is not None and 0 <= int(value) < n else default

        self.bos_id = special(Keys.BOS_ID, defaults["bos"])
        self.eos_id = special(Keys.EOS_ID, defaults["eos"])
        self.unk_id = special(Keys.UNK_ID, defaults["unk"])
        self.pad_id = special(Keys.PAD_ID, None)
        self.eot_id = special(Keys.EOT_ID, None)
        self.eom_id = special(Keys.EOM_ID, None)
        for flag, key, tid in ((self.add_bos, Keys.ADD_BOS, self.bos_id),
                               (self.add_eos, Keys.ADD_EOS, self.eos_id)):  # fmt: skip
            if flag and tid is None:
                raise ModelError(f"{key} is true, but the vocabulary has no such token")
        self.eot_id, self.eom_id, self._eog = find_special_tokens(
            self._tok2id, tokens, attr, self.eos_id, self.eot_id, self.eom_id
        )
        self._build_special_index()
        self._byte_ids = [self._byte_token(b) for b in range(256)] if self._spm else None
        self._pieces: list[bytes | None] = [None] * n
        self._word_cache: dict[str, list[int]] = {}

    # ---- load helpers ------------------------------------------------------------------------

    @staticmethod
    def _load_ranks(md: dict) -> dict[tuple[str, str], int]:
        if Keys.MERGES not in md:
            raise ModelError(f"byte-level BPE vocabulary without {Keys.MERGES}")
        pairs = []
        for m in _as_list(md[Keys.MERGES]):
            p = m.find(" ", 1)
            pairs.append((m[:p], m[p + 1 :]) if p >= 0 else ("", ""))
        # the first occurrence of a pair keeps its rank (std::unordered_map::emplace)
        return dict(zip(reversed(pairs), range(len(pairs) - 1, -1, -1), strict=True))

    def _build_special_index(self) -> None:
        """Tokens cut out before tokenizing, longest text first, grouped by first character."""
        ids = np.flatnonzero(self._attr & (CONTROL | USER_DEFINED | UNKNOWN))
        always = (self._attr[ids] & (CONTROL | UNKNOWN) == 0).tolist()  # user-defined: always
        tokens = self._tokens
        entries = sorted(zip(ids.tolist(), always, strict=True), key=lambda e: -len(tokens[e[0]]))
        index: dict[str, list[tuple[int, str, int, bool]]] = {}
        for order, (i, user) in enumerate(entries):
            text = tokens[i]
            index.setdefault(text[0], []).append((order, text, i, user))
        self._special_index = index

    def _byte_token(self, b: int) -> int | None:
        tid = self._tok2id.get(f"<0x{b:02X}>")
        return tid if tid is not None else self._tok2id.get(chr(b)) if b < 128 else None

    # ---- encode ------------------------------------------------------------------------------

    def encode(
        self, text: str, add_special: bool = False, parse_special: bool = False
    ) -> list[int]:
        """Token ids of ``text``. ``add_special``: BOS/EOS as the model's metadata asks;
        ``parse_special``: control-token texts in ``text`` become those tokens."""
        with trace.span("tokenizer.encode", category="llm", chars=len(text)):
            out: list[int] = []
            if add_special and self.add_bos:
                out.append(self.bos_id)
            prev_special = True  # SPM: a space is prefixed to text that follows a special token
            for frag in self._partition(text, parse_special) if text else ():
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                elif self._spm:
                    if self.add_space_prefix and prev_special:
                        frag = " " + frag
                    self._encode_spm(frag.replace(" ", SPACE), out)
                    prev_special = False
                else:
                    cache = self._word_cache
                    if len(cache) > 65536:
                        cache.clear()
                    assert self.pre is not None  # BPE
                    for word in pretokenize.split(frag, self.pre.regexes):
                        ids = cache.get(word)
                        if ids is None:
                            ids = cache[word] = self._encode_bpe_word(word)
                        out.extend(ids)
            if add_special and self.add_eos:
                out.append(self.eos_id)
            return out

    def _partition(self, text: str, parse_special: bool) -> list[str | int]:
        """Split out special-token texts (llama.cpp ``tokenizer_st_partition``)."""
        index = self._special_index
        cands = [c for ch in set(text).intersection(index) for c in index[ch]]
        cands.sort()
        frags: list[str | int] = [text]
        for _, tok, tid, always in cands:
            if not (always or parse_special) or tok not in text:
                continue
            new: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or tok not in frag:
                    new.append(frag)
                    continue
                for k, part in enumerate(frag.split(tok)):
                    if k:
                        new.append(tid)
                    if part:
                        new.append(part)
            frags = new
        return frags

    def _encode_spm(self, text: str, out: list[int]) -> None:
        """llm_tokenizer_spm: merge the adjacent pair whose piece scores highest, repeatedly."""
        tok2id, scores = self._tok2id, self._scores

        def priority(left: str, right: str) -> float | None:
            tid = tok2id.get(left + right)
            return None if tid is None else -scores[tid] if scores else -0.0

        for piece in merge_symbols(list(text), priority):
            tid = tok2id.get(piece)
            if tid is not None:
                out.append(tid)
            else:
                out.extend(self._byte_fallback(piece))

    def _byte_fallback(self, piece: str) -> list[int]:
        ids = []
        assert self._byte_ids is not None  # SentencePiece
        for b in piece.encode("utf-8", "surrogatepass"):
            tid = self._byte_ids[b]
            if tid is None:
                tid = self.unk_id
                if tid is None:
                    raise TokenizerError(
                        f"byte 0x{b:02X} of {piece!r} has no token (<0x{b:02X}> missing) "
                        "and the vocabulary has no unknown token"
                    )
            ids.append(tid)
        return ids

    def _encode_bpe_word(self, word: str) -> list[int]:
        """llm_tokenizer_bpe_session for one pre-tokenized word: merge by rank."""
        tok2id = self._tok2id
        sym = list(byte_encode(word))
        assert self.pre is not None  # BPE
        if self.pre.ignore_merges or len(sym) == 1:
            tid = tok2id.get("".join(sym))
            if tid is not None:
                return [tid]
        ranks = self._ranks
        out = []
        for s in merge_symbols(sym, lambda left, right: ranks.get((left, right))):
            tid = tok2id.get(s)
            if tid is not None:
                out.append(tid)
            else:  # llama.cpp looks each byte up as a one-byte token and drops misses
                out.extend(tok2id[chr(b)] for b in s.encode() if b < 128 and chr(b) in tok2id)
        return out

    # ---- decode ------------------------------------------------------------------------------

    def token_to_piece(self, token_id: int, special: bool = False) -> bytes:
        """Raw bytes of one token (llama.cpp ``token_to_piece``); control and unknown tokens
        render as their text only with ``special``, else as nothing."""
        if not 0 <= token_id < self.vocab_size:
            raise TokenizerError(
                f"token id {token_id} outside the vocabulary [0, {self.vocab_size})"
            )
        attr = int(self._attr[token_id])
        if not special and attr & (CONTROL | UNKNOWN):
            return b""
        piece = self._pieces[token_id]
        if piece is None:
            piece = self._pieces[token_id] = self._render(token_id, attr)
        return piece

    def _render(self, token_id: int, attr: int) -> bytes:
        text = self._tokens[token_id]
        if attr & (CONTROL | UNKNOWN | USER_DEFINED):
            return text.encode()
        if attr & NORMAL:
            if self._spm:
                return text.replace(SPACE, " ").encode()
            out = bytearray()
            for ch in text:
                b = UNICODE_TO_BYTE.get(ch)
                if b is not None:
                    out.append(b)
                else:  # llama_decode_text's marker for a character outside the byte alphabet
                    out += f"[UNK_BYTE_0x{ch.encode().hex()}{text}]".encode()
            return bytes(out)
        if attr & BYTE:
            return bytes([int(text[3:5], 16)])
        return b""

    def decode_bytes(self, ids: Iterable[int], special: bool = False,
                     clean_spaces: bool | None = None) -> bytes:  # fmt: skip
        """llama.cpp ``llama_detokenize`` (remove_special=False) as raw bytes."""
        parts = []
        strip = self.add_space_prefix  # the space add_space_prefix put before the first token
        for tid in ids:
            piece = self.token_to_piece(int(tid), special)
            if strip and piece[:1] == b" ":
                piece = piece[1:]
            strip = False
            parts.append(piece)
        data = b"".join(parts)
        if self.clean_spaces if clean_spaces is None else clean_spaces:
            data = clean_up_spaces(data)
        return data

    def decode(self, ids: Iterable[int], special: bool = False,
               clean_spaces: bool | None = None) -> str:  # fmt: skip
        """Text of ``ids`` (invalid UTF-8 shows as U+FFFD). ``special`` renders control tokens;
        ``clean_spaces`` overrides the vocabulary's clean-up of " ," " ." " 's" ..."""
        return self.decode_bytes(ids, special, clean_spaces).decode("utf-8", "replace")

    def decode_stream(
        self, special: bool = False, strip_prefix_space: bool = False
    ) -> StreamDecoder:
        """A :class:`StreamDecoder` for this vocabulary."""
        return StreamDecoder(self, special, strip_prefix_space)

    # ---- queries -----------------------------------------------------------------------------

    def is_eog(self, token_id: int) -> bool:
        """True for tokens that end generation (EOS, EOT, EOM and their look-alikes)."""
        return token_id in self._eog

    @property
    def eog_ids(self) -> frozenset[int]:
        return self._eog

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` as stored in the GGUF file."""
        return self._tokens[token_id]

    def token_id(self, text: str) -> int | None:
        """Id of the vocabulary entry spelled exactly ``text``, or None."""
        return self._tok2id.get(text)

    def __repr__(self) -> str:
        kind = "SentencePiece" if self.pre is None else f"BPE pre={self.pre.name}"
        return (
            f"Tokenizer({kind}, vocab_size={self.vocab_size}, bos={self.bos_id}, eos={self.eos_id})"
        )

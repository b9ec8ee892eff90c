"""Detokenizing helpers: :class:`StreamDecoder` (token ids to text as they come, never half a
UTF-8 character) and llama.cpp's ``clean_spaces`` pass over decoded bytes."""

from __future__ import annotations

import codecs
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from trueno.llm.tokenizer import Tokenizer


class StreamDecoder:
    """Turns token ids into text as they come; holds back an incomplete UTF-8 character until
    the tokens that finish it arrive. ``strip_prefix_space`` drops the space SentencePiece
    prefixed to the first token (use it when decoding a prompt, not a continuation)."""

    def __init__(self, tokenizer: Tokenizer, special: bool = False,
                 strip_prefix_space: bool = False):  # fmt: skip
        self.tokenizer = tokenizer
        self.special = special
        self._strip = strip_prefix_space and tokenizer.add_space_prefix
        self._utf8 = codecs.getincrementaldecoder("utf-8")("replace")

    def push(self, token_id: int) -> str:
        """Text completed by ``token_id`` (may be empty)."""
        piece = self.tokenizer.token_to_piece(token_id, self.special)
        if self._strip and piece[:1] == b" ":
            piece = piece[1:]
        self._strip = False
        return self._utf8.decode(piece)

    def flush(self) -> str:
        """Whatever is still held back, with an unfinished character shown as U+FFFD."""
        return self._utf8.decode(b"", final=True)


def clean_up_spaces(data: bytes) -> bytes:
    """llama.cpp's ``clean_spaces`` passes: drop the space before ? ! . , and before the
    contractions 's 'm 're 've, and around a lone apostrophe (in place, like the C loop)."""
    if not any(p in data for p in (b" ?", b" !", b" .", b" ,", b" '")):
        return data
    t = bytearray(data)
    total = len(t)
    n, total = total, min(total, 1)
    for i in range(1, n):  # " ?" " !" " ." " ,"
        x = t[i]
        if t[i - 1] == 0x20 and x in b"?!.,":
            total -= 1
        t[total] = x
        total += 1
    n, total, i = total, min(total, 1), 1
    while i < n:  # " ' " -> "'"
        x = t[i]
        if x == 0x27 and i + 1 < n and t[i - 1] == 0x20 and t[i + 1] == 0x20:
            total -= 1
            i += 1
            t[i] = 0
        t[total] = x
        total += 1
        i += 1
    n, total = total, min(total, 1)
    for i in range(1, n):  # " 's" " 'm" " 're" " 've"
        x = t[i]
        if t[i - 1] == 0x20 and x == 0x27 and i + 1 < n:
            x1 = t[i + 1]
            if x1 in b"sm":
                total -= 1
            elif x1 not in b"td" and i + 2 < n and (x1, t[i + 2]) in ((0x72, 0x65), (0x76, 0x65)):
                total -= 1
        t[total] = x
        total += 1
    return bytes(t[:total])

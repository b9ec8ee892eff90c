"""Token attributes and the special tokens llama.cpp recognises by their text.

llama.cpp's ``llama_vocab::load`` finds end-of-turn, end-of-message, fill-in-the-middle and
end-of-generation tokens by text when the metadata does not name them, and marks them as
control tokens; :func:`find_special_tokens` does the same.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from trueno.gguf.constants import TokenType

# token attributes (llama_token_attr)
UNKNOWN, UNUSED, NORMAL, CONTROL, USER_DEFINED, BYTE = 1, 2, 4, 8, 16, 32
TYPE_ATTR = np.zeros(8, np.int32)  # TokenType -> attr; UNDEFINED and unknown types -> 0
TYPE_ATTR[[TokenType.NORMAL, TokenType.UNKNOWN, TokenType.CONTROL, TokenType.USER_DEFINED,
           TokenType.UNUSED, TokenType.BYTE]] = [NORMAL, UNKNOWN, CONTROL, USER_DEFINED,
                                                 UNUSED, BYTE]  # fmt: skip

# token texts llama.cpp recognises when the metadata does not name them (llama_vocab::load)
EOT_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>",
             "<|end_of_text|>", "<EOT>", "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>",
             "<end_of_utterance>")  # fmt: skip
EOM_TEXTS = ("<|eom_id|>",)
FIM_TEXTS = {
    "pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>",
            "▁<PRE>", "<|code_prefix|>", "<|prefix|>"),
    "suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>",
            "▁<SUF>", "<|code_suffix|>", "<|suffix|>"),
    "mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>",
            "▁<MID>", "<|code_middle|>", "<|middle|>"),
    "pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "sep": ("<|file_sep|>",),
}  # fmt: skip
EOG_TEXTS = ("<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>",
             "<|calls|>", "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>",
             "_<EOT>", "[EOT]", "[EOS]", "<|end_of_text|>", "<end_of_utterance>", "<eos>",
             "<turn|>", "<|tool_response>", "<｜end▁of▁sentence｜>", "[e~[")  # fmt: skip
_ALWAYS_RENDERED = ("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>")  # gpt-oss


def _find(tok2id: dict[str, int], texts: Iterable[str]) -> int | None:
    return next((tok2id[t] for t in texts if t in tok2id), None)


def find_special_tokens(
    tok2id: dict[str, int],
    tokens: list[str],
    attr: np.ndarray,
    eos_id: int | None,
    eot_id: int | None,
    eom_id: int | None,
) -> tuple[int | None, int | None, frozenset[int]]:
    """(eot_id, eom_id, end-of-generation ids), the ids found by text where not given;
    updates ``attr`` (control and user-defined flags) in place, as llama.cpp's load does."""
    found = []
    if eot_id is None:
        eot_id = _find(tok2id, EOT_TEXTS)
        found.append(eot_id)
    if eom_id is None:
        eom_id = _find(tok2id, EOM_TEXTS)
        found.append(eom_id)
    fim = {k: _find(tok2id, v) for k, v in FIM_TEXTS.items()}
    eog = {fim["pad"], fim["rep"], fim["sep"]}
    eog.update(tok2id[t] for t in EOG_TEXTS if t in tok2id)
    for tid in [*found, *fim.values(), *eog]:
        if tid is not None:
            attr[tid] |= CONTROL
    for t in _ALWAYS_RENDERED:
        if t in tok2id:
            attr[tok2id[t]] = USER_DEFINED
    eog.update((eos_id, eot_id, eom_id))
    eog.discard(None)
    texts = {tokens[i]: i for i in eog if i is not None}
    has_call = "<|call|>" in texts or "<|calls|>" in texts
    if "<|end|>" in texts and has_call and ("<|return|>" in texts or "<|flush|>" in texts):
        eog.discard(texts["<|end|>"])  # harmony / solar-open: <|end|> does not end generation
        attr[texts["<|end|>"]] = USER_DEFINED
    if "<|tool_response>" in texts and "</s>" in texts:  # gemma4, paddleocr
        eog.discard(texts["</s>"])
        attr[texts["</s>"]] = NORMAL
    return eot_id, eom_id, frozenset(i for i in eog if i is not None)

"""trueno.llm.tokenizer against llama.cpp: its vocab test vectors, its tokenization of the two
registry models, round trips, streaming, special tokens and hand-built vocabularies."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from llm_models import gemma3_path, smollm2_path

from trueno.errors import ModelError, TokenizerError, TruenoError, UnsupportedError
from trueno.gguf import load
from trueno.gguf.constants import Keys, TokenType
from trueno.llm import Tokenizer
from trueno.llm import tokenizer as tokenizer_module
from trueno.llm.detokenize import StreamDecoder, clean_up_spaces

REPO = Path(__file__).resolve().parents[2]
TESTDATA = REPO.parent / "shared" / "testdata"
VOCABS = TESTDATA / "tokenizer"
REFERENCE = TESTDATA / "llamacpp" / "reference_tokens.json"
VOCAB_FILES = ["ggml-vocab-llama-spm.gguf", "ggml-vocab-gpt-2.gguf", "ggml-vocab-starcoder.gguf"]
SEPARATOR = "\n__ggml_vocab_test__\n"

needs_vocabs = pytest.mark.skipif(
    not VOCABS.is_dir(), reason=f"llama.cpp vocab test files not found at {VOCABS}"
)


@cache
def vocab(name: str) -> Tokenizer:
    return Tokenizer.from_gguf(VOCABS / name)


def vocab_cases(name: str) -> list[tuple[str, list[int]]]:
    inputs = (VOCABS / f"{name}.inp").read_text(encoding="utf-8").split(SEPARATOR)
    outputs = (VOCABS / f"{name}.out").read_text(encoding="utf-8").split("\n")
    n = len(inputs) - 1  # the file ends with a separator
    assert len(outputs) >= n
    return [(inputs[i], [int(t) for t in outputs[i].split()]) for i in range(n)]


MODELS = {"SmolLM2-135M-Instruct.Q4_1": smollm2_path, "gemma-3-270m-q4_k_m": gemma3_path}


@cache
def model_tokenizer(name: str) -> Tokenizer:
    path = MODELS[name]()
    if path is None:
        pytest.skip(f"model package for {name} is not installed")
    return Tokenizer.from_gguf(path)


def reference_cases(name: str) -> list[dict]:
    if not REFERENCE.exists():
        pytest.skip(f"llama.cpp reference tokens not found at {REFERENCE}")
    return json.loads(REFERENCE.read_text(encoding="utf-8"))[name]


# ---- llama.cpp vocab test vectors: every case exactly -------------------------------------


@needs_vocabs
@pytest.mark.parametrize("name", VOCAB_FILES)
def test_vocab_vectors_match_llamacpp(name):
    tok = vocab(name)
    cases = vocab_cases(name)
    assert len(cases) == 46
    mismatches = [(text, expected, tok.encode(text)) for text, expected in cases
                  if tok.encode(text) != expected]  # fmt: skip
    assert mismatches == []


@needs_vocabs
@pytest.mark.parametrize("name", VOCAB_FILES)
def test_vocab_vectors_round_trip(name):
    tok = vocab(name)
    for text, expected in vocab_cases(name):
        assert tok.decode(expected, clean_spaces=False) == text


@needs_vocabs
def test_from_gguf_accepts_path_and_loaded_file():
    path = VOCABS / "ggml-vocab-gpt-2.gguf"
    a, b = Tokenizer.from_gguf(str(path)), Tokenizer.from_gguf(load(path))
    assert a.encode("Hello world") == b.encode("Hello world") == [15496, 995]
    assert a.vocab_size == 50257 and a.bos_id == a.eos_id == 50256
    assert a.pre.name == "gpt-2" and a.clean_spaces and not a.add_bos


@needs_vocabs
def test_gpt2_clean_spaces_follows_llamacpp():
    tok = vocab("ggml-vocab-gpt-2.gguf")
    ids = tok.encode("Hello , world . I 'm here ' ok")
    assert tok.decode(ids) == "Hello, world. I'm here'ok"
    assert tok.decode(ids, clean_spaces=False) == "Hello , world . I 'm here ' ok"
    assert clean_up_spaces(b"a 't b 'll c 've") == b"a 't b 'll c've"


@needs_vocabs
def test_spm_space_prefix_and_byte_fallback():
    tok = vocab("ggml-vocab-llama-spm.gguf")
    assert tok.add_space_prefix and tok.add_bos and not tok.add_eos
    ids = tok.encode("Hello")
    assert tok.token_text(ids[0]) == "\u2581Hello"
    assert tok.encode("Hello", add_special=True) == [tok.bos_id, *ids]
    llama = tok.encode("🦙")  # not in the vocabulary: four <0xNN> byte tokens
    assert [tok.token_text(i) for i in llama[-4:]] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]
    assert tok.decode(llama) == "🦙"
    # llama.cpp strips the prefix space from the first piece only
    assert tok.decode(tok.encode("  two")) == "  two"
    # ... and a leading BOS (which renders as nothing) takes that turn, so the space stays
    assert tok.decode(tok.encode("Hello", add_special=True)) == " Hello"


# ---- the registry models against llama.cpp's own tokenization ------------------------------


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_llamacpp_reference(name):
    cases = reference_cases(name)
    tok = model_tokenizer(name)
    for case in cases:
        text = case["text"]
        assert tok.encode(text) == case["no_special"], text
        assert tok.encode(text, add_special=True, parse_special=True) == \
            case["add_bos_parse_special"], text  # fmt: skip
        assert tok.decode(case["no_special"]) == case["roundtrip"], text


def test_smollm2_special_tokens():
    tok = model_tokenizer("SmolLM2-135M-Instruct.Q4_1")
    assert (tok.bos_id, tok.eos_id, tok.add_bos, tok.add_eos) == (1, 2, False, False)
    assert tok.eot_id == tok.token_id("<|im_end|>") == 2
    assert tok.is_eog(2) and tok.is_eog(tok.token_id("<|endoftext|>")) and not tok.is_eog(1)
    ids = tok.encode("<|im_start|>user\nhi<|im_end|>", parse_special=True)
    assert ids == [1, 4093, 198, 6004, 2]
    assert tok.decode(ids) == "user\nhi"  # control tokens render only on request
    assert tok.decode(ids, special=True) == "<|im_start|>user\nhi<|im_end|>"
    assert tok.token_to_piece(1) == b"" and tok.token_to_piece(1, special=True) == b"<|im_start|>"


def test_gemma3_special_tokens_and_user_defined():
    tok = model_tokenizer("gemma-3-270m-q4_k_m")
    assert tok.vocab_size == 262144 and not tok.add_space_prefix
    assert (tok.bos_id, tok.eos_id, tok.add_bos) == (2, 1, True)
    end_of_turn = tok.token_id("<end_of_turn>")
    assert tok.eot_id == end_of_turn and tok.is_eog(end_of_turn) and tok.is_eog(tok.eos_id)
    # user-defined tokens ("\n\n" is one) are cut out even without parse_special
    assert tok.encode("a\n\nb")[1] == tok.token_id("\n\n")
    prompt = "<start_of_turn>user\nhi<end_of_turn>\n<start_of_turn>model\n"
    ids = tok.encode(prompt, add_special=True, parse_special=True)
    assert ids[:2] == [tok.bos_id, tok.token_id("<start_of_turn>")]
    assert tok.decode(ids, special=True) == "<bos>" + prompt


# ---- round trips (hypothesis) ---------------------------------------------------------------

FULL_TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
# starcoder-style vocabularies lack the byte 0xF1 (U+40000..U+7FFFF, unassigned planes) and
# drop it as llama.cpp does; keep round-trip text below that
TEXT = st.text(st.characters(blacklist_categories=("Cs",), max_codepoint=0x3FFFF), max_size=60)


@needs_vocabs
@settings(max_examples=80, deadline=None)
@given(text=FULL_TEXT)
def test_gpt2_round_trip(text):
    tok = vocab("ggml-vocab-gpt-2.gguf")
    assert tok.decode(tok.encode(text), clean_spaces=False) == text


@needs_vocabs
@settings(max_examples=80, deadline=None)
@given(text=TEXT)
def test_starcoder_round_trip(text):
    tok = vocab("ggml-vocab-starcoder.gguf")
    assert tok.decode(tok.encode(text), clean_spaces=False) == text


@needs_vocabs
def test_bpe_drops_bytes_outside_the_vocabulary():
    tok = vocab("ggml-vocab-starcoder.gguf")
    assert tok.decode(tok.encode("a\U00040000b")) == "a\ufffd\ufffd\ufffdb"  # 0xF1 dropped


@needs_vocabs
@settings(max_examples=80, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
                    max_size=60))  # fmt: skip
def test_spm_round_trip(text):
    # U+2581 is SentencePiece's own space mark: it decodes to " ", so it cannot round-trip
    tok = vocab("ggml-vocab-llama-spm.gguf")
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs", "Cc"), max_codepoint=0x3FFFF),
                    max_size=60))  # fmt: skip
def test_smollm2_round_trip(text):
    # SmolLM2's byte alphabet lacks a few control bytes (0x04, 0x06, ...) and 0xF1/0xF2
    tok = model_tokenizer("SmolLM2-135M-Instruct.Q4_1")
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=50, deadline=None)
@given(text=st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\u2581"),
                    max_size=60))  # fmt: skip
def test_gemma3_round_trip(text):
    tok = model_tokenizer("gemma-3-270m-q4_k_m")
    assert tok.decode(tok.encode(text)) == text


# ---- streaming --------------------------------------------------------------------------------


def stream(tok: Tokenizer, ids: list[int], **kw) -> list[str]:
    dec = tok.decode_stream(**kw)
    return [dec.push(i) for i in ids] + [dec.flush()]


@needs_vocabs
def test_stream_holds_back_split_characters():
    tok = vocab("ggml-vocab-llama-spm.gguf")
    ids = tok.encode("a🦙b")  # ▁a, four byte tokens, b
    pieces = stream(tok, ids, strip_prefix_space=True)
    assert pieces == ["a", "", "", "", "🦙", "b", ""]
    bpe = vocab("ggml-vocab-gpt-2.gguf")
    ids = bpe.encode("日本語のテキスト")
    pieces = stream(bpe, ids)
    assert "".join(pieces) == "日本語のテキスト" and "" in pieces  # some token ends mid-character
    assert all("\ufffd" not in p for p in pieces)


@needs_vocabs
def test_stream_flush_shows_unfinished_character():
    tok = vocab("ggml-vocab-llama-spm.gguf")
    ids = tok.encode("🦙")
    dec = StreamDecoder(tok)
    assert [dec.push(i) for i in ids[:-1]] == [" ", "", "", ""]  # ▁ then three of four bytes
    assert dec.flush() == "\ufffd"


@needs_vocabs
@settings(max_examples=60, deadline=None)
@given(text=TEXT, name=st.sampled_from(VOCAB_FILES))
def test_stream_concatenation_equals_decode(text, name):
    tok = vocab(name)
    ids = tok.encode(text)
    pieces = stream(tok, ids, strip_prefix_space=True)
    expected = text.replace("\u2581", " ") if tok.model == "llama" else text
    assert "".join(pieces) == tok.decode(ids, clean_spaces=False) == expected
    assert all("\ufffd" not in p for p in pieces)


# ---- hand-built vocabularies: metadata handling and errors ----------------------------------


def spm_metadata(pieces: list[str], **extra) -> dict:
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.NORMAL] * (
        len(pieces) - 3
    )
    md = {
        Keys.TOKENIZER_MODEL: "llama",
        Keys.TOKENS: pieces,
        Keys.SCORES: np.linspace(0, -1, len(pieces), dtype=np.float32),
        Keys.TOKEN_TYPE: np.array(types, np.int32),
    }
    md.update(extra)
    return md


def make(md: dict) -> Tokenizer:
    return Tokenizer.from_gguf(SimpleNamespace(metadata=md))


def test_spm_merges_by_score_and_falls_back_to_unk():
    pieces = ["<unk>", "<s>", "</s>", "\u2581", "a", "b", "ab", "\u2581a", "\u2581ab"]
    tok = make(spm_metadata(pieces))
    assert (tok.unk_id, tok.bos_id, tok.eos_id) == (0, 1, 2)
    assert tok.encode("ab") == [8]  # ▁ab
    assert tok.encode("ab", add_special=True) == [1, 8]
    assert tok.encode("abz") == [8, 0]  # z: no byte tokens, so <unk>
    # equal scores: the leftmost pair merges first
    flat = make(
        spm_metadata(
            ["<unk>", "<s>", "</s>", "a", "aa"],
            **{Keys.SCORES: np.zeros(5, np.float32), Keys.ADD_SPACE_PREFIX: False},
        )
    )
    assert flat.encode("aaa") == [4, 3]


def test_metadata_errors():
    base = spm_metadata(["<unk>", "<s>", "</s>", "a"])
    with pytest.raises(UnsupportedError, match="tokenizer.ggml.model"):
        make({**base, Keys.TOKENIZER_MODEL: "t5"})
    with pytest.raises(ModelError, match="tokenizer.ggml.tokens"):
        make({k: v for k, v in base.items() if k != Keys.TOKENS})
    with pytest.raises(ModelError, match="duplicate token 'a'"):
        make(
            {
                **base,
                Keys.TOKENS: ["<unk>", "<s>", "</s>", "a", "a"],
                Keys.SCORES: np.zeros(5, np.float32),
                Keys.TOKEN_TYPE: np.ones(5, np.int32),
            }
        )
    with pytest.raises(ModelError, match="tokenizer.ggml.scores has 2 entries, expected 4"):
        make({**base, Keys.SCORES: np.zeros(2, np.float32)})
    with pytest.raises(ModelError, match="tokenizer.ggml.token_type has 3 entries, expected 4"):
        make({**base, Keys.TOKEN_TYPE: np.ones(3, np.int32)})
    bpe = {Keys.TOKENIZER_MODEL: "gpt2", Keys.TOKENS: ["a", "b"], Keys.MERGES: ["a b"]}
    with pytest.raises(UnsupportedError, match="pre-tokenizer type 'nope'"):
        make({**bpe, Keys.TOKENIZER_PRE: "nope"})
    with pytest.raises(ModelError, match="tokenizer.ggml.merges"):
        make({k: v for k, v in bpe.items() if k != Keys.MERGES})
    with pytest.raises(ModelError, match="add_bos_token is true"):
        make({**bpe, Keys.ADD_BOS: True})  # default BOS id 11 is outside a 2-token vocab
    tok = make(base)
    with pytest.raises(TokenizerError, match="token id 99 outside"):
        tok.decode([99])
    assert issubclass(TokenizerError, TruenoError) and issubclass(TokenizerError, ValueError)
    assert tokenizer_module.TokenizerError is TokenizerError  # the old import path still works


def test_bpe_merge_ranks_and_ignore_merges():
    tokens = ["a", "b", "c", "ab", "bc", "abc"]
    md = {Keys.TOKENIZER_MODEL: "gpt2", Keys.TOKENIZER_PRE: "gpt-2", Keys.TOKENS: tokens,
          Keys.MERGES: ["b c", "a b", "a bc"]}  # fmt: skip
    assert make(md).encode("abc") == [5]  # b+c first (rank 0), then a+bc
    assert make({**md, Keys.MERGES: ["a b", "b c"]}).encode("abc") == [3, 2]
    # llama-bpe skips the merges for words that are tokens already
    tok = make({**md, Keys.TOKENIZER_PRE: "llama-bpe", Keys.MERGES: [], Keys.BOS_ID: 0})
    assert tok.add_bos and tok.encode("abc") == [5]
    assert tok.encode("abc", add_special=True) == [0, 5]


def test_tiny_vocab_written_and_read_back(tmp_path):
    """The whole path: our GGUF writer, trueno.gguf.load's lazy string arrays, the tokenizer."""
    from trueno.gguf import write_gguf

    tokens = ["<|endoftext|>", "<|im_end|>", "a", "b", "\u0120", "\u0120a", "ab", "\u0120ab"]
    md = {
        Keys.ARCHITECTURE: "llama",
        Keys.TOKENIZER_MODEL: "gpt2",
        Keys.TOKENIZER_PRE: "qwen2",
        Keys.TOKENS: tokens,
        Keys.TOKEN_TYPE: np.array([3, 3, 1, 1, 1, 1, 1, 1], np.int32),
        Keys.MERGES: ["\u0120 a", "a b", "\u0120a b"],
        Keys.EOS_ID: 1,
        Keys.ADD_BOS: False,
    }
    path = tmp_path / "tiny-vocab.gguf"
    write_gguf(path, md, {})
    tok = Tokenizer.from_gguf(path)
    assert tok.encode("ab ab<|im_end|>", parse_special=True) == [6, 7, 1]
    assert tok.encode("ab ab<|im_end|>") == [6, 7]  # unparsed, "<|...|>" has no tokens: dropped
    assert tok.eos_id == 1 and tok.is_eog(1) and tok.is_eog(0) and tok.eot_id == 1
    assert tok.decode([6, 7, 1]) == "ab ab" and tok.decode([6, 7, 1], special=True) == \
        "ab ab<|im_end|>"  # fmt: skip


def test_merge_symbols_lowest_priority_first_leftmost_on_ties():
    from trueno.llm.tokenizer import merge_symbols

    ranks = {("a", "b"): 1, ("b", "c"): 0, ("a", "bc"): 2, ("x", "x"): 5}
    assert merge_symbols(list("abc"), lambda a, b: ranks.get((a, b))) == ["abc"]
    assert merge_symbols(list("xxx"), lambda a, b: ranks.get((a, b))) == ["xx", "x"]
    assert merge_symbols(list("ab"), lambda a, b: None) == ["a", "b"]
    assert merge_symbols([], lambda a, b: 0) == []

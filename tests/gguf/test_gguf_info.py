"""trueno.gguf.info: the `trueno gguf info` text (returned, never printed)."""

from __future__ import annotations

import numpy as np
from gguf_build import sample_file

from trueno.gguf import GGMLType, format_info, load
from trueno.gguf import GGUFValueType as V
from trueno.gguf.info import format_type, format_value
from trueno.gguf.writer import write_gguf


def _model(path) -> None:
    write_gguf(
        path,
        {
            "tokenizer.ggml.tokens": [f"t{i}" for i in range(1000)],
            "tokenizer.ggml.scores": np.arange(1000, dtype=np.float32),
            "tokenizer.chat_template": "{% for m in messages %}" * 20,
            "llama.block_count": 2,
        },
        {
            "token_embd.weight": np.zeros((4, 32), np.float32),
            "blk.0.ffn_up.weight": (np.zeros((2, 144), np.uint8), GGMLType.Q4_K, (2, 256)),
            "blk.1.ffn_up.weight": (np.zeros((2, 144), np.uint8), GGMLType.Q4_K, (2, 256)),
        },
        arch="llama",
    )


def test_info_text(tmp_path, capsys):
    p = tmp_path / "m.gguf"
    _model(p)
    text = format_info(p)
    assert capsys.readouterr().out == ""  # returns, never prints
    lines = text.splitlines()
    assert lines[0] == f"file: {p}" and lines[1].startswith("GGUF v3, ")
    tok = next(line for line in lines if "tokenizer.ggml.tokens" in line)
    assert "ARRAY[STRING]" in tok and "1000 items" in tok and "'t0'" in tok and "'t999'" in tok
    assert "'t500'" not in tok  # long arrays summarised by head and tail
    assert "ARRAY[FLOAT32]" in next(line for line in lines if "scores" in line)
    tmpl = next(line for line in lines if "chat_template" in line)
    assert "(460 chars)" in tmpl and len(tmpl) < 120
    row = next(line for line in lines if line.strip().startswith("blk.0.ffn_up.weight"))
    assert row.split() == ["blk.0.ffn_up.weight", "Q4_K", "2x256", "512", "288", row.split()[-1]]
    totals = lines[lines.index("bytes by type:") + 1 :]
    assert totals[1].split()[:4] == ["Q4_K", "2", "1024", "576"]
    assert totals[2].split()[:4] == ["F32", "1", "128", "512"]
    assert totals[-1].split()[:3] == ["total", "3", "1152"] and "100.0%" in totals[-1]


def test_info_accepts_open_file(tmp_path):
    p = tmp_path / "s.gguf"
    sample_file(p)
    with load(p) as f:
        text = format_info(f)
        assert f.tensors["w"].data[0, 1] == 1.0  # the file is still usable afterwards
    assert "ARRAY[ARRAY[INT32]]" in text and "[[1, 2], [3, 4, 5]]" in text
    assert "Q8_0" in text and "'fuzz base'" in text


def test_helpers():
    assert format_type(V.UINT32) == "UINT32"
    assert format_type((V.ARRAY, V.ARRAY, V.FLOAT32)) == "ARRAY[ARRAY[FLOAT32]]"
    assert format_value(list(range(3))) == "[0, 1, 2]"
    assert format_value(np.arange(100), max_items=4) == "100 items [0, 1, ..., 98, 99]"
    assert format_value(0.1) == "0.1" and format_value(True) == "True"


def test_empty_file_info(tmp_path):
    p = tmp_path / "e.gguf"
    write_gguf(p, {}, {})
    text = format_info(p)
    assert "metadata (0 keys):" in text and "tensors (0):" in text
    assert text.splitlines()[-1].split()[:3] == ["total", "0", "0"]

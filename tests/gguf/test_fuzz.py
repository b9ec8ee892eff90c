"""Fuzz the reader with mutated headers of a valid small file: every case either loads (and
every value and tensor view can be touched) or raises GGUFError, never anything else, never a
hang, and never a large allocation. TRUENO_FUZZ_CASES sets the count (`make fuzz`: 10,000)."""

from __future__ import annotations

import os
import time
import tracemalloc

import numpy as np
import pytest
from gguf_build import header_fields, sample_file
from hypothesis import given
from hypothesis import strategies as st

from trueno.errors import GGUFError
from trueno.gguf import GGUFStringArray, load
from trueno.quant import dequantize_tensor

CASES = int(os.environ.get("TRUENO_FUZZ_CASES", "1000"))
SEED = int(os.environ.get("TRUENO_FUZZ_SEED", "20251125"))
MAX_PEAK_BYTES = 4 << 20  # the base file is ~1 KiB: anything near this is a missing check
INTERESTING = [
    0,
    1,
    2,
    3,
    4,
    5,
    7,
    8,
    9,
    12,
    31,
    32,
    33,
    63,
    64,
    255,
    256,
    2**15,
    2**16 - 1,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> tuple[bytes, int, list[tuple[int, int]]]:
    """The valid file's bytes, where its header ends, and its integer fields."""
    p = tmp_path_factory.mktemp("fuzz") / "base.gguf"
    sample_file(p)
    data = p.read_bytes()
    with load(p) as f:
        return data, f.data_offset, header_fields(data)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz-cases")


def mutate(data: bytes, header_end: int, fields: list, rng: np.random.Generator) -> bytes:
    """1-4 random edits, mostly inside the header: a known integer field (count, length, type,
    dim, offset) set to a boundary value or nudged, bit flips, random bytes, boundary integers at
    any offset, truncation, insertion, deletion."""
    buf = bytearray(data)
    for _ in range(int(rng.integers(1, 5))):
        op = int(rng.integers(0, 9))
        if op >= 7 and len(buf) == len(data):  # field-aware edit (layout still intact)
            at, width = fields[int(rng.integers(0, len(fields)))]
            old = int.from_bytes(buf[at : at + width], "little")
            if op == 7:
                v = INTERESTING[int(rng.integers(0, len(INTERESTING)))]
            else:
                v = old + int(rng.integers(-3, 4)) * (1 if rng.random() < 0.7 else 32)
            buf[at : at + width] = (v % 2 ** (8 * width)).to_bytes(width, "little")
            continue
        if not buf:
            break
        pos = int(rng.integers(0, min(len(buf), header_end)))
        if op == 0:
            buf[pos] ^= 1 << int(rng.integers(0, 8))
        elif op == 1:
            buf[pos] = int(rng.integers(0, 256))
        elif op in (2, 3):
            width = 8 if op == 2 else 4
            v = INTERESTING[int(rng.integers(0, len(INTERESTING)))] % 2 ** (8 * width)
            if rng.random() < 0.3:
                v = int(rng.integers(0, 2**31)) % 2 ** (8 * width)
            buf[pos : pos + width] = v.to_bytes(width, "little")
        elif op == 4:
            del buf[int(rng.integers(0, len(buf) + 1)) :]
        elif op == 5:
            buf[pos:pos] = rng.integers(0, 256, int(rng.integers(1, 9)), dtype=np.uint8).tobytes()
        else:
            del buf[pos : pos + int(rng.integers(1, 9))]
    return bytes(buf)


def touch(f) -> None:
    """Use everything a caller could: every metadata value, every tensor view."""
    for v in f.metadata.values():
        _touch_value(v)
    for name, t in f.tensors.items():
        assert t.data.nbytes == t.nbytes
        if t.data.size:
            t.data.reshape(-1)[[0, -1]].tobytes()
        if t.ggml_type.name in ("F32", "F16", "BF16"):
            assert dequantize_tensor(f.tensors[name]).shape == t.shape


def _touch_value(v) -> None:
    if isinstance(v, GGUFStringArray):
        v.tolist()
    elif isinstance(v, list):
        for item in v:
            _touch_value(item)
    elif isinstance(v, np.ndarray):
        with np.errstate(all="ignore"):
            v.sum()


def run_case(data: bytes, path: str) -> str:
    """'ok' or 'error'; anything but GGUFError propagates."""
    with open(path, "wb") as fh:
        fh.write(data)
    try:
        try:
            with load(path) as f:
                touch(f)
            return "ok"
        except GGUFError as e:
            assert str(e), "GGUFError without a message"
            return "error"
    finally:
        os.unlink(path)  # a fresh inode per case: no old mapping ever sees a rewritten file


def test_fuzz_mutated_headers(base, tmp_path):
    data, header_end, fields = base
    rng = np.random.default_rng(SEED)
    counts = {"ok": 0, "error": 0}
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        for case in range(CASES):
            mutated = mutate(data, header_end, fields, rng)
            tracemalloc.reset_peak()
            held = tracemalloc.get_traced_memory()[0]  # what others hold: not this case's
            try:
                counts[run_case(mutated, str(tmp_path / f"c{case}.gguf"))] += 1
            except Exception as e:
                (tmp_path / "crash.gguf").write_bytes(mutated)
                raise AssertionError(
                    f"case {case} (seed {SEED}) raised {type(e).__name__}: "
                    f"{e}; input saved to {tmp_path / 'crash.gguf'}"
                ) from e
            peak = tracemalloc.get_traced_memory()[1] - held
            if peak >= MAX_PEAK_BYTES:
                # tracemalloc counts every thread's allocations, and a thread an earlier test
                # in this process left running can allocate meanwhile: a missing check in the
                # reader allocates again on the same input, the other thread's burst does not
                # (and what such a thread still holds is subtracted: ``held``)
                tracemalloc.reset_peak()
                held = tracemalloc.get_traced_memory()[0]
                run_case(mutated, str(tmp_path / f"c{case}.gguf"))
                again = tracemalloc.get_traced_memory()[1] - held
                assert again < MAX_PEAK_BYTES, (
                    f"case {case} (seed {SEED}) allocated {peak}, then {again} bytes"
                )
    finally:
        tracemalloc.stop()
    elapsed = time.perf_counter() - t0
    assert counts["error"] > CASES // 4 and counts["ok"] > 0, counts  # the mutator bites
    print(f"\nfuzz: {CASES} cases in {elapsed:.2f} s ({CASES / elapsed:.0f} cases/s), {counts}")


@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10_000), st.binary(min_size=1, max_size=8)), min_size=1, max_size=4
    ),
    cut=st.one_of(st.none(), st.integers(0, 10_000)),
)
def test_hypothesis_patched_headers(base, workdir, edits, cut):
    data, header_end, _ = base
    buf = bytearray(data)
    for pos, patch in edits:
        pos %= header_end
        buf[pos : pos + len(patch)] = patch
    if cut is not None:
        del buf[cut % len(buf) :]
    assert run_case(bytes(buf), str(workdir / "h.gguf")) in ("ok", "error")

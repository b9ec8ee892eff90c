"""trueno.trace._rows: a thread's span rows as int64, added in one C call (the recorder's hot
path), against the rows written the slow way (numpy from the same ints)."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from trueno.trace._rows import Rows

from trueno.trace import _rows, recorder

I64 = st.integers(-(2**63), 2**63 - 1)
ROW = st.tuples(st.integers(1, 2**62), *[I64] * (_rows.WIDTH - 1))


def as_rows(raw: bytes) -> np.ndarray:
    return np.frombuffer(raw, np.int64).reshape(-1, _rows.WIDTH)


@given(st.lists(ROW, max_size=40))
def test_rows_come_back_as_added(rows):
    buf = Rows(64)
    for row in rows:
        assert buf.add(*row) is False
    assert len(buf) == len(rows)
    got = as_rows(buf.take())
    np.testing.assert_array_equal(got, np.array(rows, np.int64).reshape(-1, _rows.WIDTH))
    assert len(buf) == 0 and buf.take() == b""


def test_add_says_when_full_and_refuses_more():
    buf = Rows(3)
    assert [buf.add(i, 0, 0, 0, 0, 0, 0) for i in (1, 2, 3)] == [False, False, True]
    with pytest.raises(OverflowError, match="full"):
        buf.add(4, 0, 0, 0, 0, 0, 0)
    assert as_rows(buf.take())[:, 0].tolist() == [1, 2, 3]
    assert buf.add(5, 0, 0, 0, 0, 0, 0) is False  # emptied by take


def test_id_zero_takes_a_fresh_id_and_the_parent_is_the_top_of_a_stack():
    buf = Rows(8)
    first = _rows.next_id()
    buf.add(0, [], 1, 0, 0, 0, 0)  # no open span: parent 0
    buf.add(0, [7, 9], 2, 0, 0, 0, 0)  # the innermost open span is the parent
    buf.add(42, 5, 3, 0, 0, 0, 0)  # an id and a parent given as ints are kept
    after = _rows.next_id()
    got = as_rows(buf.take())
    assert got[:, 0].tolist() == [first + 1, first + 2, 42]
    assert got[:, 1].tolist() == [0, 9, 5]
    assert after == first + 3  # one counter for both


@pytest.mark.parametrize(
    "row, error",
    [
        ((1, 0, 0, 0, 0, 0), TypeError),  # six fields
        ((1, 0, 0, 0, 0, 0, 0, 0), TypeError),  # eight
        ((1, 0, 0, 0.5, 0, 0, 0), TypeError),  # a float
        ((1, 0, 0, 0, 0, 2**63, 0), OverflowError),  # past int64
        ((1, ["x"], 0, 0, 0, 0, 0), TypeError),  # a stack whose top is not an int
        ((1, 0, None, 0, 0, 0, 0), TypeError),
    ],
)
def test_a_bad_row_raises_and_leaves_the_buffer_as_it_was(row, error):
    buf = Rows(4)
    buf.add(1, 0, 0, 0, 0, 0, 0)
    with pytest.raises(error):
        buf.add(*row)
    assert len(buf) == 1
    assert as_rows(buf.take()).tolist() == [[1, 0, 0, 0, 0, 0, 0]]


def test_numpy_integers_are_taken():
    buf = Rows(2)
    buf.add(np.int64(3), np.int32(1), np.uint8(2), 4, 5, np.int64(-6), 7)
    assert as_rows(buf.take()).tolist() == [[3, 1, 2, 4, 5, -6, 7]]


def test_a_bad_capacity_is_refused_and_an_unset_buffer_raises_not_crashes():
    for capacity in (0, -1, 2**62):
        with pytest.raises((ValueError, MemoryError, OverflowError)):
            Rows(capacity)
    bare = Rows.__new__(Rows)  # no __init__: no storage
    with pytest.raises(OverflowError):
        bare.add(1, 0, 0, 0, 0, 0, 0)
    assert bare.take() == b"" and len(bare) == 0


def test_threads_adding_while_another_takes_lose_and_repeat_nothing():
    """Every thread's rows reach the recorder once, though flushes of all the threads' buffers
    (a capture's end, another thread's flush) run while their owners add."""
    rec = recorder.start(capacity=1 << 16)
    try:

        def work(t: int) -> None:
            for i in range(2000):
                recorder.record_coded(t, 0, 0, i, 1, 0)
                if i % 300 == 0:
                    rec._flush_all()

        threads = [threading.Thread(target=work, args=(t,)) for t in range(4)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        rec._flush_all()
        data = rec.data[: rec.count]
        assert rec.count == 8000 and rec.dropped == 0
        assert len(np.unique(data[:, 0])) == 8000  # fresh ids, none repeated
        for t in range(4):
            assert sorted(data[data[:, 2] == t, 3].tolist()) == list(range(2000))
    finally:
        recorder.stop()

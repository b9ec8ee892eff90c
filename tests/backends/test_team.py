"""numba's OpenMP team (_team): the element-wise twins give the serial kernel's bits, Inf and
signed zeros included, and NaN where it gives NaN; the reductions' team (sum, dot,
sum_of_squares, norm_l1, max, min) agrees with numpy and with the pool's path. The team is
taken from TEAM_MIN on with two threads, never below it, never with one thread, never in a
fork()ed child (where numba would end the process) and not for PAUSE_S after a call that
stalled; the paths not taken compute the same results."""

from __future__ import annotations

import multiprocessing as mp
import sys
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

numba = pytest.importorskip("numba")

from trueno.backends.numba_kernels import (  # noqa: E402
    _par,
    _team,
    activations,
    libm,
    reductions,
    rowwise,
    stats,
)
from trueno.backends.numba_kernels import elementwise as ew  # noqa: E402

TEAM_TOOK = _team.took
PARAM_VALUES = {"scale": (0.75,), "clamp": (-0.5, 2.0), "lerp": (0.3,), "fma": ()}
N = ew.TEAM_MIN + 37  # an odd tail for the team's last thread
DTYPES = [np.float32, np.float64]
SPECIAL = [np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-40, -3.5, 2.5, 1e30]


def data(n: int, dtype, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal(n) * 4).astype(dtype)
    idx = rng.choice(n, size=min(n, 64 * len(SPECIAL)), replace=False)
    x[idx] = np.resize(np.array(SPECIAL, dtype=dtype), idx.size)
    return x


def same_bits(got: np.ndarray, want: np.ndarray) -> None:
    """The same bits but for NaNs' signs and payloads, which IEEE 754 leaves unspecified and
    which the serial and team code paths compiled for AVX2 do differ in (Zen 3: a silu of
    NaN gives -NaN one way and NaN the other); NaN where NaN, signed zeros included."""
    assert got.dtype == want.dtype and got.shape == want.shape
    got, want = got.ravel(), want.ravel()
    ints = np.uint32 if got.dtype == np.float32 else np.uint64
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan)
    bad = np.flatnonzero((got.view(ints) != want.view(ints)) & ~nan)
    first = bad[:5]
    assert bad.size == 0, f"{bad.size} differ, first at {first}: {got[first]} vs {want[first]}"


def serial(name: str):
    return getattr(ew, "_" + name)


def cases(dtype):
    """(name, arrays, params) for every kernel that has a team twin."""
    a, b, c = (data(N, dtype, s) for s in (1, 2, 3))
    for name in ew.UNARY:
        yield name, (a,), ()
    for name in ew.BINARY:
        yield name, (a, b), ()
        yield name, (a,), (np.full(1, dtype(-1.25)),)  # the 1-element (scalar) b
    for name, (_, n_arrays, _) in ew.PARAMS.items():
        yield name, (a, b, c)[:n_arrays], tuple(dtype(p) for p in PARAM_VALUES[name])


def activation_cases(dtype):
    a = data(N, dtype, 11)
    for name, run in activations.RUNS.items():
        params = (dtype(activations.PARAMS[name]),) if name in activations.PARAMS else ()
        yield name, run.team, getattr(activations, "_" + name), (a,), params


@pytest.mark.parametrize("dtype", DTYPES)
def test_team_twins_match_the_serial_kernels_bit_for_bit(dtype):
    checked = 0
    for name, arrays, params in cases(dtype):
        twin = ew.KERNELS[name].team
        assert twin is not None, name
        want = np.empty(N, dtype)
        serial(name)(want, *arrays, *params)
        got = np.full(N, np.nan, dtype)
        twin(got, *arrays, *params)
        same_bits(got, want)
        checked += 1
    assert checked == len(ew.KERNELS) + len(ew.BINARY) == 23 + 7
    for _name, twin, kern, arrays, params in activation_cases(dtype):
        want, got = np.empty(N, dtype), np.full(N, np.nan, dtype)
        with np.errstate(all="ignore"):
            kern(want, *arrays, *params)
            twin(got, *arrays, *params)
        same_bits(got, want)
        checked += 1
    assert checked == 30 + 10


@pytest.fixture
def routes(monkeypatch):
    """Two threads, and a record of the calls that took the pool's path instead of the team.
    No stall detection (a busy test machine would pause the team): tested on its own."""
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    monkeypatch.setattr(_team, "took", lambda seconds, items: None)
    monkeypatch.setattr(_team, "_paused_until", 0.0)  # a stall in an earlier test
    pooled = []
    real = ew.map_chunks

    def spy(kern, out, arrays, params, par_min):
        pooled.append(out.size)
        real(kern, out, arrays, params, par_min)

    monkeypatch.setattr(ew, "map_chunks", spy)
    return pooled


def test_warm_loads_every_twin_where_it_will_run(routes):
    ew.warm(np.float64)
    activations.warm(np.float64)
    rowwise.warm(np.float64)
    reductions.warm(np.float64)
    stats.warm(np.float64)
    assert routes == []  # every warm call went to a twin
    twins = [run.team for run in [*ew.KERNELS.values(), *activations.RUNS.values()]]
    twins += [*rowwise.TEAM.values(), rowwise.SCALE.team, rowwise.SUB2.team]
    twins += [rowwise._exp_shift_sum_team, *reductions.TEAM.values(), *stats.TEAM.values()]
    for twin in twins + [stats.AFFINE_DIV.team, reductions._argext_team]:
        assert any(sig[0].dtype == numba.float64 for sig in twin.signatures), twin


@pytest.mark.parametrize("dtype", DTYPES)
def test_registered_kernels_route_by_size_threads_and_fork(routes, monkeypatch, dtype):
    a, b = data(N, dtype, 4), data(N, dtype, 5)
    want = a + b
    same_bits(ew.KERNELS["add"](a, b), want)
    assert routes == []  # two threads, N >= TEAM_MIN: the team
    small = a[: ew.TEAM_MIN - 1]
    same_bits(ew.KERNELS["add"](small, b[: small.size]), want[: small.size])
    assert routes == [small.size]
    head = a[: ew.TEAM_MIN_MATH]  # exp's team starts earlier
    want_exp = np.empty_like(head)
    ew._exp(want_exp, head)
    same_bits(ew.KERNELS["exp"](head), want_exp)
    assert routes == [small.size]
    mid = np.abs(a[: ew.TEAM_MIN_COMPUTE])  # so does the "compute" ops' (sqrt ...)
    same_bits(ew.KERNELS["sqrt"](mid), np.sqrt(mid))
    assert routes == [small.size]
    same_bits(ew.KERNELS["sqrt"](mid[:-1]), np.sqrt(mid[:-1]))
    assert routes == [small.size, mid.size - 1]
    monkeypatch.setattr(_par, "FORKED", True)
    same_bits(ew.KERNELS["add"](a, b), want)
    assert routes == [small.size, mid.size - 1, N]
    monkeypatch.setattr(_par, "FORKED", False)
    monkeypatch.setattr(_par, "threads_now", lambda: 1)
    same_bits(ew.KERNELS["add"](a, b), want)
    assert routes == [small.size, mid.size - 1, N, N]


def test_a_stalled_team_call_pauses_the_team(routes, monkeypatch):
    monkeypatch.setattr(_team, "_paused_until", 0.0)
    monkeypatch.setattr(_team, "_pause_s", _team.PAUSE_S)
    stall = _team.STALL_S + N * _team.STALL_S_PER_ITEM + 1e-3  # a scheduler slice
    TEAM_TOOK(1e-4, N)  # work-sized: no stall
    assert _team.ok()
    TEAM_TOOK(stall, N)
    assert not _team.ok() and _team._pause_s == _team.PAUSE_S
    TEAM_TOOK(stall, N)  # stalls again soon after: a longer pause
    assert _team._pause_s == 2 * _team.PAUSE_S
    monkeypatch.setattr(_team, "_paused_until", time.perf_counter() - 60)  # long ago
    TEAM_TOOK(stall, N)
    assert _team._pause_s == _team.PAUSE_S
    a = data(N, np.float32, 7)
    same_bits(ew.KERNELS["neg"](a), -a)
    assert routes == [N]  # paused: the pool's path
    monkeypatch.setattr(_team, "_paused_until", time.perf_counter() - 1.0)  # pause over
    same_bits(ew.KERNELS["neg"](a), -a)
    assert routes == [N]


def test_scalar_operand_survives_the_pools_chunks(monkeypatch):
    """A 0-d b travels as a parameter: each of the pool's chunks sees all of it."""
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    n = 4 * max(ew.PAR_MIN, ew.PAR_MIN_MATH) + 3
    assert len(_par.bounds(n, ew.PAR_MIN)) > 1
    x = np.abs(data(n, np.float64, 6)) + 0.5
    np.testing.assert_allclose(libm.KERNELS["pow"](x, 1.5), x**1.5, rtol=1e-15)
    monkeypatch.setattr(_par, "FORKED", True)  # add's pool path, too
    same_bits(ew.KERNELS["add"](x, 2.0), x + 2.0)


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(1, 3 * ew.TEAM_MIN),
    seed=st.integers(0, 2**32 - 1),
    name=st.sampled_from(["add", "mul", "maximum", "copysign"]),
    scalar=st.booleans(),
)
def test_binary_kernels_match_numpy_at_any_length(n, seed, name, scalar):
    _par.threads_now, saved = (lambda: 2), _par.threads_now  # no fixtures under @given
    try:
        a = data(n, np.float32, seed)
        b = np.float32(-0.0) if scalar else data(n, np.float32, seed + 1)
        ref = {"add": np.add, "mul": np.multiply, "maximum": np.maximum, "copysign": np.copysign}
        with np.errstate(all="ignore"):  # inf - inf, overflow: numpy's bits, quietly
            same_bits(ew.KERNELS[name](a, b), ref[name](a, b))
    finally:
        _par.threads_now = saved


def _child_add(q) -> None:
    from trueno.backends.numba_kernels import _par as par
    from trueno.backends.numba_kernels import elementwise

    par.threads_now = lambda: 2
    x = np.ones(1 << 20, dtype=np.float32)
    q.put((par.FORKED, float(elementwise.KERNELS["add"](x, x).sum(dtype=np.float64))))


@pytest.mark.skipif(sys.platform != "linux", reason="fork start method")
def test_a_forked_child_computes_after_the_parent_used_the_team(monkeypatch):
    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    x = np.ones(1 << 20, dtype=np.float32)
    assert ew.KERNELS["add"](x, x).sum() == 2 * x.size  # the parent's OpenMP team is up
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    p = ctx.Process(target=_child_add, args=(q,))
    p.start()
    p.join(120)
    if p.is_alive():
        p.kill()
    assert p.exitcode == 0
    assert q.get(timeout=5) == (True, float(2 * x.size))


SUMS = {
    "sum": lambda a, b: np.sum(a, dtype=np.float64),
    "dot": lambda a, b: np.dot(a.astype(np.float64), b),
    "sum_of_squares": lambda a, b: np.sum(a.astype(np.float64) ** 2),
    "norm_l1": lambda a, b: np.sum(np.abs(a), dtype=np.float64),
}


@pytest.mark.parametrize("dtype", DTYPES)
def test_team_reductions_match_numpy_and_the_pools_path(routes, monkeypatch, dtype):
    pooled = []
    real = _par.reduce_chunks  # the pool's path of _team.reduce
    monkeypatch.setattr(
        _par,
        "reduce_chunks",
        lambda k, arrays, *rest: pooled.append(1) or real(k, arrays, *rest),
    )
    rng = np.random.default_rng(10)
    a, b = (rng.standard_normal(N) * 3).astype(dtype), (rng.standard_normal(N) * 3).astype(dtype)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    K = reductions.KERNELS
    for name, ref in SUMS.items():
        args = (a, b) if name == "dot" else (a,)
        team = K[name](*args)
        assert pooled == [] and type(team) is dtype, name  # the team, the input's dtype
        monkeypatch.setattr(_par, "FORKED", True)
        pool = K[name](*args)
        monkeypatch.setattr(_par, "FORKED", False)
        assert pooled == [1], name
        pooled.clear()
        scale = np.abs(a.astype(np.float64) * (b if name == "dot" else 1)).sum()  # cancellation
        np.testing.assert_allclose(team, ref(a, b), atol=rtol * scale, rtol=0, err_msg=name)
        np.testing.assert_allclose(pool, team, atol=rtol * scale, rtol=0, err_msg=name)
    for name, ref in (("max", np.max), ("min", np.min)):
        assert K[name](a) == ref(a) and pooled == [], name  # exact
        y = a.copy()
        y[N - 5] = np.nan  # in the last thread's chunk: NaN propagates, as numpy's
        assert np.isnan(K[name](y)), name
    assert pooled == []


@pytest.mark.parametrize("dtype", DTYPES)
def test_row_kernels_twins_match_the_serial_kernels_bit_for_bit(dtype):
    x = data(64 * 4097, dtype, 12).reshape(64, 4097)
    x[3] = 1.5  # a constant row: variance 0
    w, b = data(4097, dtype, 13), data(4097, dtype, 14)
    t = dtype
    params = {
        rowwise._softmax_rows: [()],
        rowwise._log_softmax_rows: [()],
        rowwise._layer_norm_rows: [(w, b, t(1e-5), True), (w[:1], b[:1], t(1e-5), False)],
        rowwise._rms_norm_rows: [(w, t(1e-6), True), (w[:1], t(1e-6), False)],
    }
    assert set(params) == set(rowwise.TEAM)
    for kern, cases in params.items():
        for p in cases:
            want, got = np.empty_like(x), np.full_like(x, np.nan)
            with np.errstate(all="ignore"):
                kern(want, x, *p)
                rowwise.TEAM[kern](got, x, *p)
            same_bits(got, want)


@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
def test_one_long_row_on_the_team_the_pool_and_one_thread(routes, monkeypatch, name):
    x = (np.random.default_rng(15).standard_normal(rowwise.ROW_TEAM_MIN * 4 + 37) * 4).astype(
        np.float32
    )
    x[-3] = 30.0  # the max, in the last thread's chunk
    ref = x.astype(np.float64) - x.max()
    lse = np.log(np.exp(ref).sum())
    want = ref - lse if name == "log_softmax" else np.exp(ref - lse)
    run = getattr(rowwise, name)
    assert rowwise._one_row(x.reshape(1, -1)) == "team"
    team = run(x)
    monkeypatch.setattr(rowwise, "LONG_ROW_MIN", 1 << 16)
    monkeypatch.setattr(_par, "FORKED", True)
    assert rowwise._one_row(x.reshape(1, -1)) == "pool"
    pool = run(x)
    monkeypatch.setattr(_par, "threads_now", lambda: 1)
    assert rowwise._one_row(x.reshape(1, -1)) is None
    one = run(x)
    for got in (team, pool, one):
        assert got.dtype == np.float32
        np.testing.assert_allclose(
            got, want, rtol=2e-6, atol=1e-6 if name == "log_softmax" else 1e-12
        )


@pytest.mark.parametrize("dtype", DTYPES)
def test_team_statistics_match_numpy_and_the_pools_path(routes, monkeypatch, dtype):
    rng = np.random.default_rng(16)
    a = (rng.standard_normal(N) * 3 + 5).astype(dtype)
    b = (a * 0.5 + rng.standard_normal(N)).astype(dtype)
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    rtol = 2e-5 if dtype == np.float32 else 1e-12
    refs = {
        "mean": (lambda: stats.mean(a), a64.mean()),
        "variance": (lambda: stats.variance(a), a64.var()),
        "covariance": (lambda: stats.covariance(a, b), np.cov(a64, b64, bias=True)[0, 1]),
        "correlation": (lambda: stats.correlation(a, b), np.corrcoef(a64, b64)[0, 1]),
        "zscore": (lambda: stats.zscore(a), (a64 - a64.mean()) / a64.std()),
    }
    pooled = []
    for mod, fn in ((_par, "reduce_chunks"), (ew, "map_chunks")):  # the pool's paths
        real = getattr(mod, fn)
        spy = lambda *args, real=real: pooled.append(1) or real(*args)  # noqa: E731
        monkeypatch.setattr(mod, fn, spy)
    for name, (run, want) in refs.items():
        team = run()
        assert pooled == [], name  # every pass on the team
        monkeypatch.setattr(_par, "FORKED", True)
        pool = run()
        monkeypatch.setattr(_par, "FORKED", False)
        assert pooled, name
        pooled.clear()
        for got in (team, pool):
            assert np.asarray(got).dtype == dtype, name
            np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol, err_msg=name)


@pytest.mark.parametrize("dtype", DTYPES)
def test_team_arg_extrema_take_the_first_index_and_the_first_nan(routes, dtype):
    x = (np.random.default_rng(17).standard_normal(N) * 3).astype(dtype)
    x[[100, N - 100]] = 50.0  # a tie across the two threads' chunks: the first wins
    x[[200, N - 200]] = -50.0
    assert reductions.argmax(x) == np.argmax(x) == 100
    assert reductions.argmin(x) == np.argmin(x) == 200
    y = x.copy()
    y[N - 7] = np.nan  # NaN in the last chunk beats the max in the first
    assert reductions.argmax(y) == np.argmax(y) == N - 7
    y[N - 9] = np.nan
    y[5] = np.nan  # the first NaN wins
    assert reductions.argmin(y) == np.argmin(y) == 5
    assert reductions._argext_team.signatures  # the team ran


def test_calls_from_several_threads_at_once(monkeypatch):
    """Each calling thread opens its own team (oversubscribed, so the stall guard may pause
    them): every result is still right."""
    import threading

    monkeypatch.setattr(_par, "threads_now", lambda: 2)
    monkeypatch.setattr(_team, "_paused_until", 0.0)
    a, b = data(N, np.float32, 18), data(N, np.float32, 19)
    c = np.random.default_rng(20).random(N).astype(np.float32)
    want, errors = a + b, []

    def work():
        for _ in range(50):
            if not np.array_equal(ew.KERNELS["add"](a, b), want, equal_nan=True):
                errors.append("add")
            if reductions.KERNELS["max"](c) != c.max():
                errors.append("max")

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert not any(t.is_alive() for t in threads) and errors == []

"""trueno.device without a GPU: host values pass through to_host, and the opt-in host
fallback for ops the GPU backend lacks (raises unless allowed, then runs the reference and
is traced)."""

from __future__ import annotations

import numpy as np
import pytest

from trueno import trace
from trueno.backends import cupy_backend, numpy_backend
from trueno.device import (
    FALLBACK_BACKEND,
    HostFallback,
    allow_host_fallback,
    host_fallback_allowed,
    is_device_array,
    to_host,
)
from trueno.errors import UnsupportedError


def test_host_values_pass_through_to_host():
    a = np.arange(3.0)
    assert to_host(a) is a
    assert not is_device_array(a)


def test_ops_without_a_gpu_kernel_resolve_to_a_guarded_host_fallback():
    fb = cupy_backend.KERNELS.get("clamp")
    assert isinstance(fb, HostFallback) and fb.name == "clamp"
    assert cupy_backend.KERNELS.get("no_such_op") is None


def test_fallback_raises_unless_allowed():
    fb = HostFallback("clamp")
    with pytest.raises(UnsupportedError, match="'clamp' has no cupy kernel.*allow_host_fallback"):
        fb(np.arange(4.0), 1.0, 2.0)


def test_allowed_fallback_runs_the_reference_and_is_traced():
    x = np.linspace(-3, 3, 7)
    assert not host_fallback_allowed()
    with trace.capture() as t, allow_host_fallback():
        assert host_fallback_allowed()
        got = HostFallback("clamp")(x, -1.0, 1.0)
    assert not host_fallback_allowed()
    np.testing.assert_array_equal(got, numpy_backend.KERNELS["clamp"](x, -1.0, 1.0))
    spans = [s for s in t.spans if s["category"] == "fallback"]
    assert [(s["name"], s["backend"]) for s in spans] == [("clamp", FALLBACK_BACKEND)]
    assert spans[0]["attrs"]["wanted"] == "cupy"


def test_allow_host_fallback_nests_and_can_be_turned_off():
    with allow_host_fallback():
        with allow_host_fallback(False):
            assert not host_fallback_allowed()
        assert host_fallback_allowed()

"""``Vector`` and ``Matrix``: thin immutable wrappers over a float ndarray with trueno's method
names (``Vector.from_slice(...).dot(...)``). Every method calls the functional op, so dispatch,
tracing and errors are the same as ``trueno.dot`` etc."""

from __future__ import annotations

import numpy as np

from trueno import ops
from trueno.errors import ShapeError
from trueno.ops._validate import as_float_array


class Vector:
    """A 1-D float32/float64 vector."""

    __slots__ = ("data",)

    def __init__(self, data) -> None:
        a = as_float_array(data, "Vector")
        if a.ndim != 1:
            raise ShapeError(f"Vector: expected 1-D data, got {a.ndim}-D with shape {a.shape}")
        self.data = a

    @classmethod
    def from_slice(cls, values, dtype=np.float32) -> Vector:
        """A vector holding a copy of ``values`` (float32 unless told)."""
        return cls(np.array(values, dtype=dtype).reshape(-1))

    @classmethod
    def zeros(cls, n: int, dtype=np.float32) -> Vector:
        return cls(np.zeros(n, dtype=dtype))

    def __len__(self) -> int:
        return self.data.shape[0]

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"Vector({self.data.tolist()!r}, dtype={self.data.dtype})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Vector) and np.array_equal(self.data, other.data)

    __hash__ = None

    def as_slice(self) -> np.ndarray:
        return self.data

    def to_numpy(self) -> np.ndarray:
        return self.data.copy()

    @property
    def dtype(self):
        return self.data.dtype

    def _wrap(self, out) -> Vector:
        return Vector(out)

    # element-wise
    def add(self, other) -> Vector:
        return Vector(ops.add(self.data, _raw(other)))

    def sub(self, other) -> Vector:
        return Vector(ops.sub(self.data, _raw(other)))

    def mul(self, other) -> Vector:
        return Vector(ops.mul(self.data, _raw(other)))

    def div(self, other) -> Vector:
        return Vector(ops.div(self.data, _raw(other)))

    def scale(self, s: float) -> Vector:
        return Vector(ops.scale(self.data, s))

    def clamp(self, lo: float, hi: float) -> Vector:
        return Vector(ops.clamp(self.data, lo, hi))

    def lerp(self, other, t: float) -> Vector:
        return Vector(ops.lerp(self.data, _raw(other), t))

    def fma(self, b, c) -> Vector:
        return Vector(ops.fma(self.data, _raw(b), _raw(c)))

    __add__, __sub__, __mul__, __truediv__ = add, sub, mul, div

    def __neg__(self) -> Vector:
        return Vector(ops.neg(self.data))

    # reductions and statistics
    def dot(self, other) -> float:
        return ops.dot(self.data, _raw(other))

    def sum(self) -> float:
        return ops.sum(self.data)

    def sum_kahan(self) -> float:
        return ops.sum_kahan(self.data)

    def sum_of_squares(self) -> float:
        return ops.sum_of_squares(self.data)

    def max(self) -> float:
        return ops.max(self.data)

    def min(self) -> float:
        return ops.min(self.data)

    def argmax(self) -> int:
        return ops.argmax(self.data)

    def argmin(self) -> int:
        return ops.argmin(self.data)

    def norm_l1(self) -> float:
        return ops.norm_l1(self.data)

    def norm_l2(self) -> float:
        return ops.norm_l2(self.data)

    def norm_linf(self) -> float:
        return ops.norm_linf(self.data)

    def normalize(self) -> Vector:
        return Vector(ops.normalize(self.data))

    def mean(self) -> float:
        return ops.mean(self.data)

    def variance(self, ddof: int = 0) -> float:
        return ops.variance(self.data, ddof)

    def stddev(self, ddof: int = 0) -> float:
        return ops.stddev(self.data, ddof)

    def covariance(self, other, ddof: int = 0) -> float:
        return ops.covariance(self.data, _raw(other), ddof)

    def correlation(self, other) -> float:
        return ops.correlation(self.data, _raw(other))

    def zscore(self) -> Vector:
        return Vector(ops.zscore(self.data))

    def minmax_normalize(self) -> Vector:
        return Vector(ops.minmax_normalize(self.data))

    # activations and row-wise
    def softmax(self) -> Vector:
        return Vector(ops.softmax(self.data))

    def log_softmax(self) -> Vector:
        return Vector(ops.log_softmax(self.data))

    def layer_norm(self, gamma=None, beta=None, eps: float = 1e-5) -> Vector:
        return Vector(ops.layer_norm(self.data, _raw(gamma), _raw(beta), eps))

    def rms_norm(self, weight=None, eps: float = 1e-6) -> Vector:
        return Vector(ops.rms_norm(self.data, _raw(weight), eps))

    def gelu(self, approximate: str = "tanh") -> Vector:
        return Vector(ops.gelu(self.data, approximate))

    def leaky_relu(self, alpha: float = 0.01) -> Vector:
        return Vector(ops.leaky_relu(self.data, alpha))

    def elu(self, alpha: float = 1.0) -> Vector:
        return Vector(ops.elu(self.data, alpha))


_UNARY = (
    "abs",
    "neg",
    "signum",
    "recip",
    "sqrt",
    "exp",
    "ln",
    "log2",
    "log10",
    "sin",
    "cos",
    "tan",
    "asin",
    "acos",
    "atan",
    "sinh",
    "cosh",
    "tanh",
    "asinh",
    "acosh",
    "atanh",
    "floor",
    "ceil",
    "round",
    "trunc",
    "fract",
    "relu",
    "selu",
    "sigmoid",
    "silu",
    "swish",
    "hardswish",
    "mish",
)
_BINARY = ("minimum", "maximum", "copysign", "pow")


def _unary_method(name):
    fn = getattr(ops, name)

    def method(self) -> Vector:
        return Vector(fn(self.data))

    method.__name__ = name
    method.__doc__ = fn.__doc__
    return method


def _binary_method(name):
    fn = getattr(ops, name)

    def method(self, other) -> Vector:
        return Vector(fn(self.data, _raw(other)))

    method.__name__ = name
    method.__doc__ = fn.__doc__
    return method


for _n in _UNARY:
    setattr(Vector, _n, _unary_method(_n))
for _n in _BINARY:
    setattr(Vector, _n, _binary_method(_n))
Vector.clip = Vector.clamp


class Matrix:
    """A 2-D float32/float64 matrix (row-major)."""

    __slots__ = ("data",)

    def __init__(self, data) -> None:
        a = as_float_array(data, "Matrix")
        if a.ndim != 2:
            raise ShapeError(f"Matrix: expected 2-D data, got {a.ndim}-D with shape {a.shape}")
        self.data = a

    @classmethod
    def from_vec(cls, rows: int, cols: int, values, dtype=np.float32) -> Matrix:
        """A rows x cols matrix from ``rows * cols`` values in row-major order."""
        flat = np.array(values, dtype=dtype).reshape(-1)
        if flat.size != rows * cols:
            from trueno.errors import SizeMismatchError

            raise SizeMismatchError("Matrix.from_vec", rows * cols, flat.size)
        return cls(flat.reshape(rows, cols))

    @classmethod
    def zeros(cls, rows: int, cols: int, dtype=np.float32) -> Matrix:
        return cls(np.zeros((rows, cols), dtype=dtype))

    @classmethod
    def identity(cls, n: int, dtype=np.float32) -> Matrix:
        return cls(np.eye(n, dtype=dtype))

    @property
    def shape(self) -> tuple[int, int]:
        return self.data.shape

    @property
    def rows(self) -> int:
        return self.data.shape[0]

    @property
    def cols(self) -> int:
        return self.data.shape[1]

    def get(self, row: int, col: int) -> float:
        return self.data[row, col]

    def __array__(self, dtype=None, copy=None):
        return self.data if dtype is None else self.data.astype(dtype)

    def __repr__(self) -> str:
        return f"Matrix(shape={self.data.shape}, dtype={self.data.dtype})"

    def __eq__(self, other) -> bool:
        return isinstance(other, Matrix) and np.array_equal(self.data, other.data)

    __hash__ = None

    def to_numpy(self) -> np.ndarray:
        return self.data.copy()

    def matmul(self, other) -> Matrix:
        return Matrix(ops.matmul(self.data, _raw(other)))

    __matmul__ = matmul

    def transpose(self) -> Matrix:
        return Matrix(ops.transpose(self.data))

    def matvec(self, v) -> Vector:
        return Vector(ops.matvec(self.data, _raw(v)))

    def vecmat(self, v) -> Vector:
        """v @ self."""
        return Vector(ops.vecmat(_raw(v), self.data))

    def convolve2d(self, kernel) -> Matrix:
        return Matrix(ops.convolve2d(self.data, _raw(kernel)))

    def eigh(self) -> tuple[Vector, Matrix]:
        """(eigenvalues descending, eigenvectors as columns) of this symmetric matrix."""
        w, v = ops.eigh(self.data)
        return Vector(w), Matrix(v)

    def softmax(self, axis: int = -1) -> Matrix:
        return Matrix(ops.softmax(self.data, axis))

    def layer_norm(self, gamma=None, beta=None, eps: float = 1e-5) -> Matrix:
        return Matrix(ops.layer_norm(self.data, _raw(gamma), _raw(beta), eps))

    def rms_norm(self, weight=None, eps: float = 1e-6) -> Matrix:
        return Matrix(ops.rms_norm(self.data, _raw(weight), eps))


def _raw(x):
    return x.data if isinstance(x, (Vector, Matrix)) else x

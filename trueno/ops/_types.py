"""The types the op functions are annotated with (imported under TYPE_CHECKING only).

An op takes array-likes (numbers, lists, numpy arrays, and cupy and dask arrays, which pass
through untouched) and gives a result of its input's kind: a numpy array (a numpy scalar for
a reduction) for host data, a cupy array for device data, a dask array for a dask input.
numpy's ``ArrayLike`` covers neither cupy nor dask arrays and its stubs cannot say "of the
input's kind", so these names are Any to the checker: they name the contract in every
signature (scalar parameters are checked as what they are), and the parity tests check the
contract per backend.
"""

from __future__ import annotations

from typing import Any, TypeAlias

ArrayLike: TypeAlias = Any  # what np.asarray takes, or a cupy / dask array
Array: TypeAlias = Any  # np.ndarray for host input; a cupy / dask array for theirs
Scalar: TypeAlias = Any  # np.float32 / np.float64 for host input; a 0-d array on a device

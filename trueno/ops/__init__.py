"""The public functional API: every op, declared once in :mod:`trueno.opspec`."""

from trueno.ops.activations import *  # noqa: F403
from trueno.ops.activations import __all__ as _act
from trueno.ops.elementwise import *  # noqa: F403
from trueno.ops.elementwise import __all__ as _elem
from trueno.ops.matrix import *  # noqa: F403
from trueno.ops.matrix import __all__ as _mat
from trueno.ops.reductions import *  # noqa: F403
from trueno.ops.reductions import __all__ as _red
from trueno.ops.stats import *  # noqa: F403
from trueno.ops.stats import __all__ as _stats
from trueno.opspec import OPS, OpSpec

__all__ = ["OPS", "OpSpec", *_elem, *_red, *_stats, *_act, *_mat]

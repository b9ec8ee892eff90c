"""The public functional API: every op, declared once in :mod:`trueno.ops.spec`."""

from trueno.ops.elementwise import add, exp
from trueno.ops.spec import OPS, OpSpec

__all__ = ["OPS", "OpSpec", "add", "exp"]

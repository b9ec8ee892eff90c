"""Typed exceptions. Every error trueno raises derives from :class:`TruenoError` and, where one
fits, from the builtin a caller would expect (``ValueError``, ``TypeError``, ``ImportError``)."""

from __future__ import annotations


class TruenoError(Exception):
    """Base of every trueno error."""


class ShapeError(TruenoError, ValueError):
    """An input has the wrong number of dimensions or an incompatible shape."""


class SizeMismatchError(ShapeError):
    """Two inputs that must agree in size do not (message names expected vs actual)."""

    def __init__(self, op: str, expected, actual):
        self.op, self.expected, self.actual = op, expected, actual
        super().__init__(f"{op}: size mismatch, expected {expected}, got {actual}")


class ArgumentError(TruenoError, ValueError):
    """An argument's value is outside what the function takes (an unknown mode name)."""


class EmptyInputError(TruenoError, ValueError):
    """An op that needs at least one element got none."""

    def __init__(self, op: str):
        self.op = op
        super().__init__(f"{op}: empty input (needs at least one element)")


class DivisionByZeroError(TruenoError, ZeroDivisionError, ValueError):
    """An op would divide by zero (normalize of a zero vector, minmax of a constant vector)."""


class DTypeError(TruenoError, TypeError):
    """An input has a dtype the op does not support."""


class BackendUnavailableError(TruenoError, ImportError):
    """An explicitly requested backend cannot run here (missing package or device)."""


class UnsupportedError(TruenoError, NotImplementedError):
    """A feature (GGML type, architecture, op on a backend) is not supported."""


class ConfigError(TruenoError, ValueError):
    """A configuration value (environment variable, budget file) is invalid."""


class GGUFError(TruenoError, ValueError):
    """A GGUF file is malformed, truncated or hostile. The message names field, offset, value."""


class QuantError(TruenoError, ValueError):
    """Quantized block data does not match the GGML type or shape it is used with."""


class ModelError(TruenoError, ValueError):
    """A model file cannot be used (missing tensor, unsupported arch, bad metadata)."""


class ContextLengthError(ModelError):
    """The prompt plus requested tokens do not fit in the context window."""


class TokenizerError(TruenoError, ValueError):
    """Input the tokenizer cannot handle (a token id outside the vocabulary, a byte with no
    token and no unknown token)."""

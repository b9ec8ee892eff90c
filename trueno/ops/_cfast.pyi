from collections.abc import Callable
from typing import Any

class FastOp:
    """An op function with its common call decided in C (trueno/ops/_cfast.c)."""

    bound: int
    ref: Callable[..., Any]
    general: Callable[..., Any]
    def __init__(
        self,
        ref: Callable[..., Any],
        general: Callable[..., Any],
        traced: Callable[..., Any],
        flags: dict[str, Any],
        arity: int,
        empty_ok: bool = ...,
        floats: int = ...,
        defaults: tuple[float, ...] = ...,
    ) -> None: ...
    def __call__(self, *args: Any, **kwargs: Any) -> Any: ...

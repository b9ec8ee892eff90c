"""A rule's outcome: pass, fail, "not measured", warning (a violation that does not fail the
run) or skipped (a disabled assertion), with what was measured and the limit."""

from __future__ import annotations

from dataclasses import dataclass

PASS, FAIL, NOT_MEASURED = "pass", "fail", "not measured"
WARN, SKIPPED = "warning", "skipped"


@dataclass
class Result:
    kind: str
    label: str
    status: str
    measured: object = None
    limit: object = None
    message: str = ""

    def to_dict(self) -> dict:
        return dict(self.__dict__)

    def soften(self) -> Result:
        """A violation that is reported but does not fail the run becomes a warning."""
        if self.status == FAIL:
            self.status = WARN
        return self


def check_limits(kind, label, value, lo=None, hi=None, unit="", scale=1.0) -> Result:
    if value is None:
        return Result(kind, label, NOT_MEASURED, message="metric not in this trace")
    shown = value / scale
    limit = {k: v for k, v in (("min", lo), ("max", hi)) if v is not None}
    if hi is not None and shown > hi:
        return Result(kind, label, FAIL, shown, limit, f"{shown:.4g}{unit} > max {hi}{unit}")
    if lo is not None and shown < lo:
        return Result(kind, label, FAIL, shown, limit, f"{shown:.4g}{unit} < min {lo}{unit}")
    return Result(kind, label, PASS, shown, limit, f"{shown:.4g}{unit} within {limit}")

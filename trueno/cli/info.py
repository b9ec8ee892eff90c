"""``trueno info``: what this machine can do (CPU, ISA, cores, numba, GPUs) and the backend
AUTO dispatch picks for each op class at sizes 1e2 .. 1e7."""

from __future__ import annotations

import argparse
import json

SIZES = [10**e for e in range(2, 8)]
EXAMPLE_OP = {  # one representative op per threshold class
    "elementwise": "add",
    "compute": "sqrt",
    "fma": "fma",
    "clip": "relu",
    "transcendental": "exp",
    "trig": "sin",
    "trig64": "sin (float64)",
    "log": "ln",
    "log64": "ln (float64)",
    "hyperbolic": "sinh",
    "fused": "gelu",
    "libm": "log2",
    "reduction": "sum",
    "blas1": "dot",
    "sumsq": "norm_l2",
    "extrema": "max",
    "argextrema": "argmax",
    "rowwise": "softmax",
    "stats": "variance",
    "matrix": "matmul",
    "conv": "convolve2d",
    "gather": "embedding_lookup",
    "transpose": "transpose",
    "never": "eigh",
}


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="capabilities and the backend chosen per op size")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=handler)


def dispatch_table() -> dict[str, dict[int, str]]:
    """{op class: {size: backend}} as AUTO would pick for host arrays."""
    import numpy as np

    from trueno import dispatch
    from trueno.opspec import OPS

    f64 = (np.empty(0, np.float64),)  # a float64 operand: the classes of float64 calls
    table = {}
    for kind in dispatch.THRESHOLDS:
        spec = next((s for s in OPS.values() if s.kind == kind), None)
        args: tuple = ()
        if spec is None:
            spec, args = next((s for s in OPS.values() if s.kind64 == kind), None), f64
        if spec is None:
            continue
        table[kind] = {n: dispatch.choose(spec, n, args).value for n in SIZES}
    return table


def quant_line(report) -> str:
    """The quant kernels' ISA level: chosen (and whether TRUENO_QUANT_ISA forced it), what the
    host runs, which levels have kernels; or why the forced level was refused."""
    if report.error:
        return f"refused: {report.error}"
    how = "forced by TRUENO_QUANT_ISA" if report.forced else "best the host runs"
    return (
        f"{report.chosen} ({how}; host: {', '.join(report.host)}; "
        f"kernels: {', '.join(report.kernels)})"
    )


def amx_report() -> dict:
    """Whether the int8 GEMM may run on AMX tiles here, why not, and whether it does now."""
    from trueno.quant import amx

    why = amx.missing()
    return {"available": why is None, "why_not": why, "on": why is None and amx.enabled()}


def amx_line(report: dict) -> str:
    if not report["available"]:
        return f"unavailable ({report['why_not']})"
    if report["on"]:
        return "on: the int8 GEMM runs on AMX tiles (TRUENO_QUANT_AMX=1)"
    return "available, off (TRUENO_QUANT_AMX=1 runs the int8 GEMM on AMX tiles)"


def handler(args: argparse.Namespace) -> int:
    import trueno
    from trueno import dispatch
    from trueno.quant.kernels import isa_report

    caps = trueno.capabilities()
    table = dispatch_table()
    quant = isa_report()
    amx = amx_report()
    forced = dispatch.forced_backend()
    if args.json:
        print(
            json.dumps(
                {
                    "version": trueno.__version__,
                    "capabilities": caps.to_dict(),
                    "forced_backend": forced.value if forced else None,
                    "quant_isa": quant.to_dict(),
                    "quant_amx": amx,
                    "thresholds": dispatch.THRESHOLDS,
                    "dispatch": {k: {str(n): b for n, b in v.items()} for k, v in table.items()},
                },
                indent=2,
            )
        )
        return 0
    isa = " ".join(k for k, v in caps.isa.items() if v) or "(none detected)"
    print(f"trueno {trueno.__version__}")
    print(f"cpu        {caps.cpu_name} ({caps.machine}); ISA: {isa}")
    print(f"cores      {caps.physical_cores} physical, {caps.logical_cores} logical")
    numba = (
        f"{caps.numba_version} (threading layer {caps.numba_threading_layer}, "
        f"{caps.numba_threads} threads)"
        if caps.numba_version
        else "not installed"
    )
    print(f"numba      {numba}")
    if caps.gpus:
        for g in caps.gpus:
            print(
                f"gpu {g.index}      {g.name}, {g.memory_bytes / 2**30:.1f} GiB, "
                f"compute {g.compute_capability} (cupy {caps.cupy_version})"
            )
    else:
        print(f"gpu        none ({caps.gpu_error})")
    print(f"backend    {'forced: ' + forced.value if forced else 'auto'}")
    print(f"quant ISA  {quant_line(quant)}")
    print(f"quant AMX  {amx_line(amx)}")
    print()
    head = ["op class", "example"] + [f"1e{len(str(n)) - 1}" for n in SIZES]
    rows = [
        [kind, EXAMPLE_OP.get(kind, "")] + [picks[n] for n in SIZES]
        for kind, picks in table.items()
    ]
    widths = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    for r in [head] + rows:
        print("  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    return 0

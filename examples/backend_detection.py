"""What this machine can do, which backend trueno picks per op size, and a small op on every
available backend with identical results.

Run: python examples/backend_detection.py
"""

import numpy as np

import trueno
from trueno import backends, dispatch
from trueno.ops import OPS


def main() -> None:
    caps = trueno.capabilities()
    isa = [k for k, v in caps.isa.items() if v]
    print(
        f"CPU {caps.cpu_name} ({caps.machine}), {caps.physical_cores} physical / "
        f"{caps.logical_cores} logical cores, ISA: {' '.join(isa)}"
    )
    print(f"numba {caps.numba_version}, GPUs: {[g.name for g in caps.gpus] or 'none'}")
    print("\nbackend chosen per op and input size (AUTO):")
    for op in ("add", "exp", "sum", "softmax", "matmul"):
        picks = [dispatch.choose(OPS[op], n).value for n in (10, 1_000, 100_000, 10_000_000)]
        print(f"  {op:<8} n=1e1 {picks[0]:<6} 1e3 {picks[1]:<6} 1e5 {picks[2]:<6} 1e7 {picks[3]}")
    x = np.linspace(-2, 2, 1000, dtype=np.float32)
    results = {}
    for b in (trueno.Backend.NUMPY, trueno.Backend.NUMBA, trueno.Backend.CUPY):
        if not backends.is_available(b):
            print(f"  {b.value}: not available here")
            continue
        with trueno.use_backend(b.value):
            results[b.value] = trueno.to_host(trueno.add(x, x))
    ref = results["numpy"]
    for name, out in results.items():
        same = np.array_equal(out, ref)
        print(f"  add on {name:<6}: {'identical to numpy' if same else 'DIFFERS'}")
        assert same


if __name__ == "__main__":
    main()

"""trueno on Dask arrays: lazy graphs over a 2-worker LocalCluster, one trace across it.

Run: python examples/dask_ops.py   (needs the dask extra: pip install 'trueno[dask]')
For a real cluster, replace the LocalCluster by Client("tcp://scheduler-host:8786").
"""

import numpy as np

import trueno  # first, so the trace's startup is trueno's own import, not dask's


def main() -> None:
    import dask.array as da
    from distributed import Client, LocalCluster

    from trueno import dask as trueno_dask  # imports dask

    with (
        LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        ) as cluster,
        Client(cluster) as client,
    ):
        trueno_dask.register(client, warm=False)  # threads within the cores, BLAS at 1
        rng = np.random.default_rng(0)
        x_np = rng.standard_normal((8192, 256)).astype(np.float32)  # 8 MB, 8 row chunks
        x = da.from_array(x_np, chunks=(1024, 256))

        y = trueno.softmax(x)  # lazy: a graph, nothing has run yet
        print(f"softmax of {x.shape} in {x.npartitions} chunks -> {type(y).__name__} (lazy)")
        with trueno.trace.capture() as t:
            results = {
                "softmax": (trueno.softmax(x), trueno.softmax(x_np)),
                "gelu": (trueno.gelu(x), trueno.gelu(x_np)),
                "layer_norm": (trueno.layer_norm(x), trueno.layer_norm(x_np)),
                "sum": (trueno.sum(x), np.sum(x_np, dtype=np.float64)),
                "norm_l2": (trueno.norm_l2(x), np.linalg.norm(x_np.astype(np.float64))),
                "argmax": (trueno.argmax(x), np.argmax(x_np)),
            }
            computed = client.compute([lazy for lazy, _ in results.values()], sync=True)
        for (name, (_, want)), got in zip(results.items(), computed, strict=True):
            ok = np.allclose(got, want, rtol=1e-4, atol=1e-5)
            print(f"{name:<10} matches numpy: {ok}")
        workers = sorted({s["process"] for s in t.spans if s.get("worker")})
        chunks = sum(s["name"].startswith("dask.chunk") for s in t.spans)
        print(f"one trace: {len(t.spans)} spans from {len(workers)} workers, {chunks} chunk spans")


if __name__ == "__main__":
    main()

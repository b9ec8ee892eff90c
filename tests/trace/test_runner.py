"""`trueno trace run` machinery: an unchanged program traced with its threads and children."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from trueno.trace import boot, runner


def test_program_threads_and_child_process_are_traced(real_trace):
    runs = real_trace["runs"]
    assert len(runs) == 2
    for run in runs:
        assert run["exit_code"] == 0 and run["processes"] == 2 and run["dropped"] == 0
        assert run["wall_ns"] > 0 and run["startup_ns"] > 0
        assert run["max_rss_bytes"] > 10e6 and run["cpu_user_s"] > 0
        assert run["syscalls"]["source"] == "proc" and run["syscalls"]["calls"]["read"]["calls"]
    spans = [s for s in real_trace["spans"] if s["run"] == 0]
    pids = {s["pid"] for s in spans}
    assert len(pids) == 2  # parent and child
    for pid in pids:
        names = [s["name"] for s in spans if s["pid"] == pid]
        assert names.count("add") == 10 and names.count("mul") == 5
    ids = {s["id"] for s in real_trace["spans"]}
    assert len(ids) == len(real_trace["spans"])  # unique after merging processes and runs
    by_id = {s["id"]: s for s in real_trace["spans"]}
    for s in spans:
        if s["name"] == "exp":
            assert by_id[s["parent"]]["name"] == "inner"
            assert by_id[by_id[s["parent"]]["parent"]]["name"] == "outer"
        if s["name"] == "mul":  # worker thread: no parent, own thread id
            assert s["parent"] is None
            outer = next(o for o in spans if o["name"] == "outer" and o["pid"] == s["pid"])
            assert s["thread"] != outer["thread"]


def test_strace_output_is_parsed():
    text = """% time     seconds  usecs/call     calls    errors syscall
------ ----------- ----------- --------- --------- ----------------
 60.00    0.000600          20        30           read
 40.00    0.000400          10        40         4 openat
------ ----------- ----------- --------- --------- ----------------
100.00    0.001000          14        70         4 total
"""
    parsed = runner.parse_strace(text)
    assert parsed["total"] == 70
    assert parsed["calls"]["openat"] == {"calls": 40, "errors": 4, "seconds": 0.0004}


@pytest.mark.skipif(not runner.strace_works(), reason="strace missing or ptrace not permitted")
def test_strace_counts_syscalls(program):
    trace = runner.trace_command([str(program)], syscalls="strace", quiet=True)
    sc = trace["runs"][0]["syscalls"]
    assert sc["source"] == "strace" and sc["total"] > 100
    assert sc["calls"]["read"]["calls"] > 0


@pytest.mark.skipif(not runner.strace_works(), reason="strace missing or ptrace not permitted")
def test_strace_counts_in_an_untimed_twin(tmp_path):
    """The run whose time and spans the trace keeps is not under ptrace; its twin is."""
    log = tmp_path / "tracers.txt"
    prog = tmp_path / "who.py"
    prog.write_text(
        "import re, sys\n"
        "status = open('/proc/self/status').read()\n"
        "tracer = re.search(r'TracerPid:\\s*(\\d+)', status).group(1)\n"
        "open(sys.argv[1], 'a').write(tracer + '\\n')\n"
    )
    trace = runner.trace_command([str(prog), str(log)], repeat=2, syscalls="strace", quiet=True)
    tracers = [int(t) for t in log.read_text().split()]
    assert [t != 0 for t in tracers] == [False, True, False, True], tracers
    assert all(r["syscalls"]["source"] == "strace" for r in trace["runs"])


def test_mapped_bytes_follow_unfinished_calls_and_threads():
    lines = [
        "10 brk(0) = 0x1000000",
        "10 mmap(0, 8192, 0x3, 0x22, -1, 0) = 0x7f0000000000",
        "10 brk(0x1021000) = 0x1021000",  # +0x21000
        "11 mmap(0, 1048576, 0x3, 0x22, -1, 0 <unfinished ...>",
        "10 mmap(0, 4096, 0x3, 0x22, -1, 0) = -1 ENOMEM (Cannot allocate memory)",
        "11 <... mmap resumed>) = 0x7f0000100000",
        "11 brk(0x1031000) = 0x1031000",  # a thread of 10: +0x10000 over 10's break
        "12 brk(0) = 0x5000000",  # another process
        "12 brk(0x5002000 <unfinished ...>",
        "12 <... brk resumed>) = 0x5002000",  # +0x2000
        "10 brk(0x1011000) = 0x1011000",  # shrinking maps nothing
        "10 munmap(0x7f0000000000, 8192) = 0",
    ]
    got = runner.mapped_bytes(lines)
    assert got == {"mmap": 8192 + 1048576, "brk": 0x31000 + 0x2000, "total": got["total"]}
    assert got["total"] == got["mmap"] + got["brk"]


@pytest.mark.skipif(not runner.strace_works(), reason="strace missing or ptrace not permitted")
def test_strace_sums_mapped_bytes(tmp_path):
    big = tmp_path / "big.py"
    big.write_text("import numpy as np\nkeep = [np.ones(64 << 20, np.uint8) for _ in range(4)]\n")
    small = tmp_path / "small.py"
    small.write_text("import numpy as np\n")
    sizes = {}
    for prog in (big, small):
        trace = runner.trace_command([str(prog)], syscalls="strace", quiet=True)
        sizes[prog.stem] = trace["runs"][0]["syscalls"]["mapped_bytes"]["total"]
    # The four arrays are 256 MiB; the rest of the two runs (the interpreter, numpy's import,
    # allocator arenas) differs by run by some tens of KiB, so the extra is 256 MiB give or
    # take a few MiB, not exactly.
    extra = sizes["big"] - sizes["small"]
    assert 4 * (64 << 20) - (4 << 20) <= extra <= 4 * (64 << 20) + (32 << 20), extra
    assert sizes["small"] < 4 * (64 << 20)


def test_syscalls_off_and_exit_code(tmp_path):
    prog = tmp_path / "fail.py"
    prog.write_text("import trueno, sys\nsys.exit(7)\n")
    trace = runner.trace_command([str(prog)], syscalls="off", quiet=True)
    assert trace["runs"][0]["exit_code"] == 7 and trace["runs"][0]["syscalls"] is None
    assert trace["name"] == "fail"


def test_env_auto_start_writes_output(tmp_path):
    out = tmp_path / "part.json"
    code = "import numpy as np, trueno; trueno.add(np.ones(3, np.float32), np.ones(3, np.float32))"
    env = {"TRUENO_TRACE": "1", "TRUENO_TRACE_OUTPUT": str(out), "PATH": "/usr/bin:/bin"}
    res = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert res.returncode == 0 and res.stdout == ""  # trace data never on stdout
    part = json.loads(out.read_text())
    assert [s["name"] for s in part["spans"]] == ["add"]
    assert part["pid"] and part["max_rss_bytes"] > 0 and part["dropped"] == 0


def test_boot_follows_the_environment():
    from trueno import config

    assert boot._installed == config.TRACE_ON_START


MP_PROGRAM = """
import multiprocessing as mp, numpy as np, trueno
def work(i):
    a = np.ones(100, np.float32)
    return float(trueno.sum(trueno.add(a, a)))
if __name__ == "__main__":
    trueno.add(np.ones(3, np.float32), np.ones(3, np.float32))
    for method in ("fork", "spawn"):
        ps = [mp.get_context(method).Process(target=work, args=(i,)) for i in range(2)]
        [p.start() for p in ps]
        [p.join() for p in ps]
"""


def test_multiprocessing_children_fork_and_spawn(tmp_path):
    prog = tmp_path / "mp_prog.py"
    prog.write_text(MP_PROGRAM)
    trace = runner.trace_command([str(prog)], syscalls="off", quiet=True)
    assert trace["runs"][0]["processes"] == 5  # parent + 2 fork + 2 spawn children
    names = [s["name"] for s in trace["spans"]]
    assert names.count("sum") == 4 and names.count("add") == 5

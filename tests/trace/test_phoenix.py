"""A real OTLP receiver without docker: Arize Phoenix (``make profile-otlp-phoenix`` installs it
into its own venv under build/). The test starts ``phoenix serve`` on free ports, sends a real
program's trace with ``trueno trace run --otlp-endpoint``, then reads the span tree back
through Phoenix's REST API (``/v1/projects/default/spans``): names, parents and durations equal
to the trace file's. Slow (Phoenix starts in 10-60 s): ``make test-phoenix``, which CI runs."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

pytest.importorskip("opentelemetry.exporter.otlp.proto.http")

from trueno.cli.main import main  # noqa: E402
from trueno.trace import schema  # noqa: E402

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]


def phoenix_exe() -> str:
    named = os.environ.get("TRUENO_PHOENIX")  # set by make test-phoenix (CI): it must run
    if named:
        if not Path(named).exists():
            pytest.fail(f"TRUENO_PHOENIX={named} does not exist")
        return named
    exe = str(ROOT / "build/phoenix-venv/bin/phoenix")
    if not Path(exe).exists():
        exe = shutil.which("phoenix") or ""
    if not exe:
        pytest.skip("Phoenix is not installed (make profile-otlp-phoenix installs it)")
    return exe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def get(url: str, timeout: float = 5.0):
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return json.loads(r.read() or b"null") if r.status == 200 else None


@pytest.fixture
def phoenix(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "PHOENIX_PORT": str(port),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_GRPC_PORT": str(free_port()),
        "PHOENIX_WORKING_DIR": str(tmp_path / "phoenix"),
    }
    log = open(tmp_path / "phoenix.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen([phoenix_exe(), "serve"], env=env, stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180
        while True:
            assert proc.poll() is None, (tmp_path / "phoenix.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, "Phoenix did not start in 180 s"
            time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def _ns(stamp: str) -> int:
    """Phoenix's ISO timestamps (microseconds) as epoch ns."""
    dt = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    return int(dt.timestamp()) * 1_000_000_000 + dt.microsecond * 1000


def test_span_tree_read_back_from_phoenix(phoenix, tmp_path, program, monkeypatch):
    monkeypatch.delenv("TRACEPARENT", raising=False)
    out = tmp_path / "t.json"
    code = main(["trace", "run", "-o", str(out), "--quiet", "--syscalls", "off",
                 "--otlp-endpoint", phoenix, "--", sys.executable, str(program)])  # fmt: skip
    assert code == 0
    trace = schema.load(out)
    want = len(trace["spans"])
    deadline, got = time.monotonic() + 60, []
    while time.monotonic() < deadline:  # Phoenix inserts received spans asynchronously
        got = get(f"{phoenix}/v1/projects/default/spans?limit=1000")["data"]
        if len(got) >= want:
            break
        time.sleep(0.5)
    assert len(got) == want

    # pair the spans of each name in start order (Phoenix keeps microseconds, so starts
    # and durations agree to 1 us), then the parents must be the paired spans
    epoch = trace["epoch_ns"]
    theirs_by_name: dict = {}
    for s in got:
        theirs_by_name.setdefault(s["name"], []).append(s)
    ours_by_name: dict = {}
    for s in trace["spans"]:
        ours_by_name.setdefault(s["name"], []).append(s)
    assert sorted(theirs_by_name) == sorted(ours_by_name)
    pair = {}  # our span id -> their span
    for name, mine in ours_by_name.items():
        mine = sorted(mine, key=lambda s: s["start_ns"])
        them = sorted(theirs_by_name[name], key=lambda s: _ns(s["start_time"]))
        assert len(mine) == len(them), name
        for a, b in zip(mine, them, strict=True):
            start, end = _ns(b["start_time"]), _ns(b["end_time"])
            assert abs(start - (epoch + a["start_ns"])) <= 1000, name
            assert abs((end - start) - a["dur_ns"]) <= 2000, name  # two roundings
            pair[a["id"]] = b
    for a in trace["spans"]:
        b = pair[a["id"]]
        want = pair[a["parent"]]["context"]["span_id"] if a["parent"] else None
        assert b.get("parent_id") == want, a["name"]
    names = set(ours_by_name)
    assert {"outer", "inner", "exp", "add", "mul"} <= names

"""`make run` (python -m cli.demo): a live three-node cluster that must end cleanly, leave
no process or temp dir behind -- also when interrupted -- and stay well under a minute."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def _tmpdir(out: str) -> str:
    m = re.search(r"--run-dir (\S+)/node1 ", out)
    assert m, out
    return m.group(1)


def _leftovers(tmp: str) -> list[int]:
    """Pids whose command line mentions the demo's temp dir."""
    pids = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            cmd = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if tmp in cmd:
            pids.append(int(p.name))
    return pids


def test_demo_runs_and_cleans_up() -> None:
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "cli.demo"], capture_output=True, text=True,
                       timeout=120, cwd=REPO, env=ENV)
    took = time.monotonic() - t
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    for must in ("full mesh up", "PUBLISHED {18888, 10, 20}", "node3 got b'hello from node1'",
                 "node1 got the answer b'hello back from node3'", "tipc link list",
                 "node1:b0-node2:b0: up", "node1:b0-node3:b0: up", "tipc nametable show",
                 "WITHDRAWN {18888, 10, 20}", "nothing left running"):
        assert must in out, f"{must!r} missing from:\n{out}"
    assert re.search(r"^18888\s+10\s+20\s+cluster\s+\d+\s+node3", out, re.M), out
    tmp = _tmpdir(out)
    assert not Path(tmp).exists()
    assert _leftovers(tmp) == []
    assert took < 60


def test_demo_interrupted_leaves_nothing() -> None:
    p = subprocess.Popen([sys.executable, "-m", "cli.demo"], stdout=subprocess.PIPE,
                         stderr=subprocess.STDOUT, text=True, cwd=REPO, env=ENV)
    assert p.stdout is not None
    out = ""
    end = time.monotonic() + 60
    while "-- waiting for the links" not in out:
        line = p.stdout.readline()
        assert line and time.monotonic() < end, out
        out += line
    tmp = _tmpdir(out)
    p.send_signal(signal.SIGINT)          # Ctrl-C (the daemons run in their own session)
    rest, _ = p.communicate(timeout=60)
    out += rest
    assert p.returncode in (130, 0), out
    assert "nothing left running" in out
    time.sleep(0.2)
    assert _leftovers(tmp) == [], out
    assert not Path(tmp).exists()


def test_demo_dump_still_available() -> None:
    r = subprocess.run([sys.executable, "-m", "cli.demo", "--dump"], capture_output=True,
                       text=True, timeout=120, cwd=REPO, env=ENV)
    assert r.returncode == 0, r.stderr
    assert "tipcpy demo" in r.stdout

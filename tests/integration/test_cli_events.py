"""`tipc events` (tipcpy's own): a live stream of topology events from a real tipcd,
read as JSON lines from the real command running as a subprocess."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import time
from typing import Any

from .conftest import REPO, TipcNode, _cmd
from .test_cli_ref import enable, link_state, ok, tipc


def start_events(node: TipcNode, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "TIPCPY_RUN_DIR": str(node.run_dir), "PYTHONPATH": str(REPO)}
    return subprocess.Popen(_cmd("tipc") + list(args), env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


_buffers: dict[int, bytes] = {}


def read_until(proc: subprocess.Popen[str], pred: Any, timeout: float = 15.0
               ) -> list[dict[str, Any]]:
    """JSON lines from `proc` until one satisfies `pred` (all of them returned).

    Reads the pipe's fd directly (select + os.read, our own line buffer): a buffered
    file object would hide lines already read from select."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    seen: list[dict[str, Any]] = []
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        buf = _buffers.get(fd, b"")
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            _buffers[fd] = buf
            seen.append(json.loads(line))
            if pred(seen[-1]):
                return seen
        r, _, _ = select.select([fd], [], [], 0.2)
        if r:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            _buffers[fd] = buf + chunk
    raise AssertionError(f"no matching event; got {seen}")


def stop(proc: subprocess.Popen[str]) -> int:
    if proc.poll() is None:
        os.kill(proc.pid, signal.SIGINT)          # what Ctrl-C does
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)
    return proc.returncode


def test_events_stream_nodes_links_and_services(tipcd) -> None:
    a = tipcd("a", "--identity", "n1")
    b = tipcd("b", "--identity", "n2")
    every = start_events(a, "-j", "events")
    nodes = start_events(a, "events", "0", "-j")          # -j anywhere on the line
    text = start_events(a, "events")
    try:
        time.sleep(0.5)                                    # let the streams subscribe
        enable(a, b)
        enable(b, a)
        seen = read_until(every, lambda e: e.get("what") == "node" and e["node"] == "n2")
        kinds = [(e.get("what"), e.get("state"), e.get("node"), e.get("link")) for e in seen]
        assert ("node", "up", "n1", None) in kinds                  # our own address
        assert ("link", "up", "n1", "n1:b0-n2:b0") in kinds         # {2, n2} on n1
        assert kinds[-1] == ("node", "up", "n2", None)
        up = seen[-1]
        assert up["event"] == "published" and up["type"] == 0
        assert up["lower"] == up["upper"] == 0x6E320000 and up["hash"] == "6e320000"
        # the topology-server subscription to type 0 sees the nodes only
        seen0 = read_until(nodes, lambda e: e["node"] == "n2")
        assert {e["type"] for e in seen0} == {0}
        assert [e["state"] for e in seen0] == ["up", "up"]
        # the peer goes away: link down, node down
        b.stop()
        seen = read_until(every, lambda e: e.get("what") == "node" and e["state"] == "down")
        assert ("link", "down") in [(e.get("what"), e.get("state")) for e in seen]
        assert seen[-1]["event"] == "withdrawn" and seen[-1]["node"] == "n2"
        down = read_until(nodes, lambda e: e["state"] == "down")[-1]
        assert down["node"] == "n2" and down["event"] == "withdrawn"
    finally:
        rcs = [stop(p) for p in (every, nodes, text)]
    assert rcs == [0, 0, 0]                                  # Ctrl-C is a clean end
    lines = os.read(text.stdout.fileno(), 1 << 20).decode().splitlines() if text.stdout else []
    assert any(ln.endswith("link up    n1:b0-n2:b0") for ln in lines), lines
    assert any(" node down  n2 (6e320000)" in ln for ln in lines), lines
    # the daemon dropped the three subscriptions (no observers left behind)
    assert a.proc.poll() is None and link_state(a, "n1:b0-n2:b0") in ("down", None)


def test_events_arguments(tipcd, tmp_path) -> None:
    a = tipcd("a", "--identity", "n1")
    r = tipc(a, "events", "1", "5", "2")
    assert r.exit == 255 and "lower 5 > upper 2" in r.stderr
    r = tipc(a, "events", "x")
    assert r.exit == 2 and "Invalid value for 'TYPE'" in r.stderr
    r = tipc(tmp_path, "events")
    assert r.exit == 1 and r.stderr.startswith("tipcd is not running (no control socket at ")
    assert ok(a, "bearer", "list") == ""

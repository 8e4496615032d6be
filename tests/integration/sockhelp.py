"""Helpers for the socket integration tests: linked tipcd pairs on 127.0.0.1.

Each daemon is a real `tipcd` process with its own run dir and UDP port; the two list each
other as unicast peers. Only the processes started here are stopped (by pid).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tools.procs import log_tail, spawn_tipcd, stop_proc, wait_started
from tipcpy import socket as ts

from .conftest import REPO, free_udp_port


def bearer(port: int, peer: int) -> str:
    return (f"media udp name b0 localip 127.0.0.1 localport {port} remoteip 127.0.0.1 "
            f"remoteport {peer}")


def wait_for(pred: Callable[[], bool], timeout: float = 20.0, what: str = "condition"
             ) -> None:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def assert_silent(s: ts.socket, wait: float) -> None:
    """Nothing (more) arrives on ``s`` within ``wait`` seconds."""
    s.settimeout(wait)
    with pytest.raises(TimeoutError):
        s.recv(100)


def links_up(run_dir: str | Path) -> int:
    from tipcpy.runtime.ctlclient import ControlClient

    try:
        with ControlClient(Path(run_dir) / "ctl.sock", timeout=5) as c:
            links = c.call("link.list")
    except Exception:
        return 0
    return sum(1 for lk in links if lk.get("up") and lk.get("name") != "broadcast-link")


def node_addr(run_dir: str | Path) -> int:
    """The node's committed address (0 while its address trial runs)."""
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, run_dir=str(run_dir))
    try:
        return s.getsockname()[1]
    finally:
        s.close()


class Daemon:
    """One tipcd we started."""

    def __init__(self, name: str, run_dir: Path, port: int, peer: int, log: Path,
                 *extra: str) -> None:
        self.port = port
        self._start(name, run_dir, log, ["--bearer", bearer(port, peer), *extra])

    def _start(self, name: str, run_dir: Path, log: Path, args: list[str],
               ns: str | None = None, timeout: float = 20.0) -> None:
        self.name = name
        self.run_dir = run_dir
        self.log_path = log
        self.proc = spawn_tipcd(["--run-dir", str(run_dir), "--identity", name,
                                 "--log-level", "info", *args], log, ns=ns)
        if not wait_started(run_dir, self.proc, timeout):
            raise AssertionError(f"tipcd {name} did not start (exit {self.proc.poll()}):\n"
                                 f"{self.log()}")

    @property
    def rd(self) -> str:
        return str(self.run_dir)

    def log(self) -> str:
        return log_tail(self.log_path, 5000)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            self.proc.wait(10)

    def stop(self) -> None:
        stop_proc(self.proc)


def start_pair(base: Path, extra: tuple[str, ...] = ()) -> tuple[Daemon, Daemon]:
    pa, pb = free_udp_port(), free_udp_port()
    base.mkdir(parents=True, exist_ok=True)
    a = Daemon("n1", base / "n1", pa, pb, base / "n1.log", *extra)
    try:
        b = Daemon("n2", base / "n2", pb, pa, base / "n2.log", *extra)
    except BaseException:
        a.stop()
        raise
    try:
        wait_for(lambda: links_up(a.rd) >= 1 and links_up(b.rd) >= 1, 30, "link n1-n2 up")
        wait_for(lambda: node_addr(a.rd) != 0 and node_addr(b.rd) != 0, 10, "addresses")
    except BaseException:
        print(a.log(), b.log())
        a.stop()
        b.stop()
        raise
    return a, b


def client_proc(code: str, run_dir: str) -> subprocess.Popen[str]:
    """A separate Python process running ``code`` with tipcpy.socket as ``ts``."""
    return subprocess.Popen(
        [sys.executable, "-c", "from tipcpy import socket as ts\n" + code],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
        env={**os.environ, "PYTHONPATH": str(REPO), "TIPCPY_RUN_DIR": run_dir})


def module_pair(tag: str) -> Any:
    """A module-scoped ``pair`` fixture (assign it to ``pair`` in the test module): one
    linked tipcd pair for the whole file, run dirs under a temp dir named ``tag``."""

    @pytest.fixture(scope="module")
    def pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Daemon]]:
        a, b = start_pair(tmp_path_factory.mktemp(tag))
        yield a, b
        a.stop()
        b.stop()

    return pair

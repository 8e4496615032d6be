"""Real `tipcd` processes on 127.0.0.1 for integration tests.

Each daemon gets its own temporary run dir (so its own ctl.sock and pid file) and its
own UDP port; the `tipc` CLI is run as a real subprocess with TIPCPY_RUN_DIR pointing at
the daemon. Teardown always stops the daemons this fixture started, by their pid
(SIGTERM, then SIGKILL if it does not exit), and prints their logs if a test failed.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def _cmd(name: str) -> list[str]:
    """The installed entry point if present (what users run), else `python -m cli.X`."""
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", f"cli.{name}"]


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class TipcNode:
    """One running tipcd and a way to run `tipc` against it."""

    def __init__(self, name: str, run_dir: Path, port: int, proc: subprocess.Popen[bytes],
                 log_path: Path) -> None:
        self.name = name
        self.run_dir = run_dir
        self.port = port
        self.proc = proc
        self.log_path = log_path

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "TIPCPY_RUN_DIR": str(self.run_dir),
                "PYTHONPATH": str(REPO)}

    def tipc(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        r = subprocess.run(_cmd("tipc") + list(args), env=self.env, capture_output=True,
                           text=True, timeout=30)
        if check and r.returncode != 0:
            raise AssertionError(f"tipc {' '.join(args)} -> {r.returncode}\n"
                                 f"stdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def wait_for(self, pred: Callable[[], bool], timeout: float = 15.0,
                 what: str = "condition") -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if pred():
                return
            time.sleep(0.1)
        raise AssertionError(f"{self.name}: timed out waiting for {what}\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-6000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


@pytest.fixture
def tipcd(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., TipcNode]]:
    """Factory: `tipcd("a", "--identity", "n1", ...)` starts a daemon and waits for its
    control socket."""
    started: list[TipcNode] = []

    def start(name: str, *extra: str, port: int | None = None) -> TipcNode:
        run_dir = tmp_path / name
        run_dir.mkdir()
        log_path = tmp_path / f"{name}.log"
        port = port or free_udp_port()
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                _cmd("tipcd") + ["--run-dir", str(run_dir), "--log-level", "debug", *extra],
                stdout=log, stderr=subprocess.STDOUT,
                env={**os.environ, "PYTHONPATH": str(REPO)})
        node = TipcNode(name, run_dir, port, proc, log_path)
        started.append(node)
        node.wait_for(lambda: (run_dir / "ctl.sock").exists() or proc.poll() is not None,
                      what="control socket")
        if proc.poll() is not None:
            raise AssertionError(f"tipcd {name} exited {proc.returncode}\n{node.log()}")
        return node

    yield start
    failed = getattr(request.node, "rep_call", None)
    for node in started:
        node.stop()
        if failed is not None and failed.failed:
            print(f"----- log of tipcd {node.name} -----\n{node.log()}")


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)

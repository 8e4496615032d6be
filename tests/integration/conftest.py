"""Real `tipcd` processes on 127.0.0.1 for integration tests.

Each daemon gets its own temporary run dir (so its own ctl.sock and pid file) and its
own UDP port; the `tipc` CLI is run as a real subprocess with TIPCPY_RUN_DIR pointing at
the daemon. Teardown always stops the daemons this fixture started, by their pid
(SIGTERM, then SIGKILL if it does not exit), and prints their logs if a test failed.
"""

from __future__ import annotations

import os
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.tools.procs import BIN, REPO, log_tail, spawn_tipcd, stop_proc, wait_started
from tests.tools.procs import cmd as _cmd

__all__ = ["BIN", "REPO", "_cmd", "free_udp_port", "TipcNode"]


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
        return log_tail(self.log_path, 6000)

    def stop(self) -> None:
        stop_proc(self.proc)


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
        proc = spawn_tipcd(["--run-dir", str(run_dir), "--log-level", "debug", *extra],
                           log_path, stdin_null=False)
        node = TipcNode(name, run_dir, port, proc, log_path)
        started.append(node)
        if not wait_started(run_dir, proc, 15.0, poll=0.1):
            raise AssertionError(f"tipcd {name} did not start (exit {proc.poll()})\n"
                                 f"{node.log()}")
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

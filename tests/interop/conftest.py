"""Fixtures for interop tests against a real Linux kernel TIPC node (../shared/kernel-peer)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.interop.kpeer import GUEST_IP, HOST_IP, REPO, KernelPeer, ns_cmd, unavailable_reason
from tipcpy import socket as tsock

BIN = Path(sys.executable).parent


def _exe(name: str) -> list[str]:
    exe = BIN / name
    return [str(exe)] if exe.exists() else [sys.executable, "-m", f"cli.{name}"]


class NsNode:
    """A tipcd running inside the kernel peer's namespace, driven by the real `tipc` CLI.

    The control socket lives in the filesystem, so the CLI can run from the root
    namespace; only the daemon's UDP socket needs to be inside netns kpeer.
    """

    def __init__(self, identity: str, bearer: str | list[str],
                 extra: list[str] | None = None) -> None:
        self.identity = identity
        self.tmp = tempfile.mkdtemp(prefix="tipcpy-interop-")
        self.run_dir = Path(self.tmp) / "run"
        self.log_path = Path(self.tmp) / "tipcd.log"
        self.env = {**os.environ, "TIPCPY_RUN_DIR": str(self.run_dir), "PYTHONPATH": str(REPO)}
        bearers = [bearer] if isinstance(bearer, str) else bearer
        bearer_args = [a for words in bearers for a in ("--bearer", words)]
        argv = ns_cmd(*_exe("tipcd"), "--run-dir", str(self.run_dir), "--identity", identity,
                      *bearer_args, "--log-level", "debug", *(extra or []))
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=self.env, start_new_session=True)
        end = time.monotonic() + 20
        while not (self.run_dir / "ctl.sock").exists():
            if self.proc.poll() is not None or time.monotonic() > end:
                raise RuntimeError(f"tipcd did not start:\n{self.log()}")
            time.sleep(0.05)

    def tipc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(_exe("tipc") + list(args), env=self.env, capture_output=True,
                              text=True, timeout=30)

    def log(self, tail: int = 8000) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return text[-tail:] if tail else text

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._log.close()
        # the run dir and the log go too (read log() before stop() to report it)
        shutil.rmtree(self.tmp, ignore_errors=True)


def unicast_bearer() -> str:
    """Our bearer towards the unicast-mode guest (its peer address is ours)."""
    return f"media udp name b1 localip {HOST_IP} remoteip {GUEST_IP}"


def wait_link_up(kp: KernelPeer, identity: str) -> None:
    """Until the guest lists its link b1 to our node ``identity`` as up."""
    kp.wait_for("tipc link list", lambda out: f"-{identity}:b1: up" in out, timeout=30)


def linked_node(kp: KernelPeer, identity: str, retry: bool = False) -> NsNode:
    """A tipcd linked to the unicast guest, with the kernel's echo services in its table
    once the guest's bulk has arrived (waited for up to 10 s, not asserted).

    ``retry``: if no link comes up, start a fresh tipcd once (seen once right after
    another suite's guest: no link at all; a new tipcd, new discovery from scratch, got
    it at once)."""
    n = NsNode(identity, unicast_bearer())
    try:
        try:
            wait_link_up(kp, identity)
        except AssertionError:
            if not retry:
                raise
            n.stop()
            n = NsNode(identity, unicast_bearer())
            wait_link_up(kp, identity)
        end = time.monotonic() + 10
        while time.monotonic() < end and "1002 " not in n.tipc("nametable", "show").stdout:
            time.sleep(0.2)
    except BaseException:
        n.stop()
        raise
    return n


def kernel_echoes(run_dir: str, msg: bytes, timeout: float
                  ) -> tuple[Any, list[int]]:
    """``msg`` to the guest's echo services RDM {1000,1}, STREAM {1001,1} and SEQPACKET
    {1002,1}; asserts each echo is ``msg``.  Returns the RDM echo's source address and
    the node hash of each connection's peer, for the caller's own checks."""
    with tsock.socket(tsock.AF_TIPC, tsock.SOCK_RDM, run_dir=run_dir) as s:
        s.settimeout(timeout)
        s.sendto(msg, (tsock.TIPC_ADDR_NAME, 1000, 1, 0))
        data, addr = s.recvfrom(70000)
        assert data == msg
    peers = []
    for sotype, svc in ((tsock.SOCK_STREAM, 1001), (tsock.SOCK_SEQPACKET, 1002)):
        with tsock.socket(tsock.AF_TIPC, sotype, run_dir=run_dir) as c:
            c.settimeout(timeout)
            c.connect((tsock.TIPC_ADDR_NAME, svc, 1, 0))
            peers.append(c.getpeername()[1])
            c.sendall(msg)
            got = b""
            while len(got) < len(msg):
                d = c.recv(70000)
                assert d, "connection closed before the whole echo arrived"
                got += d
            assert got == msg
    return addr, peers


class _Kernels:
    """One guest at a time (the harness owns one netns): reuse it while tests ask for
    the same configuration, reboot it when they ask for another, stop it at the end."""

    def __init__(self) -> None:
        self.current: KernelPeer | None = None
        self.env: dict[str, str] | None = None

    def get(self, env: dict[str, str]) -> KernelPeer:
        reason = unavailable_reason()
        if reason:
            pytest.skip(f"kernel-peer interop: {reason}")
        if self.current is not None and self.env == env:
            return self.current
        self.stop()
        kp = KernelPeer(env)
        try:
            kp.start()
        except BaseException:
            # Only a guest we booted is ours to stop: while we still waited for the
            # lock (timeout, interrupt), the running guest is another run's.
            if kp._lock is not None:
                kp.stop()
            raise
        # current only once it runs: after a failed start the next test must not
        # drive (or tear down) whatever guest is there
        self.current, self.env = kp, env
        return kp

    def stop(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = self.env = None


@pytest.fixture(scope="session")
def _kernels() -> Iterator[_Kernels]:
    k = _Kernels()
    try:
        yield k
    finally:
        k.stop()


@pytest.fixture
def kernel_unicast(_kernels: _Kernels) -> KernelPeer:
    """The guest with a unicast peer 10.77.0.1 (its default)."""
    return _kernels.get({"KP_REMOTE": "10.77.0.1"})


@pytest.fixture
def kernel_multicast(_kernels: _Kernels) -> KernelPeer:
    """The guest with multicast discovery (228.0.18.103)."""
    return _kernels.get({"KP_REMOTE": "none"})


@pytest.fixture
def kernel_two_nics(_kernels: _Kernels) -> KernelPeer:
    """The guest with two NICs and two bearers (KP_NICS=2): b0 on 10.77.0.2 towards
    10.77.0.1 (tap kp-tap0), b1 on 10.78.0.2 towards 10.78.0.1 (tap kp-tap3)."""
    return _kernels.get({"KP_REMOTE": "10.77.0.1", "KP_NICS": "2"})

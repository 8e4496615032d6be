"""Drive ../shared/kernel-peer: a real Linux 6.1 kernel TIPC node in qemu, in netns `kpeer`.

The guest is reachable over TIPC/UDP at 10.77.0.2:6118 from 10.77.0.1 inside the
namespace; commands run in the guest through guest-exec.py. Everything here is
bounded in time and tears down what it started (by the harness's recorded pids).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
KP_DIR = REPO.parent / "shared" / "kernel-peer"
KP_BUILD = Path(os.environ.get("KP_BUILD", "/tmp/kernel-peer-build"))
NETNS = "kpeer"
HOST_IP = "10.77.0.1"
GUEST_IP = "10.77.0.2"
HOST_IP2 = "10.78.0.1"  # KP_NICS=2: tap kp-tap3 in the netns
GUEST_IP2 = "10.78.0.2"  # KP_NICS=2: the guest's eth1, bearer b1
LOCK_PATH = "/tmp/tipcpy-kernel-peer.lock"
GUEST_HASH = 0x19416565  # hash of the default identity "kpeer1"


def unavailable_reason() -> str | None:
    """Why the kernel peer cannot run here at all, or None when it can."""
    if not KP_DIR.is_dir():
        return f"kernel-peer harness not found at {KP_DIR}"
    if os.geteuid() != 0:
        return "needs root (qemu tap device and network namespaces)"
    if sys.platform != "linux":
        return "needs Linux"
    return None


class KernelPeer:
    """One running kernel TIPC guest (`run-peer.sh start`)."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = {**os.environ, **(env or {})}
        self._lock: int | None = None

    def _acquire(self, timeout: float = 1800.0) -> None:
        """The harness has one guest at a time (fixed netns and taps): several test
        runs on one machine (engineers' worktrees) queue here instead of tearing
        down each other's guest. CI runs alone and never waits."""
        if self._lock is not None:
            return
        fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT, 0o644)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    os.close(fd)
                    raise RuntimeError(f"kernel-peer lock {LOCK_PATH} held for {timeout:.0f} s") from None
                time.sleep(1.0)
        self._lock = fd

    def _release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)  # closing the descriptor drops the flock
            self._lock = None

    def start(self, timeout: float = 180.0) -> None:
        self._acquire()
        r = subprocess.run([str(KP_DIR / "run-peer.sh"), "start"], env=self.env,
                           capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0 and shutil.which("apt-get"):
            # A fresh machine may have no package lists yet for the harness's installs.
            subprocess.run(["apt-get", "update", "-qq"], capture_output=True, timeout=300)
            r = subprocess.run([str(KP_DIR / "run-peer.sh"), "start"], env=self.env,
                               capture_output=True, text=True, timeout=timeout)
        if r.returncode != 0:
            log = KP_BUILD / "g0.console.log"
            tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
            raise RuntimeError(f"run-peer.sh start failed ({r.returncode}):\n{r.stdout}\n{r.stderr}\n{tail}")

    def stop(self) -> None:
        try:
            subprocess.run([str(KP_DIR / "run-peer.sh"), "stop"], env=self.env,
                           capture_output=True, text=True, timeout=60)
        finally:
            self._release()

    def exec(self, cmd: str, timeout: float = 20.0) -> tuple[int, str]:
        """Run a shell command in the guest; (exit status, merged output)."""
        r = subprocess.run([sys.executable, str(KP_DIR / "guest-exec.py"), "g0", cmd, str(timeout)],
                           env=self.env, capture_output=True, text=True, timeout=timeout + 15)
        return r.returncode, r.stdout + r.stderr

    def wait_for(self, cmd: str, pred: Callable[[str], bool], timeout: float = 20.0,
                 every: float = 0.5) -> str:
        """Poll a guest command until its output satisfies pred; the last output."""
        deadline = time.monotonic() + timeout
        out = ""
        while time.monotonic() < deadline:
            _, out = self.exec(cmd)
            if pred(out):
                return out
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout}s waiting on {cmd!r}; last output:\n{out}")


def ns_cmd(*argv: str) -> list[str]:
    """A command line that runs argv inside the kernel peer's namespace."""
    ip = shutil.which("ip") or "/sbin/ip"
    return [ip, "netns", "exec", NETNS, *argv]

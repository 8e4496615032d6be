"""Start, wait for and stop the `tipcd` processes a test or the soak starts itself, and
build the namespaces and veth pairs they run in.

One copy for tests/integration, tests/faults, tests/netns and bench/soak.py, so a change
to how a daemon is found, started or stopped is made once.  Only processes started by
the caller are touched, by pid; namespaces are removed by the name the caller created.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[2]


def cmd(name: str) -> list[str]:
    """The installed entry point if present (what users run), else `python -m cli.X`."""
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    return [found] if found else [sys.executable, "-m", f"cli.{name}"]


def spawn_tipcd(args: Sequence[str], log_path: Path, ns: str | None = None,
                env: dict[str, str] | None = None, stdin_null: bool = True
                ) -> subprocess.Popen[bytes]:
    """`tipcd ARGS` (inside namespace `ns` if given), stdout and stderr to `log_path`."""
    argv = [*cmd("tipcd"), *args]
    if ns is not None:
        argv = ["ip", "netns", "exec", ns, *argv]
    with open(log_path, "wb") as log:
        return subprocess.Popen(
            argv, stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL if stdin_null else None,
            env=env if env is not None else {**os.environ, "PYTHONPATH": str(REPO)})


def wait_started(run_dir: Path, proc: subprocess.Popen[bytes], timeout: float,
                 poll: float = 0.05) -> bool:
    """Wait for the daemon's control socket; False if it exited or `timeout` passed."""
    end = time.monotonic() + timeout
    while True:
        if (run_dir / "ctl.sock").exists():
            return True
        if proc.poll() is not None or time.monotonic() > end:
            return False
        time.sleep(poll)


def stop_proc(proc: subprocess.Popen[Any] | None, resume: bool = False) -> None:
    """SIGTERM (after SIGCONT if `resume`: a stopped process cannot exit), then SIGKILL."""
    if proc is None or proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        if resume:
            os.kill(proc.pid, signal.SIGCONT)
        os.kill(proc.pid, signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(5)


def log_tail(path: Path | None, chars: int) -> str:
    try:
        return path.read_text()[-chars:] if path is not None else ""
    except OSError:
        return ""


# ------------------------------------------------------------------------ namespaces
def why_no_netns() -> str | None:
    """Why namespaces with a daemon in them cannot be built here, or None if they can."""
    if os.geteuid() != 0:
        return "needs root to create network namespaces"
    if shutil.which("ip") is None:
        return "needs iproute2's `ip` to run a daemon inside a namespace"
    try:
        import pyroute2  # noqa: F401
    except ImportError:
        return "needs pyroute2"
    return None


def create_netns(names: Iterable[str], created: list[str]) -> None:
    """Create each namespace, recording it in `created` at once so cleanup finds it."""
    from pyroute2 import netns

    for ns in names:
        netns.create(ns)
        created.append(ns)


def remove_netns(names: Iterable[str]) -> None:
    """Remove the namespaces (and the veths inside them); never raises, so a cleanup
    cannot mask the failure that led to it."""
    from pyroute2 import netns

    for ns in names:
        try:
            netns.remove(ns)
        except Exception:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def add_veth(ipr: Any, dev_a: str, ns_a: str, dev_b: str, ns_b: str) -> None:
    """A veth pair `dev_a`-`dev_b`, each end moved into its namespace."""
    ipr.link("add", ifname=dev_a, kind="veth", peer=dev_b)
    for dev, ns in ((dev_a, ns_a), (dev_b, ns_b)):
        ipr.link("set", index=ipr.link_lookup(ifname=dev)[0], net_ns_fd=ns)


def lo_up(n: Any) -> None:
    n.link("set", index=n.link_lookup(ifname="lo")[0], state="up")


def addr_up(n: Any, dev: str, ip: str, prefixlen: int = 24) -> None:
    """Give `dev` (in the namespace of the NetNS handle `n`) `ip` and bring it up."""
    idx = n.link_lookup(ifname=dev)[0]
    n.addr("add", index=idx, address=ip, prefixlen=prefixlen)
    n.link("set", index=idx, state="up")

"""Shared plumbing for the benchmarks: result rows, machine facts, child processes.

Why a same-run baseline for every figure: the machines this runs on are small and shared
(two cores, other jobs), so absolute numbers swing by 2-3x between runs while the ratio
to a baseline measured minutes apart in the same run is stable enough to act on.

Every child process (tipcd, workers) is started through :class:`Procs`, which remembers
its pid and kills exactly that pid (SIGTERM, then SIGKILL) on exit -- never by name.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
PY = sys.executable


# ------------------------------------------------------------------ result rows
@dataclass
class Target:
    """``on`` = "ratio" or "value"; ``op`` = ">=" or "<="; printed as ``text``."""

    on: str
    op: str
    bound: float
    text: str

    def check(self, value: float | None, ratio: float | None) -> bool | None:
        v = ratio if self.on == "ratio" else value
        if v is None:
            return None
        return v >= self.bound if self.op == ">=" else v <= self.bound


@dataclass
class Row:
    """One figure with its same-run baseline.  ``ratio`` = value / baseline_value."""

    case: str
    figure: str
    unit: str
    value: float | None
    baseline: str = ""
    baseline_value: float | None = None
    target: Target | None = None
    note: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        if self.value is None or not self.baseline_value:
            return None
        return self.value / self.baseline_value

    @property
    def met(self) -> bool | None:
        return self.target.check(self.value, self.ratio) if self.target else None

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["ratio"] = self.ratio
        d["met"] = self.met
        d["target"] = self.target.text if self.target else None
        d["target_spec"] = asdict(self.target) if self.target else None
        return d


class Unavailable(Exception):
    """A case cannot run here yet (e.g. the socket API has not landed)."""


# ------------------------------------------------------------------ machine facts
def machine_info() -> dict[str, Any]:
    cpu = platform.processor() or ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    mem_total = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total = int(line.split()[1]) * 1024
    load = None
    with contextlib.suppress(OSError):
        load = [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    return {
        "cpu_model": cpu,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "kernel": platform.release(),
        "system": platform.system(),
        "machine": platform.machine(),
        "mem_total_bytes": mem_total,
        "loadavg_at_start": load,
        "hostname": platform.node(),
    }


def versions() -> dict[str, str | None]:
    def ver(mod: str) -> str | None:
        try:
            m = __import__(mod)
        except ImportError:
            return None
        return str(getattr(m, "__version__", None) or getattr(m, "VERSION", "?"))

    import tipcpy

    tv = getattr(tipcpy, "__version__", None)
    if tv is None:
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            tv = version("tipcpy")
    git = None
    with contextlib.suppress(Exception):
        git = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True, timeout=5).stdout.strip() or None
    return {"python": platform.python_version(), "python_impl": platform.python_implementation(),
            "tipcpy": tv, "tipcpy_git": git, "pyzmq": ver("zmq"), "libzmq": _libzmq(),
            "uvloop": ver("uvloop")}


def _libzmq() -> str | None:
    try:
        import zmq
    except ImportError:
        return None
    return zmq.zmq_version()


def socket_api_missing() -> str | None:
    """Why the tipcpy socket API cannot be used yet, or None if it is importable."""
    try:
        from tipcpy import socket as tsock  # noqa: F401
    except ImportError as e:
        return f"not available yet (tipcpy.socket missing: {e})"
    for attr in ("socket", "AF_TIPC", "SOCK_RDM", "SOCK_SEQPACKET", "TIPC_ADDR_NAME",
                 "TIPC_ADDR_NAMESEQ"):
        if not hasattr(tsock, attr):
            return f"not available yet (tipcpy.socket has no {attr})"
    return None


# ------------------------------------------------------------------ timing helpers
def percentile(sorted_vals: list[float], p: float) -> float:
    if not sorted_vals:
        return float("nan")
    k = (len(sorted_vals) - 1) * p / 100.0
    lo = int(k)
    hi = min(lo + 1, len(sorted_vals) - 1)
    return sorted_vals[lo] + (sorted_vals[hi] - sorted_vals[lo]) * (k - lo)


def rss_bytes(pid: int) -> int | None:
    """VmRSS of a process from /proc/PID/status."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process (for "how many cores did this use")."""
    try:
        f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def free_tcp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> Any:
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


# ------------------------------------------------------------------ child processes
def _cmd(name: str) -> list[str]:
    exe = BIN / name
    if exe.exists():
        return [str(exe)]
    found = shutil.which(name)
    return [found] if found else [PY, "-m", f"cli.{name}"]


def child_env(**extra: str) -> dict[str, str]:
    pp = os.environ.get("PYTHONPATH")
    return {**os.environ, "PYTHONPATH": str(REPO) + (os.pathsep + pp if pp else ""), **extra}


class Procs:
    """Every process a benchmark starts; ``close()`` stops exactly those pids."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.started: list[subprocess.Popen[Any]] = []

    def popen(self, argv: list[str], log_name: str | None = None, **kw: Any
              ) -> subprocess.Popen[Any]:
        if log_name is not None and "stdout" not in kw:
            log = open(self.tmp / f"{log_name}.log", "wb")  # noqa: SIM115 - closed by child exit
            kw["stdout"] = log
            kw["stderr"] = subprocess.STDOUT
        kw.setdefault("env", child_env())
        kw.setdefault("stdin", subprocess.DEVNULL)
        p = subprocess.Popen(argv, **kw)
        self.started.append(p)
        return p

    @staticmethod
    def stop(p: subprocess.Popen[Any], sig: int = signal.SIGTERM, wait: float = 5.0) -> None:
        if p.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(p.pid, sig)
        try:
            p.wait(wait)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGKILL)
            p.wait(5)

    def close(self) -> None:
        for p in reversed(self.started):
            self.stop(p)
            for stream in (p.stdout, p.stderr):
                if stream is not None:
                    with contextlib.suppress(Exception):
                        stream.close()
        self.started.clear()


@contextlib.contextmanager
def workspace(prefix: str) -> Iterator[tuple[Path, Procs]]:
    """A temp dir and a process registry; both gone (processes by pid) on exit."""
    tmp = Path(tempfile.mkdtemp(prefix=f"tipcpy-bench-{prefix}-"))
    procs = Procs(tmp)
    try:
        yield tmp, procs
    finally:
        procs.close()
        if os.environ.get("TIPCPY_BENCH_KEEP"):
            print(f"(kept {tmp})", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)


class Daemon:
    """One tipcd (or bench.peerd) process on loopback with its own run dir."""

    def __init__(self, procs: Procs, tmp: Path, name: str, identity: str, port: int,
                 peer_port: int | None, tolerance: int | None = None,
                 argv0: list[str] | None = None, extra: list[str] | None = None) -> None:
        self.name = name
        self.identity = identity
        self.port = port
        self.run_dir = tmp / name
        self.run_dir.mkdir()
        argv = list(argv0 or _cmd("tipcd")) + [
            "--run-dir", str(self.run_dir), "--identity", identity, "--log-level", "warning"]
        if tolerance is not None:
            argv += ["--tolerance", str(tolerance)]
        if peer_port is not None:
            argv += ["--bearer", f"media udp name b0 localip 127.0.0.1 localport {port} "
                     f"remoteip 127.0.0.1 remoteport {peer_port}"]
        argv += extra or []
        self.proc = procs.popen(argv, log_name=name)
        self.procs = procs
        self.log_path = tmp / f"{name}.log"
        wait_for(lambda: (self.run_dir / "ctl.sock").exists() or self.proc.poll() is not None,
                 30, f"{name} control socket")
        if self.proc.poll() is not None:
            raise RuntimeError(f"{name} exited {self.proc.returncode}: {self.log()}")

    @property
    def pid(self) -> int:
        return self.proc.pid

    @property
    def env(self) -> dict[str, str]:
        return child_env(TIPCPY_RUN_DIR=str(self.run_dir))

    def call(self, op: str, args: dict[str, Any] | None = None, timeout: float = 30.0) -> Any:
        from tipcpy.runtime.ctlclient import call

        return call(op, args, path=self.run_dir / "ctl.sock", timeout=timeout)

    def links_up(self) -> list[str]:
        return [ln["name"] for ln in self.call("link.list")
                if ln["name"] != "broadcast-link" and ln["up"]]

    def wait_link_up(self, timeout: float = 30.0) -> None:
        wait_for(self.links_up, timeout, f"{self.name}: a link up", interval=0.02)

    def rx_packets(self) -> int:
        n = 0
        for s in self.call("link.stat.show"):
            if not s.get("broadcast"):
                n += int((s.get("stats") or s).get("rx_packets", 0) or 0)
        return n

    def log(self) -> str:
        try:
            return self.log_path.read_text()[-3000:]
        except OSError:
            return ""


def dump_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    tmp.replace(path)

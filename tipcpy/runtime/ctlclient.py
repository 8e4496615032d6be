"""Control client used by the ``tipc`` CLI (blocking: the CLI is a one-shot process).

``call(op, args)`` sends one request line to ``$RUN_DIR/ctl.sock`` and returns the
``result`` or raises :class:`ControlError` with the daemon's errno and message. When no
daemon answers it raises :class:`DaemonNotRunning`, whose first line is exactly
``tipcd is not running (no control socket at PATH)`` so scripts and tests can match it.
"""

from __future__ import annotations

import errno
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .control import ControlError

DEFAULT_RUN_DIR = "/run/tipcpy"
CTL_SOCK = "ctl.sock"


def run_dir(explicit: str | os.PathLike[str] | None = None) -> Path:
    """``explicit`` > ``$TIPCPY_RUN_DIR`` > ``/run/tipcpy``."""
    return Path(explicit or os.environ.get("TIPCPY_RUN_DIR") or DEFAULT_RUN_DIR)


def ctl_path(explicit: str | os.PathLike[str] | None = None) -> Path:
    return run_dir(explicit) / CTL_SOCK


class DaemonNotRunning(ControlError):
    """No daemon behind the control socket (missing file or nobody listening)."""

    def __init__(self, path: Path) -> None:
        msg = (f"tipcd is not running (no control socket at {path})\n"
               "hint: start it with `tipcd` (as root, or with --run-dir DIR and "
               "TIPCPY_RUN_DIR=DIR for the tipc command)")
        super().__init__(errno.ENOENT, msg)
        self.path = path


class ControlClient:
    """One connection to the daemon; usable for several requests or one stream."""

    def __init__(self, path: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> None:
        self.path = Path(path) if path is not None else ctl_path()
        self.timeout = timeout
        self._sock: socket.socket | None = None
        self._buf = b""

    def connect(self) -> ControlClient:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            self._connect(s)
        except (FileNotFoundError, ConnectionRefusedError, NotADirectoryError):
            s.close()
            raise DaemonNotRunning(self.path) from None
        except PermissionError:
            s.close()
            raise ControlError(errno.EACCES, f"permission denied on {self.path}: run as root "
                               "or as a member of group 'tipc'") from None
        self._sock = s
        return self

    def _connect(self, s: socket.socket) -> None:
        """connect(), waiting while the daemon's listen backlog is full: a Unix socket
        with a timeout answers EAGAIN then (it used to surface as `internal error:
        BlockingIOError`); after ``timeout`` seconds it is a clear ControlError."""
        deadline = time.monotonic() + self.timeout
        pause = 0.002
        while True:
            try:
                s.connect(str(self.path))
                return
            except BlockingIOError:
                if time.monotonic() + pause > deadline:
                    raise ControlError(errno.EAGAIN, f"tipcd is too busy to accept a control "
                                       f"connection (backlog of {self.path} full for "
                                       f"{self.timeout:g} s)") from None
                time.sleep(pause)
                pause = min(pause * 2, 0.05)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def __enter__(self) -> ControlClient:
        return self.connect() if self._sock is None else self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _readline(self) -> dict[str, Any]:
        assert self._sock is not None
        while b"\n" not in self._buf:
            try:
                chunk = self._sock.recv(65536)
            except TimeoutError:
                raise ControlError(errno.ETIMEDOUT, f"tipcd did not answer within "
                                   f"{self.timeout:g} s") from None
            if not chunk:
                raise ControlError(errno.ECONNRESET, "tipcd closed the control connection")
            self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        return json.loads(line)

    def _send(self, op: str, args: dict[str, Any] | None) -> None:
        if self._sock is None:
            self.connect()
        assert self._sock is not None
        self._sock.sendall((json.dumps({"op": op, "args": args or {}}) + "\n").encode())

    def call(self, op: str, args: dict[str, Any] | None = None) -> Any:
        """One request/answer; raises ControlError on ``ok: false``."""
        try:
            self._send(op, args)
        except (BrokenPipeError, ConnectionResetError):
            # the daemon refused the connection (EMFILE, ENOBUFS...) and closed it before
            # our request went out: its one answer line says why
            pass
        ans = self._readline()
        if not ans.get("ok"):
            raise ControlError(int(ans.get("errno") or errno.EIO), str(ans.get("error")))
        return ans.get("result")

    def stream(self, op: str, args: dict[str, Any] | None = None) -> Iterator[Any]:
        """A streaming op: yields each event until the daemon or the caller closes."""
        self._send(op, args)
        assert self._sock is not None
        self._sock.settimeout(None)
        while True:
            ans = self._readline()
            if not ans.get("ok"):
                raise ControlError(int(ans.get("errno") or errno.EIO), str(ans.get("error")))
            if "event" in ans:
                yield ans["event"]
            else:
                return


def call(op: str, args: dict[str, Any] | None = None,
         path: str | os.PathLike[str] | None = None, timeout: float = 10.0) -> Any:
    """Convenience one-shot request (what most CLI commands use)."""
    try:
        with ControlClient(path, timeout=timeout) as c:
            return c.call(op, args)
    except ControlError:
        raise
    except OSError as e:       # the daemon dropped us (refused, stopping): say so, no trace
        raise ControlError(e.errno or errno.EIO, f"control connection to tipcd failed: "
                           f"{e.strerror or e}") from None


def cli_call(op: str, args: dict[str, Any] | None = None) -> Any:
    """What the ``tipc`` commands use: errors printed the iproute2 way, then exit.

    * no daemon: the not-running message (stderr), exit status 1;
    * the daemon refused: ``Error: <reason>`` and ``kernel answers: <strerror>`` on
      stderr, exit status 255 - the same shape and status as iproute2 printing a kernel
      netlink error, so scripts that check for failure keep working.
    """
    import sys

    try:
        return call(op, args)
    except DaemonNotRunning as e:
        print(e.message, file=sys.stderr)
        sys.exit(1)
    except ControlError as e:
        msg = e.message.rstrip()
        print(f"Error: {msg}{'' if msg.endswith('.') else '.'}", file=sys.stderr)
        print(f"kernel answers: {os.strerror(e.errno)}", file=sys.stderr)
        sys.exit(255)

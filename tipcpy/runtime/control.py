"""Control server: the daemon end of the ``tipc`` CLI's JSON-lines protocol.

Protocol (docs/HACKING.md): a Unix stream socket ``$RUN_DIR/ctl.sock``; one JSON object per
line each way. Request ``{"op": "bearer.enable", "args": {...}}``; answer
``{"ok": true, "result": ...}`` or ``{"ok": false, "errno": N, "error": "..."}``. A handler
may return an async iterator, which makes the op *streaming*: one ``{"ok": true, "event": ...}``
line per item until the client closes.

Access: the socket is created 0660 (group ``tipc`` if that group exists) and every peer is
checked with SO_PEERCRED — root, the daemon's own user, and members of group ``tipc`` are
served; anyone else gets one EACCES answer and is disconnected. Checking credentials as
well as file modes matters because the run dir may be shared or mis-permissioned.

Robustness: a malformed line, an unknown op, a bad argument or a bug in a handler gives
that client an error answer; it never takes the daemon down. A request line is at most
MAX_LINE bytes and its JSON at most MAX_DEPTH deep: the depth is counted before the JSON
parser (which recurses) sees the line, so 100,000 nested ``[`` are one EINVAL answer and
the connection stays usable.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import grp
import json
import logging
import os
import pwd
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("tipcpy.control")

MAX_LINE = 1 << 16        # the largest real request (bearer.enable) is ~250 bytes
MAX_DEPTH = 8             # {"op", "args": {...}}: 2 is all a valid request needs
TIPC_GROUP = "tipc"

Handler = Callable[[str, dict[str, Any]], Any | Awaitable[Any]]


class ControlError(Exception):
    """An op failed in a way the client should see: errno + a sentence saying what to do."""

    def __init__(self, errno_: int, message: str) -> None:
        super().__init__(message)
        self.errno = errno_
        self.message = message

    def __str__(self) -> str:
        return self.message


def _tipc_gid() -> int | None:
    try:
        return grp.getgrnam(TIPC_GROUP).gr_gid
    except KeyError:
        return None


def peer_allowed(uid: int, gid: int) -> bool:
    """root, our own user, or a member (primary or supplementary) of group ``tipc``."""
    if uid == 0 or uid == os.geteuid():
        return True
    tgid = _tipc_gid()
    if tgid is None:
        return False
    if gid == tgid:
        return True
    try:
        name = pwd.getpwuid(uid).pw_name
        return name in grp.getgrgid(tgid).gr_mem
    except KeyError:
        return False


def _peercred(writer: asyncio.StreamWriter) -> tuple[int, int, int] | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    try:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    except OSError:
        return None
    return struct.unpack("3i", raw)  # pid, uid, gid


def json_depth(line: bytes, limit: int = MAX_DEPTH) -> int:
    """Nesting depth of the JSON text ``line`` (brackets inside strings skipped), counted
    up to just past ``limit``: linear, without recursion, and skipped outright when the
    line holds too few brackets to be that deep."""
    if line.count(b"[") + line.count(b"{") <= limit:
        return min(line.count(b"[") + line.count(b"{"), limit)
    depth = top = 0
    in_str = escaped = False
    for c in line:
        if in_str:
            if escaped:
                escaped = False
            elif c == 0x5C:                     # backslash
                escaped = True
            elif c == 0x22:                     # quote
                in_str = False
        elif c == 0x22:
            in_str = True
        elif c in (0x5B, 0x7B):                 # [ {
            depth += 1
            if depth > top:
                top = depth
                if top > limit:
                    break
        elif c in (0x5D, 0x7D):                 # ] }
            depth -= 1
    return top


def parse_request(line: bytes) -> tuple[str, dict[str, Any]]:
    """One request line -> (op, args); ValueError says what is wrong with it."""
    if json_depth(line) > MAX_DEPTH:
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels")
    try:
        req = json.loads(line)
    except RecursionError:          # not reachable after the depth check; belt and braces
        raise ValueError(f"JSON nested deeper than {MAX_DEPTH} levels") from None
    if not isinstance(req, dict) or not isinstance(req.get("op"), str):
        raise ValueError("expected an object with a string 'op'")
    args = req.get("args")
    if args is None:
        args = {}
    if not isinstance(args, dict):
        raise ValueError("'args' must be an object")
    unknown = set(req) - {"op", "args"}
    if unknown:
        raise ValueError(f"unknown request key(s) {', '.join(sorted(unknown))[:80]}")
    return req["op"], args


def _encode(obj: Any) -> bytes:
    return (json.dumps(obj, separators=(",", ":"), default=str) + "\n").encode()


class ControlServer:
    """Serves ``handler(op, args)`` on a Unix socket; see the module docstring."""

    def __init__(self, path: str | os.PathLike[str], handler: Handler) -> None:
        self.path = Path(path)
        self.handler = handler
        self._server: asyncio.AbstractServer | None = None
        self._clients: set[asyncio.Task[Any]] = set()

    async def start(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()          # stale socket of a dead daemon (caller checked pid)
        old = os.umask(0o117)
        try:
            self._server = await asyncio.start_unix_server(self._serve, path=str(self.path),
                                                           limit=MAX_LINE)
        finally:
            os.umask(old)
        os.chmod(self.path, 0o660)
        gid = _tipc_gid()
        if gid is not None:
            with contextlib.suppress(OSError):
                os.chown(self.path, -1, gid)

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            self._server = None
        for t in list(self._clients):
            t.cancel()
        for t in list(self._clients):
            with contextlib.suppress(BaseException):
                await t
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._clients.add(task)
        try:
            cred = _peercred(writer)
            if cred is not None and not peer_allowed(cred[1], cred[2]):
                log.warning("refused control client pid=%d uid=%d gid=%d", *cred)
                writer.write(_encode({"ok": False, "errno": errno.EACCES,
                                      "error": "permission denied: only root and members of "
                                      f"group '{TIPC_GROUP}' may control tipcd"}))
                await writer.drain()
                return
            await self._session(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            if task is not None:
                self._clients.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                line = await reader.readline()
            except (asyncio.LimitOverrunError, ValueError):
                writer.write(_encode({"ok": False, "errno": errno.EMSGSIZE,
                                      "error": f"request longer than {MAX_LINE} bytes"}))
                await writer.drain()
                return
            if not line:
                return
            if not line.strip():
                continue
            answer = await self._answer(line, writer, reader)
            if answer is None:      # streaming op finished (client went away)
                return
            writer.write(_encode(answer))
            await writer.drain()

    async def answer(self, line: bytes) -> dict[str, Any] | None:
        """The answer to one request line, as the socket would carry it (in-process: for
        tests and tools); a streaming op's iterator is closed at once."""
        return await self._answer(line, None)

    async def _answer(self, line: bytes, writer: asyncio.StreamWriter | None,
                      reader: asyncio.StreamReader | None = None) -> dict[str, Any] | None:
        try:
            op, args = parse_request(line)
        except ValueError as e:
            return {"ok": False, "errno": errno.EINVAL, "error": f"malformed request: {e}"}
        try:
            result: Any = self.handler(op, args)
            if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
                result = await result
            if hasattr(result, "__aiter__"):
                if writer is None:
                    await result.aclose()
                    return {"ok": True, "result": "stream"}
                await self._stream(result, writer, reader)
                return None
            return {"ok": True, "result": result}
        except ControlError as e:
            return {"ok": False, "errno": e.errno, "error": e.message}
        except OSError as e:
            return {"ok": False, "errno": e.errno or errno.EIO, "error": str(e.strerror or e)}
        except asyncio.CancelledError:
            raise
        except Exception as e:  # a bug in a handler must not kill the daemon
            log.exception("control op %s failed", op)
            return {"ok": False, "errno": errno.EIO, "error": f"internal error in {op}: {e!r}"}

    async def _stream(self, it: AsyncIterator[Any], writer: asyncio.StreamWriter,
                      reader: asyncio.StreamReader | None = None) -> None:
        """Write one line per item until the iterator ends or the client goes away.

        The client closing is noticed at once (EOF on the reader), not only at the next
        write, so an idle stream (``tipc events`` with nothing happening) does not keep
        its subscription alive after Ctrl-C."""
        async def pump() -> None:
            async for item in it:
                writer.write(_encode({"ok": True, "event": item}))
                await writer.drain()

        async def watch() -> None:
            assert reader is not None
            while await reader.read(4096):
                pass                        # anything the client sends while streaming

        tasks = [asyncio.ensure_future(pump())]
        if reader is not None:
            tasks.append(asyncio.ensure_future(watch()))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            for t in done:
                if t is tasks[0] and not t.cancelled() and t.exception() is not None:
                    exc = t.exception()
                    if not isinstance(exc, ConnectionError):
                        raise exc  # type: ignore[misc]
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(BaseException):
                    await t
            aclose = getattr(it, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()

"""The application end of tipcd's client transport: one Unix stream connection per socket.

Why it is built this way:

* **readiness = a message is available.** The application's ``fileno()`` is this Unix
  socket, so ``select``/``selectors``/asyncio see the kernel buffer. We read ahead with
  ``MSG_PEEK`` (one syscall for many frames) and remove the bytes of a peeked batch from
  the kernel only once every complete frame in it has been handed out. So the fd is
  readable exactly while a frame we have not delivered is still there.
  Exception: a synchronous request (bind, getsockopt, ...) must read past data frames to
  find its answer; those frames move to :attr:`Channel.events` and :meth:`Channel.pending`
  reports them (tipcpy.aio checks it; plain ``select`` users rarely mix the two).
* **writes go straight out** (one non-blocking ``sendmsg`` per message, header and payload
  as two iovecs, no copy); when tipcd stops reading us (TIPC congestion) the write
  blocks, like a kernel TIPC sender sleeping -- or, non-blocking, raises EAGAIN before the
  message is accepted.
* **big frames skip the read-ahead.** A frame of ``BIG_FRAME`` bytes or more (a 60 KB
  message) is read once, by a consuming ``recv`` straight into the ``bytes`` handed to
  the application, once its head is in the window; peeking it, discarding it and
  copying it out of the window would copy it three times. After one, the next peek is
  small (``PEEK_HEAD``) so that the following big frames are not copied ahead either;
  small frames bring the window back to ``PEEK_SIZE``. The readiness rule holds: only
  the bytes of the frame being delivered leave the kernel.
* **receive credit is returned in batches** (CONSUMED every 32 messages / 16 KiB, and
  always before we wait), so TIPC connection flow control works without a syscall per
  message. Connectionless sockets batch up to 128 KiB (``credit_bytes``): their credit
  only frees receive buffer (2 MB and up per importance), and 16 KiB would mean one
  CONSUMED per big message.
* threads: one thread at a time is "the reader"; answers to another thread's request
  are handed over through a condition variable.
"""

from __future__ import annotations

import errno
import os
import select
import socket as _std
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from tipcpy import _uds as P

DEFAULT_RUN_DIR = "/run/tipcpy"
PEEK_SIZE = 256 * 1024
PEEK_HEAD = 4 * 1024          # the window after a big frame (see the module doc)
BIG_FRAME = 32 * 1024         # frames at least this long are read once, past the window
CREDIT_BYTES = 16 * 1024
CREDIT_BYTES_CONNLESS = 128 * 1024
CREDIT_MSGS = 32
SMALL_WRITE = 4096
REPLY_KINDS = (P.R_OK, P.R_ERR)
_POLLIN = select.POLLIN
_POLLOUT = select.POLLOUT
_E_DATA = P.E_DATA
_DATA_FRAME_UNPACK = P.DATA_FRAME.unpack_from
_DATA_HEAD = P.DATA_FRAME.size             # length + kind + E_DATA header
_DATA_BODY = 1 + P.DATA_HDR.size           # the smallest E_DATA length field
_DATA_MIN = _DATA_HEAD                     # bytes needed to read an E_DATA head
_MAX_FRAME = P.MAX_FRAME


def run_dir() -> Path:
    """Where tipcd's sockets are: $TIPCPY_RUN_DIR, default /run/tipcpy."""
    return Path(os.environ.get("TIPCPY_RUN_DIR") or DEFAULT_RUN_DIR)


def socket_path(rdir: str | os.PathLike[str] | None = None) -> Path:
    return Path(rdir) / "tipc.sock" if rdir is not None else run_dir() / "tipc.sock"


class DaemonGone(ConnectionResetError):
    """tipcd closed our connection (stopped, crashed, or threw us out)."""


def connect_daemon(rdir: str | os.PathLike[str] | None = None) -> _std.socket:
    """A connected, non-blocking Unix socket to tipcd; a clear error if it is not there."""
    path = socket_path(rdir)
    s = _std.socket(_std.AF_UNIX, _std.SOCK_STREAM | _std.SOCK_CLOEXEC)
    try:
        s.connect(str(path))
    except FileNotFoundError:
        s.close()
        raise OSError(errno.ENOENT, f"tipcd is not running: {path} does not exist (start "
                      f"a node with `tipcd --run-dir {path.parent} --bearer ...`, or point "
                      "TIPCPY_RUN_DIR at a running node's run dir)") from None
    except ConnectionRefusedError:
        s.close()
        raise OSError(errno.ECONNREFUSED, f"tipcd is not running: nobody accepts on {path} "
                      f"(a stale socket; start tipcd with --run-dir {path.parent})") from None
    except PermissionError:
        s.close()
        raise OSError(errno.EACCES, f"permission denied on {path}: join group 'tipc' or run "
                      "as the user tipcd runs as") from None
    s.setblocking(False)
    return s


def _deadline(timeout: float | None) -> float | None:
    if timeout is None:
        return None
    return time.monotonic() + timeout


def _remaining(deadline: float | None) -> float | None:
    """Seconds left (>= 0), None = forever."""
    if deadline is None:
        return None
    return max(0.0, deadline - time.monotonic())


class Channel:
    """Frames over one connection to tipcd, with the read-ahead/readiness rules above."""

    def __init__(self, sock: _std.socket) -> None:
        self.sock = sock
        self.fd = sock.fileno()
        self._peek = bytearray(PEEK_SIZE)
        self._pmv = memoryview(self._peek)
        self._plen = 0             # bytes in the peek window = head of the kernel buffer
        self._ppos = 0             # of which handed out already (still in the kernel)
        self._partial: bytearray | None = None   # a frame being read by consuming reads
        self._peek_n = PEEK_SIZE   # how much the next peek asks for
        self.big_frame = BIG_FRAME  # > MAX_FRAME turns the direct read off (tests: plain path)
        self.credit_bytes = CREDIT_BYTES
        self.events: deque[tuple[int, bytes]] = deque()   # frames read past by a request
        self.replies: deque[tuple[int, bytes]] = deque()
        self.asyncerr: tuple[int, str] | None = None
        self._scan_seen = 0
        self.closed_by_daemon = False
        self._wbuf = bytearray()
        self._wmu = threading.Lock()
        self._mu = threading.Lock()
        self._cv = threading.Condition(self._mu)
        self._reading = False
        self._credit_b = 0
        self._credit_m = 0
        self._poll = select.poll()
        self._poll_mask = 0
        self._pollmu = threading.Lock()
        self.on_event: Any = None      # set by the socket: called for E_* frames

    def close(self) -> None:
        try:
            self.flush_nowait()
        except OSError:
            pass
        self.sock.close()

    # ------------------------------------------------------------------ writing
    def write(self, head: bytes, data: Any = b"", deadline: float | None = None,
              nonblocking: bool = False) -> None:
        """Send one frame (``head`` + ``data``).

        Non-blocking and nothing can be written -> BlockingIOError, frame not sent.
        Otherwise the frame is committed once its first byte is out; the rest waits in
        our buffer and is flushed here (blocking) or before our next wait.
        """
        with self._wmu:
            if self._wbuf:
                self._flush_locked(deadline, nonblocking)
                if self._wbuf:
                    raise BlockingIOError(errno.EAGAIN, "tipcd is not reading (congestion)")
            total = len(head) + len(data)
            try:
                if total <= SMALL_WRITE:
                    # one copy of a small message is cheaper than sendmsg's iovec list
                    n = self.sock.send(head + data if data else head)
                else:
                    n = self.sock.sendmsg([head, data])
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                raise DaemonGone(errno.ECONNRESET, "tipcd closed the connection") from None
            if n == total:
                return
            if n == 0:
                if nonblocking:
                    raise BlockingIOError(errno.EAGAIN, "tipcd is not reading (congestion)")
                if not self._wait(_POLLOUT, deadline):
                    raise TimeoutError(errno.ETIMEDOUT, "timed out")
                return self._write_rest(head, data, 0, deadline, nonblocking)
            self._write_rest(head, data, n, deadline, nonblocking)

    def _write_rest(self, head: bytes, data: Any, n: int, deadline: float | None,
                    nonblocking: bool) -> None:
        hl = len(head)
        if not nonblocking and deadline is None:
            # blocking: the call returns once all is out, so finish from the caller's
            # buffers (no copy of a big message into ours)
            hv = memoryview(head)
            dv = memoryview(data).cast("B") if len(data) else memoryview(b"")
            total = hl + len(dv)
            sendmsg = self.sock.sendmsg
            while n < total:
                try:
                    k = sendmsg([hv[n:], dv] if n < hl else [dv[n - hl:]])
                except BlockingIOError:
                    k = 0
                except (BrokenPipeError, ConnectionResetError):
                    raise DaemonGone(errno.ECONNRESET, "tipcd closed the connection") from None
                if k:
                    n += k
                else:
                    self._wait(_POLLOUT, None)
            return
        # the frame is committed: keep its rest (copied once) for the next flush
        if n < hl:
            self._wbuf += head[n:]
            self._wbuf += data
        else:
            self._wbuf += memoryview(data).cast("B")[n - hl:] if len(data) else b""
        try:
            self._flush_locked(0.0, True)
        except BlockingIOError:
            pass

    def _flush_locked(self, deadline: float | None, nonblocking: bool) -> None:
        while self._wbuf:
            try:
                n = self.sock.send(self._wbuf)
            except BlockingIOError:
                n = 0
            except (BrokenPipeError, ConnectionResetError):
                self._wbuf.clear()
                raise DaemonGone(errno.ECONNRESET, "tipcd closed the connection") from None
            if n:
                del self._wbuf[:n]
                continue
            if nonblocking:
                return
            if not self._wait(_POLLOUT, deadline):
                return

    def flush_nowait(self) -> None:
        with self._wmu:
            if self._wbuf:
                self._flush_locked(None, True)

    def has_unsent(self) -> bool:
        return bool(self._wbuf)

    def credit(self, nbytes: int, force: bool = False) -> None:
        """Account a message the application read; tell tipcd in batches."""
        self._credit_b += nbytes
        self._credit_m += 1
        if force or self._credit_b >= self.credit_bytes or self._credit_m >= CREDIT_MSGS:
            self.send_credit()

    def send_credit(self) -> None:
        if not self._credit_m and not self._credit_b:
            return
        b, m = self._credit_b, self._credit_m
        self._credit_b = self._credit_m = 0
        try:
            self.write(P.HDR.pack(9, P.CONSUMED) + P.II.pack(b, m), nonblocking=True)
        except BlockingIOError:
            self._credit_b += b        # try again before the next wait
            self._credit_m += m

    # ------------------------------------------------------------------ waiting
    def _wait(self, mask: int, deadline: float | None) -> bool:
        """poll() our fd; True if ready before the deadline.

        One poll object is reused (no register per wait); a select.poll object refuses
        concurrent poll() calls, so a thread that finds it busy (another thread blocked in
        a receive while this one sends) polls with a poll object of its own.
        """
        rem = _remaining(deadline)
        ms = -1 if rem is None else int(rem * 1000 + 0.999)
        if not self._pollmu.acquire(False):
            p = select.poll()
            p.register(self.fd, mask)
            while True:
                try:
                    return bool(p.poll(ms))
                except InterruptedError:
                    continue
        try:
            if self._poll_mask != mask:
                if self._poll_mask:
                    self._poll.modify(self.fd, mask)
                else:
                    self._poll.register(self.fd, mask)
                self._poll_mask = mask
            while True:
                try:
                    ev = self._poll.poll(ms)
                except InterruptedError:
                    continue
                return bool(ev)
        finally:
            self._pollmu.release()

    # ------------------------------------------------------------------ reading
    def _discard(self) -> None:
        """Remove handed-out frames of the peek window from the kernel buffer."""
        p = self._ppos
        if not p:
            return
        scratch = self._pmv[:p]
        got = 0
        while got < p:
            try:
                k = self.sock.recv_into(scratch[got:], p - got)
            except BlockingIOError:
                continue        # cannot happen: the bytes are there
            if not k:
                break
            got += k
        # keep what was peeked beyond p (it stays at the kernel head)
        rest = self._plen - p
        if rest:
            self._peek[:rest] = self._peek[p:self._plen]
        self._plen = rest
        self._ppos = 0

    def _complete_at(self, pos: int) -> int:
        """End offset of a complete frame at ``pos`` in the window, else 0."""
        n = self._plen
        if n - pos < 5:
            return 0
        length = P.LEN.unpack_from(self._peek, pos)[0]
        if length == 0 or length > P.MAX_FRAME:
            raise OSError(errno.EPROTO, f"tipcd sent a bad frame (length {length})")
        end = pos + 4 + length
        return end if end <= n else 0

    def _take(self, deadline: float | None) -> tuple[int, bytes] | None:
        """The next frame in stream order, or None if none came before the deadline."""
        while True:
            if self._partial is not None:
                fr = self._read_partial(deadline)
                if fr is None:
                    return None
                return fr
            p = self._ppos
            if self._plen - p >= 5:
                length = P.LEN.unpack_from(self._peek, p)[0]
                if length >= self.big_frame and length <= _MAX_FRAME:
                    kind = self._peek[p + 4]
                    body = self._take_big(p, 5, length)
                    if body is None:
                        continue            # only part of it was there: _read_partial
                    return kind, body
            end = self._complete_at(p)
            if end:
                kind = self._peek[p + 4]
                body = bytes(self._pmv[p + 5:end])
                self._ppos = end
                self._peek_n = PEEK_SIZE
                if not self._complete_at(end):
                    self._discard()
                return kind, body
            self._discard()
            # the window now holds the start of an incomplete frame (or nothing)
            if self._peek_more() is None:                     # EOF
                if self._plen:
                    raise OSError(errno.EPROTO, "tipcd closed the connection mid-frame")
                self.closed_by_daemon = True
                raise DaemonGone(errno.ECONNRESET, "tipcd closed the connection "
                                 "(daemon stopped, or the socket was refused)")
            if self._complete_at(0):
                continue
            if self._plen:
                # an incomplete frame at the head: finish it with consuming reads
                self._start_partial()
                continue
            # nothing there: wait
            if deadline is not None and deadline <= 0:
                return None
            self.send_credit()
            with self._wmu:
                if self._wbuf:
                    self._flush_locked(0.0, True)
                mask = _POLLIN | (_POLLOUT if self._wbuf else 0)
            if not self._wait(mask, deadline):
                return None

    def _peek_more(self) -> int | None:
        """Peek the kernel buffer into the window; bytes now in it; None = EOF."""
        size = self._peek_n
        try:
            n = self.sock.recv_into(self._pmv, size, _std.MSG_PEEK)
        except BlockingIOError:
            return 0
        except ConnectionResetError:
            return None
        if n == 0:
            return None
        if n == size < PEEK_SIZE and n >= 4:
            # a small window filled up: widen it unless a big frame (read past the
            # window anyway) is at its head
            length = P.LEN.unpack_from(self._peek, 0)[0]
            if 4 + length > n and length < self.big_frame:
                self._peek_n = PEEK_SIZE
                try:
                    n = self.sock.recv_into(self._pmv, PEEK_SIZE, _std.MSG_PEEK) or n
                except (BlockingIOError, ConnectionResetError):
                    pass
        self._plen = n
        return n

    def _take_big(self, p: int, head: int, length: int) -> bytes | None:
        """Deliver the big frame at window offset ``p`` (length field ``length``) whose
        first ``head`` bytes are in the window: consume the handed-out bytes before it and
        its head, then read the rest of it straight into the bytes returned. None if only
        part of it has arrived: it is then in ``_partial`` (from its length field on),
        which ``_read_partial`` completes. The window is empty afterwards."""
        need = p + head
        scratch = self._pmv[:need]       # the same bytes as peeked: the window stays
        got = 0
        recv_into = self.sock.recv_into
        while got < need:
            try:
                k = recv_into(scratch[got:], need - got)
            except BlockingIOError:
                continue            # cannot happen: the bytes are there
            if not k:
                break
            got += k
        rest = 4 + length - head
        try:
            chunk = self.sock.recv(rest)
        except (BlockingIOError, ConnectionResetError):
            chunk = b""
        self._plen = self._ppos = 0
        self._peek_n = PEEK_HEAD
        if len(chunk) == rest:
            return chunk
        buf = bytearray(self._pmv[p:need])
        buf += chunk
        self._partial = buf
        return None

    def _start_partial(self) -> None:
        n = self._plen
        buf = bytearray(self._pmv[:n])
        self._ppos = n
        self._discard()
        self._partial = buf

    def _read_partial(self, deadline: float | None) -> tuple[int, bytes] | None:
        buf = self._partial
        assert buf is not None
        while True:
            if len(buf) >= 5:
                length = P.LEN.unpack_from(buf, 0)[0]
                if length == 0 or length > P.MAX_FRAME:
                    raise OSError(errno.EPROTO, f"tipcd sent a bad frame (length {length})")
                need = 4 + length - len(buf)
            else:
                need = 5 - len(buf)
            if need <= 0:
                self._partial = None
                return buf[4], bytes(buf[5:4 + P.LEN.unpack_from(buf, 0)[0]])
            try:
                chunk = self.sock.recv(need)
            except BlockingIOError:
                chunk = None
            except ConnectionResetError:
                chunk = b""
            if chunk == b"":
                raise OSError(errno.EPROTO, "tipcd closed the connection mid-frame")
            if chunk:
                buf += chunk
                continue
            if deadline is not None and deadline <= 0:
                return None
            if not self._wait(_POLLIN, deadline):
                return None

    def pending(self) -> bool:
        """Frames already taken off the kernel buffer (by a request) and not yet used."""
        return bool(self.events)

    def readable_now(self) -> bool:
        """A frame is in our queue or in the kernel buffer."""
        if self.events or self._partial is not None:
            return True
        with self._cv:         # the peek window belongs to the reader while one reads
            if not self._reading and self._complete_at(self._ppos):
                return True
        return bool(self._poll_once())

    def _poll_once(self) -> bool:
        return self._wait(_POLLIN, 0.0)

    # -- the reader role --------------------------------------------------------------
    def take_data(self) -> tuple[bytes, int, int, int, int, int, int] | None:
        """The next frame if it is an E_DATA frame complete in the peek window and no
        other thread reads: ``(data, src_port, src_node, dest_type, dest_lower,
        dest_upper, flags)``, errcode 0 only; else None and nothing taken (the caller
        goes through :meth:`next_event`) -- except a big frame only part of which has
        arrived: its head is then in ``_partial`` and ``next_event`` finishes it, as it
        would have (the general path takes it the same way). Same bookkeeping as
        ``_take`` (the batch leaves the kernel once its last frame is handed out), one
        plain lock instead of the condition variable's enter/notify round trips."""
        mu = self._mu
        mu.acquire()
        try:
            if self._reading or self.events or self._partial is not None:
                return None
            p = self._ppos
            n = self._plen
            if not n:
                # the window is empty (a batch leaves the kernel as its last frame is
                # handed out): look at the kernel buffer, never waiting
                n = self._peek_more() or 0
            if n - p < _DATA_MIN:
                return None
            peek = self._peek
            length, kind, sp, sn, err, dt, dl, du, fl = _DATA_FRAME_UNPACK(peek, p)
            if kind != _E_DATA or err or length < _DATA_BODY or length > _MAX_FRAME:
                return None
            if length >= self.big_frame:
                big = self._take_big(p, _DATA_HEAD, length)
                if big is None:
                    return None     # part of it taken: the general path waits for the rest
                return big, sp, sn, dt, dl, du, fl
            end = p + 4 + length
            if end > n:
                return None
            data = bytes(self._pmv[p + _DATA_HEAD:end])
            self._ppos = end
            self._peek_n = PEEK_SIZE
            if not self._complete_at(end):
                self._discard()
            return data, sp, sn, dt, dl, du, fl
        finally:
            mu.release()

    def next_event(self, deadline: float | None) -> tuple[int, bytes] | None:
        """Next non-answer frame (data or event) in order; None on timeout.

        ``deadline``: absolute monotonic time, None = forever, 0 = don't wait.
        """
        with self._cv:
            while True:
                if self.events:
                    return self.events.popleft()
                if not self._reading:
                    self._reading = True
                    break
                if not self._cv_wait(deadline):
                    return None
        try:
            while True:
                fr = self._take(deadline)
                if fr is None:
                    return None
                kind = fr[0]
                if kind in REPLY_KINDS:
                    with self._cv:
                        self.replies.append(fr)
                        self._cv.notify_all()
                    continue
                if kind == P.E_ASYNCERR and self._scan_seen:
                    self._scan_seen -= 1
                    continue
                return fr
        finally:
            with self._cv:
                self._reading = False
                self._cv.notify_all()

    def _cv_wait(self, deadline: float | None) -> bool:
        rem = _remaining(deadline)
        if rem is not None and rem <= 0:
            return False
        self._cv.wait(rem)
        return True

    def request(self, frame: bytes, deadline: float | None = None) -> tuple[int, bytes]:
        """Send a request and wait for its answer (R_OK/R_ERR); errors raised as OSError."""
        try:
            self.write(frame)
        except DaemonGone as gone:
            # tipcd may have said why before closing (a refused peer gets EACCES): that
            # answer is in our receive buffer, and it is the better error
            try:
                return self.wait_reply(0.0)
            except (DaemonGone, TimeoutError):
                raise gone from None
        return self.wait_reply(deadline)

    def wait_reply(self, deadline: float | None = None) -> tuple[int, bytes]:
        fr: tuple[int, bytes] | None
        with self._cv:
            while True:
                if self.replies:
                    fr = self.replies.popleft()
                    break
                if not self._reading:
                    self._reading = True
                    fr = None
                    break
                if not self._cv_wait(deadline):
                    raise TimeoutError(errno.ETIMEDOUT, "timed out waiting for tipcd")
        if fr is None:
            try:
                while True:
                    got = self._take(deadline)
                    if got is None:
                        raise TimeoutError(errno.ETIMEDOUT, "timed out waiting for tipcd")
                    if got[0] in REPLY_KINDS:
                        fr = got
                        break
                    if got[0] == P.E_ASYNCERR and self._scan_seen:
                        self._scan_seen -= 1
                        continue
                    self.events.append(got)
            finally:
                with self._cv:
                    self._reading = False
                    self._cv.notify_all()
        kind, body = fr
        if kind == P.R_ERR:
            err = P.I32.unpack_from(body)[0]
            raise OSError(err, body[4:].decode("utf-8", "replace") or os.strerror(err))
        return fr

    def scan_asyncerr(self) -> tuple[int, str] | None:
        """Look (without consuming) for an E_ASYNCERR in the kernel buffer (senders that
        never read learn of a failed pipelined send this way)."""
        with self._cv:
            if self._reading:
                return None
            self._reading = True
        try:
            if self._partial is not None:
                return None
            if self._ppos == 0:
                self._peek_more()
            pos = self._ppos
            skip = self._scan_seen
            while True:
                end = self._complete_at(pos)
                if not end:
                    return None
                if self._peek[pos + 4] == P.E_ASYNCERR:
                    if skip:
                        skip -= 1
                    else:
                        self._scan_seen += 1
                        body = bytes(self._pmv[pos + 5:end])
                        return P.I32.unpack_from(body)[0], body[4:].decode("utf-8", "replace")
                pos = end
        finally:
            with self._cv:
                self._reading = False
                self._cv.notify_all()

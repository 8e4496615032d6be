"""Numbered message streams over tipcpy.socket, and a checker that says what went wrong.

Each message is ``size`` bytes: a 4-byte big-endian sequence number first (what the
kernel guest's ``tipc-peer sink``/``flood`` use), then a filler derived from the number
so a damaged payload is seen too.  RDM and SEQPACKET keep message boundaries; STREAM
does not, so its receiver cuts the byte stream back into ``size``-byte records.

The receiver reports, with timestamps (seconds since the stream's start):
lost (sent and accepted, never delivered; split into gaps below the highest number
delivered and a tail after it), duplicated, reordered (delivered after a higher number),
corrupt (filler does not match), and errors (ECONNRESET and any other OSError).
Everything is bounded by a deadline: nothing here can hang a test.
"""

from __future__ import annotations

import errno as _errno
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from tipcpy import socket as ts

TYPES = {"rdm": ts.SOCK_RDM, "seqpacket": ts.SOCK_SEQPACKET, "stream": ts.SOCK_STREAM}


def payload(seq: int, size: int) -> bytes:
    """Message ``seq``: its number, then a filler that depends on it."""
    size = max(size, 4)
    head = seq.to_bytes(4, "big")
    pat = bytes(((seq + i) * 31) & 0xFF for i in range(min(size - 4, 64)))
    reps = (size - 4) // 64 + 1 if pat else 0
    return head + (pat * reps)[:size - 4]


@dataclass
class StreamError:
    t: float
    side: str
    op: str
    errno: int | None
    text: str

    @property
    def is_reset(self) -> bool:
        return self.errno == _errno.ECONNRESET


@dataclass
class Report:
    """What happened to one stream (sender and receiver merged)."""

    kind: str
    n: int
    accepted: int = 0          # sends that returned without error
    delivered: int = 0         # messages the receiver got, duplicates included
    unique: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupt: int = 0
    lost_gap: list[int] = field(default_factory=list)
    lost_tail: int = 0
    errors: list[StreamError] = field(default_factory=list)
    error_counts: dict[int | None, int] = field(default_factory=dict)
    lost_accepted_at: list[float] = field(default_factory=list)
    first_rx: float | None = None
    last_rx: float | None = None
    done_at: float | None = None

    @property
    def lost(self) -> int:
        return len(self.lost_gap) + self.lost_tail

    @property
    def resets(self) -> list[StreamError]:
        return [e for e in self.errors if e.is_reset]

    @property
    def clean(self) -> bool:
        """Everything accepted arrived once, in order, intact, with no error."""
        return (self.unique == self.accepted == self.n and not self.duplicated
                and not self.reordered and not self.corrupt and not self.errors)

    def summary(self) -> str:
        return (f"{self.kind}: n={self.n} accepted={self.accepted} delivered={self.delivered}"
                f" lost={self.lost} (gaps {len(self.lost_gap)}, tail {self.lost_tail})"
                f" dup={self.duplicated} reord={self.reordered} corrupt={self.corrupt}"
                f" errors={self.error_counts} first="
                f"{[(round(e.t, 3), e.side, e.op, e.errno) for e in self.errors]}")


class Checker:
    """Feeds of received messages in arrival order; thread-safe enough for one feeder."""

    def __init__(self, n: int, size: int, t0: float) -> None:
        self.n, self.size, self.t0 = n, size, t0
        self.seen = bytearray(n)
        self.highest = -1
        self.delivered = self.duplicated = self.reordered = self.corrupt = 0
        self.first_rx: float | None = None
        self.last_rx: float | None = None

    def feed(self, msg: bytes) -> None:
        now = time.monotonic() - self.t0
        if self.first_rx is None:
            self.first_rx = now
        self.last_rx = now
        self.delivered += 1
        if len(msg) < 4:
            self.corrupt += 1
            return
        seq = int.from_bytes(msg[:4], "big")
        if seq >= self.n or msg != payload(seq, self.size):
            self.corrupt += 1
            return
        if self.seen[seq]:
            self.duplicated += 1
            return
        self.seen[seq] = 1
        if seq < self.highest:
            self.reordered += 1
        else:
            self.highest = seq

    @property
    def unique(self) -> int:
        return sum(self.seen)

    def fill(self, r: Report, accepted: bytearray) -> None:
        r.delivered, r.duplicated = self.delivered, self.duplicated
        r.reordered, r.corrupt = self.reordered, self.corrupt
        r.unique = self.unique
        r.first_rx, r.last_rx = self.first_rx, self.last_rx
        seen, h = self.seen, self.highest
        r.lost_gap = [i for i in range(h + 1) if accepted[i] and not seen[i]]
        r.lost_tail = sum(1 for i in range(h + 1, self.n) if accepted[i] and not seen[i])


class Stream:
    """One numbered stream from node ``src`` (run dir) to node ``dst`` (run dir).

    ``start()`` binds the receiver on ``dst`` to ``{svc_type, inst}`` and starts its
    thread; ``send()`` (blocking, in the caller's thread or ``start_sender()``) connects
    from ``src`` and sends N messages, pacing at ``rate`` msgs/s if given.  ``join()``
    waits for the receiver (until it has everything accepted, the connection ended, or
    the deadline), and ``report()`` gives the verdict.
    """

    def __init__(self, kind: str, src: str, dst: str, svc_type: int, n: int = 2000,
                 size: int = 100, inst: int = 1, rate: float | None = None,
                 deadline: float = 30.0, idle: float = 3.0) -> None:
        if kind not in TYPES:
            raise ValueError(f"kind must be one of {sorted(TYPES)}")
        self.kind, self.src, self.dst = kind, src, dst
        self.svc_type, self.inst, self.n, self.size = svc_type, inst, n, size
        self.rate, self.deadline, self.idle = rate, deadline, idle
        self.t0 = time.monotonic()
        self.checker = Checker(n, size, self.t0)
        self.accepted_mask = bytearray(n)   # a refused RDM send leaves a hole
        self.accepted_at = [0.0] * n
        self.rep = Report(kind, n)
        self._lock = threading.Lock()
        self._sender_done = threading.Event()
        self._tx_broken = False
        self._ready = threading.Event()
        self._rx: threading.Thread | None = None
        self._tx: threading.Thread | None = None
        self._srv: Any = None

    def _err(self, side: str, op: str, e: BaseException) -> None:
        """Counted by errno; the first few of each errno kept with their time."""
        no = getattr(e, "errno", None)
        with self._lock:
            c = self.rep.error_counts[no] = self.rep.error_counts.get(no, 0) + 1
            if c <= 3:
                self.rep.errors.append(StreamError(time.monotonic() - self.t0, side, op,
                                                   no, str(e)))

    # ---- receiver
    def start(self) -> Stream:
        st = TYPES[self.kind]
        srv = ts.socket(ts.AF_TIPC, st, run_dir=self.dst)
        srv.bind((ts.TIPC_ADDR_NAMESEQ, self.svc_type, self.inst, self.inst))
        if st != ts.SOCK_RDM:
            srv.listen(4)
        self._srv = srv
        self.wait_visible()
        self._rx = threading.Thread(target=self._receive, name=f"rx-{self.kind}",
                                    daemon=True)
        self._rx.start()
        return self

    def wait_visible(self, timeout: float = 15.0) -> None:
        """Until the sender's node has the receiver's binding (name distribution)."""
        from pathlib import Path

        from tipcpy.runtime import ctlclient

        end = time.monotonic() + timeout
        path = Path(self.src) / "ctl.sock"
        while time.monotonic() < end:
            try:
                table = ctlclient.call("nametable.show", path=path)
            except (OSError, ctlclient.ControlError):
                table = []
            if any(p["type"] == self.svc_type and p["lower"] <= self.inst <= p["upper"]
                   for p in table):
                return
            time.sleep(0.05)
        raise TimeoutError(f"binding {{{self.svc_type},{self.inst}}} not visible on "
                           f"{self.src} after {timeout} s")

    def _expired(self) -> bool:
        return time.monotonic() - self.t0 > self.deadline

    def _receive(self) -> None:
        srv, st = self._srv, TYPES[self.kind]
        conn = None
        try:
            if st == ts.SOCK_RDM:
                conn = srv
            else:
                srv.settimeout(0.2)
                while conn is None:
                    if self._expired() or (self._sender_done.is_set()
                                           and self.rep.accepted == 0):
                        return
                    try:
                        conn, _ = srv.accept()
                    except TimeoutError:
                        continue
                    except OSError as e:  # its daemon killed: the stream ends here
                        self._err("rx", "accept", e)
                        return
            conn.settimeout(0.2)
            buf = bytearray()
            last = time.monotonic()
            while not self._expired():
                if self._sender_done.is_set() and not self._tx_broken:
                    # (a connection the sender saw break must break here too: wait for
                    # its error or EOF, up to the deadline)
                    if self.checker.unique >= self.rep.accepted:
                        return
                    if time.monotonic() - last > self.idle:
                        return
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError as e:
                    self._err("rx", "recv", e)
                    return
                if not data:
                    if st != ts.SOCK_RDM:
                        return              # EOF: the sender closed after its last message
                    continue
                last = time.monotonic()
                if st == ts.SOCK_STREAM:
                    buf += data
                    while len(buf) >= self.size:
                        self.checker.feed(bytes(buf[:self.size]))
                        del buf[:self.size]
                else:
                    self.checker.feed(data)
        finally:
            if conn is not None and conn is not srv:
                conn.close()

    # ---- sender
    def send(self) -> None:
        st = TYPES[self.kind]
        s = ts.socket(ts.AF_TIPC, st, run_dir=self.src)
        addr = (ts.TIPC_ADDR_NAME, self.svc_type, self.inst, 0)
        try:
            if st != ts.SOCK_RDM:
                s.settimeout(10.0)
                try:
                    s.connect(addr)
                except OSError as e:
                    self._err("tx", "connect", e)
                    return
            s.settimeout(max(1.0, self.deadline))
            gap = 1.0 / self.rate if self.rate else 0.0
            nxt = time.monotonic()
            for seq in range(self.n):
                if self._expired():
                    break
                if gap:
                    nxt += gap
                    pause = nxt - time.monotonic()
                    if pause > 0:
                        time.sleep(pause)
                msg = payload(seq, self.size)
                try:
                    if st == ts.SOCK_RDM:
                        s.sendto(msg, addr)
                    else:
                        s.sendall(msg)
                except OSError as e:
                    self._err("tx", "send", e)
                    if st != ts.SOCK_RDM or e.errno not in (_errno.EAGAIN,
                                                             _errno.EHOSTUNREACH):
                        self._tx_broken = st != ts.SOCK_RDM
                        break
                    continue
                with self._lock:
                    self.rep.accepted += 1
                    self.accepted_mask[seq] = 1
                    self.accepted_at[seq] = time.monotonic() - self.t0
        finally:
            self._sender_done.set()
            self._sent_socket = s
            if st == ts.SOCK_RDM:
                s.close()
            # connections are closed in join(), after the receiver has drained: closing
            # right away would race the last messages with the FIN

    def start_sender(self) -> Stream:
        self._tx = threading.Thread(target=self.send, name=f"tx-{self.kind}", daemon=True)
        self._tx.start()
        return self

    def join(self) -> Report:
        if self._tx is not None:
            self._tx.join(max(0.0, self.deadline - (time.monotonic() - self.t0)) + 1)
        if self._rx is not None:
            self._rx.join(max(0.0, self.deadline - (time.monotonic() - self.t0)) + 1)
        s = getattr(self, "_sent_socket", None)
        if s is not None:
            s.close()
        if self._srv is not None:
            self._srv.close()
        self.rep.done_at = time.monotonic() - self.t0
        self.checker.fill(self.rep, self.accepted_mask)
        seen, acc = self.checker.seen, self.accepted_mask
        self.rep.lost_accepted_at = [self.accepted_at[i] for i in range(self.n)
                                     if acc[i] and not seen[i]]
        return self.rep

    def run(self) -> Report:
        self.start()
        self.send()
        return self.join()

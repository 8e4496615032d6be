"""The client library's receive fast path (tipcpy.socket._recv_fast + Channel.take_data)
must behave exactly like the general path (_recv_impl -> next_event -> _on_frame).

We play tipcd on one end of a socketpair, write the same frame stream to a socket with
the fast path and to one without it, make the same calls, and compare everything the
application or tipcd can observe: results and exceptions, fd readiness after each step,
and the CONSUMED credit frames that come back.
"""

from __future__ import annotations

import select
import socket as S

import pytest

from tipcpy import _uds as P
from tipcpy import socket as ts
from tipcpy._client import Channel

NODE = 0x1001


def data_frame(data: bytes, sport: int = 7, snode: int = 0x2002, err: int = 0,
               dest: tuple[int, int, int] | None = None, returned: bool = False) -> bytes:
    fl = (P.DATA_HAS_DEST if dest else 0) | (P.DATA_RETURNED if returned else 0)
    d = dest or (0, 0, 0)
    return P.DATA_FRAME.pack(len(data) + 1 + P.DATA_HDR.size, P.E_DATA, sport, snode, err,
                             d[0], d[1], d[2], fl) + data


def asyncerr(err: int, text: str) -> bytes:
    return P.frame(P.E_ASYNCERR, P.I32.pack(err) + text.encode())


def drain(sock: S.socket) -> bytes:
    out = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except BlockingIOError:
            return out
        except ConnectionResetError:
            return out + b"<reset>"
        if not chunk:
            return out
        out += chunk


def run(fast: bool, sotype: int, script: list[tuple], big: bool = True) -> list:
    a, b = S.socketpair(S.AF_UNIX, S.SOCK_STREAM)
    a.setblocking(False)
    b.setblocking(False)
    b.setsockopt(S.SOL_SOCKET, S.SO_SNDBUF, 1 << 20)   # room for unread big frames
    s = ts.socket(ts.AF_TIPC, sotype, _claim=(Channel(a), 5, NODE, 0, 0))
    if not fast:
        s._recv_fast = lambda bufsize: None  # type: ignore[method-assign]
    if not big:
        s._chan.big_frame = 1 << 30   # big frames through the peek window like small ones
    s.settimeout(0.0)
    log: list = []
    try:
        for step in script:
            if step[0] == "write":
                b.sendall(step[1])
                continue
            if step[0] == "noticed":  # an E_ASYNCERR another path took (e.g. a send's scan)
                s._chan.asyncerr = step[1]
                continue
            name, *args = step
            try:
                log.append((name, getattr(s, name)(*args)))
            except Exception as e:
                log.append((name, type(e).__name__, getattr(e, "errno", None), str(e)))
            log.append(("readable", bool(select.select([s], [], [], 0)[0]), s.pending()))
        s.close()
        log.append(("to tipcd", drain(b)))
    finally:
        b.close()
    return log


def mixed_script() -> list[tuple]:
    big = bytes(range(256)) * 40
    one = data_frame(b"split across writes" * 3, dest=(1000, 5, 5))
    return [
        ("recvfrom", 100),                                   # nothing yet: EAGAIN
        ("write", data_frame(b"hello", dest=(1000, 1, 1)) + data_frame(b"")),
        ("recvfrom", 100),
        ("recv", 100),                                       # empty message
        ("recv", 100),
        ("write", b"".join(data_frame(b"m%03d" % i, sport=i) for i in range(40))),
        *[("recvfrom", 3 if i % 7 == 0 else 64) for i in range(10)],   # some truncated
        ("recvmsg", 64, 256),
        ("recv", 64, S.MSG_PEEK),
        *[("recvfrom", 64) for _ in range(28)],
        ("write", data_frame(big[:1024], err=2, returned=True, dest=(1000, 9, 9))),
        ("recvfrom", 64),                                    # a returned message
        ("recvmsg", 2048, 256),
        ("write", data_frame(b"x" * 10) + asyncerr(113, "no route") + data_frame(b"y")),
        ("recvfrom", 64),
        ("recvfrom", 64),                                    # the async error surfaces
        ("recvfrom", 64),
        ("write", asyncerr(104, "reset") + data_frame(b"v")),
        ("recvfrom", 64),
        ("recvfrom", 64),
        ("noticed", (32, "broken pipe")),
        ("write", data_frame(b"w")),
        ("recvfrom", 64),                                    # raised before the data
        ("recvfrom", 64),
        ("write", data_frame(big) + one[:10]),
        ("recvfrom", 20000),
        ("recvfrom", 20000),                                 # a frame cut in two
        ("write", one[10:]),
        ("recvfrom", 20000),
        ("recvfrom", -1),
        ("write", data_frame(b"z")),
        ("recvfrom", -1),
        ("recvfrom", 1),
        ("recvfrom", 1),
    ]


@pytest.mark.parametrize("sotype", [ts.SOCK_RDM, ts.SOCK_DGRAM, ts.SOCK_SEQPACKET])
def test_recv_fast_path_is_the_general_path(sotype: int) -> None:
    fast = run(True, sotype, mixed_script())
    slow = run(False, sotype, mixed_script())
    assert fast == slow
    got = [x[1] for x in fast if x[0] == "recvfrom" and len(x) == 2]
    if sotype != ts.SOCK_SEQPACKET:
        assert (b"hello", (ts.TIPC_ADDR_ID, 0x2002, 7, 0, 0)) in got
        assert any(x[0] == "recvfrom" and x[2] == 113 for x in fast if len(x) == 4)
        assert fast[-1][1]  # credits went back


def test_fast_path_taken() -> None:
    """The comparison above means something only if the fast path really runs."""
    a, b = S.socketpair(S.AF_UNIX, S.SOCK_STREAM)
    a.setblocking(False)
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, _claim=(Channel(a), 5, NODE, 0, 0))
    s.settimeout(0.0)
    b.sendall(data_frame(b"one") + data_frame(b"two", err=1, returned=True))
    assert s._recv_fast(100) == (b"one", 0x2002, 7)
    assert s._recv_fast(100) is None  # errcode: general path
    s.close()
    b.close()


# ------------------------------------------------------------------ big frames
def big_script() -> list[tuple]:
    """60 KB messages (read past the peek window) among small ones: whole, several per
    write, cut inside the head or inside the payload, returned (errcode), truncated by
    a short buffer, peeked, and read with recvmsg."""
    def blob(n: int, seed: int) -> bytes:
        return bytes((seed + i * 7) & 0xFF for i in range(n))

    b1, b2, b3 = (data_frame(blob(61440, k), sport=k, dest=(1000, k, k)) for k in (1, 2, 3))
    edge = data_frame(blob(32 * 1024 - 31, 9))        # length field exactly BIG_FRAME
    under = data_frame(blob(32 * 1024 - 32, 8))       # one byte under
    ret = data_frame(blob(61440, 4), err=2, returned=True, dest=(1000, 4, 4))
    huge = data_frame(blob(66000, 5), sport=5)
    return [
        ("write", b1),
        ("recvfrom", 70000),
        ("recvfrom", 70000),                                 # EAGAIN after it
        ("write", b1 + b2 + data_frame(b"small") + b3),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("write", b2[:20]),                                  # cut inside the head
        ("recvfrom", 70000),
        ("write", b2[20:40000]),                             # ... and inside the payload
        ("recvfrom", 70000),
        ("write", b2[40000:]),
        ("recvfrom", 70000),
        ("write", b3[:100]),                                 # head whole, payload not
        ("recvfrom", 70000),
        ("write", b3[100:] + b1[:5000]),                     # the next one starts too
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("write", b1[5000:]),
        ("recvfrom", 100),                                   # truncated
        ("write", b2 + b3),
        ("recv", 70000, S.MSG_PEEK),
        ("recvmsg", 70000, 256),
        ("recv", 70000),
        ("write", edge + under + data_frame(b"tail")),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("write", ret + huge),
        ("recvmsg", 70000, 256),                             # a returned 60 KB message
        ("recvfrom", 70000),
        ("write", data_frame(b"x") + b1 + asyncerr(113, "no route") + b2),
        ("recvfrom", 70000),
        ("recvfrom", 70000),
        ("recvfrom", 70000),                                 # the async error surfaces
        ("recvfrom", 70000),
        ("recvfrom", 70000),
    ]


@pytest.mark.parametrize("sotype", [ts.SOCK_RDM, ts.SOCK_SEQPACKET])
def test_big_frames_read_past_the_window_equal_the_window_path(sotype: int) -> None:
    """Reading big frames straight into bytes (fast path and general path) gives what
    the peek window gives: same messages, errors, readiness and credit to tipcd."""
    plain = run(False, sotype, big_script(), big=False)
    assert run(True, sotype, big_script(), big=True) == plain
    assert run(False, sotype, big_script(), big=True) == plain
    assert run(True, sotype, big_script(), big=False) == plain
    if sotype == ts.SOCK_RDM:
        got = [x[1][0] for x in plain if x[0] == "recvfrom" and len(x) == 2]
        assert sum(len(g) == 61440 for g in got) >= 8
        assert b"small" in got and b"tail" in got


def test_big_frame_skips_the_window() -> None:
    """The comparison above means something only if big frames really go past the
    window: the 60 KB is read once (never peeked whole), and the window shrinks to
    PEEK_HEAD after it, widening again for small frames."""
    from tipcpy import _client

    a, b = S.socketpair(S.AF_UNIX, S.SOCK_STREAM)
    a.setblocking(False)
    s = ts.socket(ts.AF_TIPC, ts.SOCK_RDM, _claim=(Channel(a), 5, NODE, 0, 0))
    s.settimeout(0.0)
    chan = s._chan
    peeked: list[int] = []
    real = a.recv_into

    class Spy:
        def __getattr__(self, name: str):
            return getattr(a, name)

        def recv_into(self, buf, n=0, flags=0):
            k = real(buf, n, flags)
            if flags & S.MSG_PEEK:
                peeked.append(k)
            return k

    chan.sock = Spy()  # type: ignore[assignment]
    big = bytes(range(256)) * 240
    mid = bytes(range(256)) * 40                  # 10 KB: more than PEEK_HEAD, not big
    b.sendall(data_frame(big) + data_frame(big) + data_frame(mid) + data_frame(b"s1")
              + data_frame(b"s2"))
    assert s.recv(70000) == big
    assert s.recv(70000) == big
    assert max(peeked[1:]) <= _client.PEEK_HEAD
    assert chan._peek_n == _client.PEEK_HEAD
    del peeked[:]
    assert s.recv(70000) == mid          # the small window widens: mid comes out of it
    assert chan._partial is None and chan._peek_n == _client.PEEK_SIZE
    assert peeked[-1] == len(data_frame(mid) + data_frame(b"s1") + data_frame(b"s2"))
    assert s.recv(10) == b"s1"
    assert s.recv(10) == b"s2"
    s.close()
    b.close()

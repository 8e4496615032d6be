"""tipcpy.socket argument validation, errno mapping and the client transport's own rules,
against the real ClientServer over a fake SocketLayer (tests/integration/fake_socklayer.py)."""

from __future__ import annotations

import errno
import os
import select
import socket as std
import struct
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tipcpy import _uds as P
from tipcpy import socket as ts
from tipcpy.runtime import clientsrv

from .fake_socklayer import NODE, FakeDaemon

SVC = (ts.TIPC_ADDR_NAMESEQ, 2000, 200, 210)
NAME = (ts.TIPC_ADDR_NAME, 2000, 205, 0)


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeDaemon]:
    d = FakeDaemon(tmp_path).start()
    yield d
    d.stop()


def sock(fake: FakeDaemon, t: int = ts.SOCK_RDM) -> ts.socket:
    return ts.socket(ts.AF_TIPC, t, run_dir=str(fake.run_dir))


def wait(pred, timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < end, "condition not reached"
        time.sleep(0.01)


# ------------------------------------------------------------------ module surface
def test_cpython_constants_same_values() -> None:
    names = [n for n in dir(std) if "TIPC" in n]
    for n in names:
        assert getattr(ts, n) == getattr(std, n), n
    assert ts.AF_TIPC == 30 and ts.SOL_TIPC == 271
    assert (ts.TIPC_SERVICE_RANGE, ts.TIPC_SERVICE_ADDR, ts.TIPC_SOCKET_ADDR) == (1, 2, 3)
    assert (ts.TIPC_ERRINFO, ts.TIPC_RETDATA, ts.TIPC_DESTNAME) == (1, 2, 3)
    assert ts.TIPC_ERR_NO_NAME == 1 and ts.TIPC_CONN_SHUTDOWN == 5
    assert ts.TIPC_SOCK_RECVQ_DEPTH == 132 and ts.TIPC_MCAST_REPLICAST == 134
    # the rest of the stdlib module is there
    assert ts.AF_INET == std.AF_INET and ts.gethostname is std.gethostname
    assert ts.timeout is std.timeout


def test_other_families_get_real_sockets() -> None:
    with ts.socket(ts.AF_INET, ts.SOCK_DGRAM) as s:
        assert isinstance(s, std.socket)
        s.bind(("127.0.0.1", 0))
    a, b = ts.socketpair()
    assert isinstance(a, std.socket)
    a.close()
    b.close()


def test_bad_type_and_proto_before_any_daemon(tmp_path: Path) -> None:
    with pytest.raises(OSError) as e:
        ts.socket(ts.AF_TIPC, std.SOCK_RAW, run_dir=str(tmp_path))
    assert e.value.errno == errno.EPROTOTYPE
    with pytest.raises(OSError) as e:
        ts.socket(ts.AF_TIPC, 99, run_dir=str(tmp_path))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        ts.socket(ts.AF_TIPC, ts.SOCK_RDM, 6, run_dir=str(tmp_path))
    assert e.value.errno == errno.EPROTONOSUPPORT


def test_daemon_not_running_says_where_and_how(tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIPCPY_RUN_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(OSError) as e:
        ts.socket(ts.AF_TIPC, ts.SOCK_RDM)
    assert e.value.errno == errno.ENOENT
    assert str(tmp_path / "nowhere") in str(e.value) and "tipcd" in str(e.value)
    # a stale socket file: nobody listening
    stale = std.socket(std.AF_UNIX, std.SOCK_STREAM)
    stale.bind(str(tmp_path / "tipc.sock"))
    stale.close()
    monkeypatch.setenv("TIPCPY_RUN_DIR", str(tmp_path))
    with pytest.raises(OSError) as e:
        ts.socket(ts.AF_TIPC, ts.SOCK_RDM)
    assert e.value.errno == errno.ECONNREFUSED and "start tipcd" in str(e.value)


@pytest.mark.parametrize("addr, exc", [
    ("x", TypeError), ([1, 2, 3, 4], TypeError), ((1, 2, 3), TypeError),
    ((1, 2, 3, 4, 5, 6), TypeError), ((9, 1, 2, 3), TypeError), ((1, 2, 3, "4"), TypeError),
    ((1, 2.0, 3, 4), TypeError),
])
def test_address_tuples_like_cpython(addr, exc) -> None:
    with pytest.raises(exc):
        ts.parse_addr(addr)


def test_parse_addr_struct_order() -> None:
    assert ts.parse_addr((ts.TIPC_ADDR_ID, 0x1001, 77, 0)) == (3, 2, 77, 0x1001, 0)
    assert ts.parse_addr((1, 100, 1, 2, -1)) == (1, -1, 100, 1, 2)
    assert ts.parse_addr((2, 100, 5, 0, ts.TIPC_NODE_SCOPE)) == (2, 3, 100, 5, 0)


# ------------------------------------------------------------------ through the transport
def test_errno_mapping(fake: FakeDaemon) -> None:
    s = sock(fake)
    cases = [
        (lambda: s.bind((ts.TIPC_ADDR_ID, NODE, 5, 0)), errno.EAFNOSUPPORT),
        (lambda: s.bind((ts.TIPC_ADDR_NAMESEQ, 10, 0, 1)), errno.EACCES),
        (lambda: s.bind((ts.TIPC_ADDR_NAMESEQ, 100, 5, 1)), errno.EINVAL),
        (lambda: s.sendto(b"x" * 66001, NAME), errno.EMSGSIZE),
        (lambda: s.listen(1), errno.EOPNOTSUPP),
        (lambda: s.accept(), errno.EOPNOTSUPP),
        (lambda: s.send(b"x"), errno.EDESTADDRREQ),
        (lambda: s.sendto(b"x", (ts.TIPC_ADDR_NAME, 4242, 1, 0)), errno.EHOSTUNREACH),
        (lambda: s.setsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, 4), errno.EINVAL),
        (lambda: s.setsockopt(ts.SOL_TIPC, 250, 1), errno.ENOPROTOOPT),
        (lambda: s.getsockopt(ts.SOL_TIPC, 250), errno.ENOPROTOOPT),
        (lambda: s.setsockopt(std.IPPROTO_IP, 1, 1), errno.ENOPROTOOPT),
        (lambda: s.getpeername(), errno.ENOTCONN),
    ]
    for fn, err in cases:
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == err, (fn, e.value)
        assert e.value.strerror, "every error carries a message"
    s.close()
    with pytest.raises(OSError) as e:
        s.sendto(b"x", NAME)
    assert e.value.errno == errno.EBADF
    assert s.fileno() == -1


def test_conn_types_misuse(fake: FakeDaemon) -> None:
    s = sock(fake, ts.SOCK_SEQPACKET)
    with pytest.raises(OSError) as e:
        s.send(b"x")
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        s.connect((ts.TIPC_ADDR_NAMESEQ, 100, 1, 2))
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError) as e:
        s.accept()
    assert e.value.errno == errno.EINVAL                # not listening
    with pytest.raises(OSError) as e:
        s.makefile()
    assert e.value.errno == errno.EOPNOTSUPP
    st = sock(fake, ts.SOCK_STREAM)
    st.setsockopt(std.IPPROTO_TCP, std.TCP_NODELAY, 1)  # ignored, as the kernel does
    assert st.getsockopt(ts.SOL_SOCKET, ts.SO_TYPE) == ts.SOCK_STREAM
    assert st.type == ts.SOCK_STREAM and st.family == ts.AF_TIPC
    s.close()
    st.close()


def test_rdm_roundtrip_addresses_and_options(fake: FakeDaemon) -> None:
    srv, cli = sock(fake), sock(fake)
    srv.bind(SVC)
    cli.sendto(b"hello", NAME)
    data, addr = srv.recvfrom(1024)
    assert data == b"hello"
    assert addr == cli.getsockname() == (ts.TIPC_ADDR_ID, NODE, addr[2], 0, 0)
    cli.setsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, ts.TIPC_HIGH_IMPORTANCE)
    assert cli.getsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE) == ts.TIPC_HIGH_IMPORTANCE
    assert cli.getsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, 4) == struct.pack("=I", 2)
    # recvmsg: the destination name as TIPC_DESTNAME
    cli.sendto(b"x" * 10, NAME)
    data, anc, flags, addr = srv.recvmsg(4, 1024)
    assert data == b"xxxx" and flags & ts.MSG_TRUNC
    assert anc == [(ts.SOL_TIPC, ts.TIPC_DESTNAME, struct.pack("=III", 2000, 205, 205))]
    # timeouts
    srv.settimeout(0.05)
    with pytest.raises(TimeoutError):
        srv.recv(10)
    srv.setblocking(False)
    with pytest.raises(BlockingIOError):
        srv.recv(10)
    srv.close()
    cli.close()


def test_readiness_means_a_message_is_waiting(fake: FakeDaemon) -> None:
    srv, cli = sock(fake), sock(fake)
    srv.bind(SVC)

    def readable() -> bool:
        return bool(select.select([srv], [], [], 0)[0])

    assert not readable()
    for i in range(3):
        cli.sendto(b"m%d" % i, NAME)
    wait(lambda: fake.layer.sent == 3)
    assert select.select([srv], [], [], 2)[0]
    assert srv.recv(10) == b"m0"
    assert readable()                       # two more, though they were read ahead
    assert srv.recv(10) == b"m1"
    assert readable()
    assert srv.recv(10) == b"m2"
    assert not readable()
    srv.close()
    cli.close()


def test_credit_returned_in_batches(fake: FakeDaemon) -> None:
    srv, cli = sock(fake), sock(fake)
    srv.bind(SVC)
    for _ in range(100):
        cli.sendto(b"y" * 100, NAME)
    for _ in range(100):
        srv.recv(200)
    srv.settimeout(0.05)
    with pytest.raises(TimeoutError):
        srv.recv(10)                          # waiting returns all outstanding credit
    wait(lambda: fake.layer.consumed_msgs == 100)
    assert fake.layer.consumed_bytes == 100 * 100


def test_congestion_blocks_the_sender_without_loss(fake: FakeDaemon) -> None:
    srv, cli = sock(fake), sock(fake)
    srv.bind(SVC)
    cli.sendto(b"first", NAME)
    assert srv.recv(10) == b"first"
    fake.call(setattr, fake.layer, "congested", True)
    cli.setblocking(False)
    sent = 0
    with pytest.raises(BlockingIOError):
        while True:          # tipcd stops reading us: the UDS fills, then EAGAIN
            cli.sendto(b"z" * 1000, NAME)
            sent += 1
            assert sent < 100000
    assert sent > 10
    wait(lambda: fake.server.stats.sends_blocked >= 1)
    fake.call(fake.layer.release)
    cli.setblocking(True)
    cli.sendto(b"last", NAME)
    got = 0
    srv.settimeout(5)
    while srv.recv(2000) != b"last":
        got += 1
    assert got == sent


def _raw(fake: FakeDaemon) -> std.socket:
    s = std.socket(std.AF_UNIX, std.SOCK_STREAM)
    s.connect(str(fake.run_dir / "tipc.sock"))
    return s


def test_bad_clients_are_thrown_out_and_others_served(fake: FakeDaemon) -> None:
    good_srv, good_cli = sock(fake), sock(fake)
    good_srv.bind(SVC)
    st = fake.server.stats
    # 1. garbage
    g = _raw(fake)
    g.sendall(b"\xff" * 64)
    g.settimeout(5)
    assert g.recv(100)[4] == P.R_ERR          # told why, then disconnected
    assert g.recv(100) == b""
    g.close()
    # 2. an unknown request kind after a good OPEN
    g = _raw(fake)
    g.sendall(P.frame(P.OPEN, b"\x04") + P.frame(0x7E, b"junk"))
    wait(lambda: st.disconnect_garbage >= 2)
    g.close()
    # 3. a request before OPEN
    g = _raw(fake)
    g.sendall(P.frame(P.BIND, P.NO_ADDR))
    wait(lambda: st.disconnect_garbage >= 3)
    g.close()
    # 4. disconnect in the middle of a frame
    g = _raw(fake)
    g.sendall(P.frame(P.OPEN, b"\x04") + P.HDR.pack(5000, P.SEND) + b"\x00" * 100)
    time.sleep(0.1)
    g.close()
    wait(lambda: st.disconnect_midframe >= 1)
    # the daemon still serves
    good_cli.sendto(b"still here", NAME)
    good_srv.settimeout(5)
    assert good_srv.recv(100) == b"still here"
    assert st.clients_now == 2


def test_flooding_client_that_never_reads(fake: FakeDaemon,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(clientsrv, "MAX_OUTPUT", 1 << 20)
    g = _raw(fake)
    g.setblocking(False)
    g.sendall(P.frame(P.OPEN, b"\x04"))
    ping = P.frame(P.PING, b"p" * 60) * 1000
    st = fake.server.stats
    end = time.monotonic() + 20
    off = 0
    while st.disconnect_slow_reader == 0:
        assert time.monotonic() < end, "flooder never thrown out"
        try:
            off = (off + g.send(ping[off:])) % len(ping)     # whole frames, never garbage
        except BlockingIOError:
            time.sleep(0.001)
        except (BrokenPipeError, ConnectionResetError):
            break
    wait(lambda: st.disconnect_slow_reader == 1)
    g.close()
    a, b = sock(fake), sock(fake)
    a.bind(SVC)
    b.sendto(b"ok", NAME)
    a.settimeout(5)
    assert a.recv(10) == b"ok"


def test_threads_share_a_socket(fake: FakeDaemon) -> None:
    """One thread blocked in recv, another doing requests on the same socket."""
    import threading

    srv, cli = sock(fake), sock(fake)
    srv.bind(SVC)
    got: list[bytes] = []
    t = threading.Thread(target=lambda: got.append(srv.recv(100)))
    t.start()
    time.sleep(0.1)
    for _ in range(20):
        srv.setsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE, 1)     # answered meanwhile
        assert srv.getsockopt(ts.SOL_TIPC, ts.TIPC_IMPORTANCE) == 1
    cli.sendto(b"to the reader", NAME)
    t.join(5)
    assert got == [b"to the reader"]


def test_flood_is_throttled_not_dropped(fake: FakeDaemon,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """Requests whose answers are not read are held (not lost) once 64 KiB of answers
    wait; when the client reads, every answer arrives."""
    monkeypatch.setattr(clientsrv, "OUTPUT_HIGH", 64 << 10)
    g = _raw(fake)
    g.sendall(P.frame(P.OPEN, b"\x04"))
    ping = P.frame(P.PING, b"p" * 60)
    g.setblocking(False)
    sent = 0
    end = time.monotonic() + 2
    out = ping * 100
    off = 0
    while time.monotonic() < end:
        try:
            n = g.send(out[off:])
        except BlockingIOError:
            time.sleep(0.01)
            continue
        off += n
        if off == len(out):
            sent += 100
            off = 0
    if off % len(ping):                     # finish the frame we are in the middle of
        g.setblocking(True)
        g.sendall(out[off:off + len(ping) - off % len(ping)])
        off += len(ping) - off % len(ping)
    sent += off // len(ping)
    assert fake.server.stats.throttled > 0
    assert fake.server.stats.disconnect_slow_reader == 0
    g.setblocking(True)
    g.settimeout(10)
    want = 13 + sent * len(P.frame(P.R_OK, b"p" * 60))    # OPEN answer + every PING answer
    got = 0
    while got < want:
        chunk = g.recv(1 << 20)
        assert chunk, f"connection closed after {got} of {want} bytes"
        got += len(chunk)
    assert got == want
    g.close()


def test_peers_without_permission_are_refused(fake: FakeDaemon,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """SO_PEERCRED: neither root, tipcd's user nor group 'tipc' -> EACCES, counted."""
    monkeypatch.setattr(clientsrv, "peer_allowed", lambda uid, gid: False)
    with pytest.raises(OSError) as e:
        sock(fake)
    assert e.value.errno == errno.EACCES and "group 'tipc'" in str(e.value)
    assert fake.server.stats.refused_credentials == 1
    assert (fake.run_dir / "tipc.sock").stat().st_mode & 0o777 == 0o660


def test_uvloop_transport_gets_peer_credentials(tmp_path: Path) -> None:
    uvloop = pytest.importorskip("uvloop")
    import asyncio

    from .fake_socklayer import FakeRuntime

    async def main() -> tuple[int, str]:
        rt = FakeRuntime(asyncio.get_running_loop())
        srv = clientsrv.ClientServer(tmp_path / "tipc.sock", rt)
        await srv.start()
        r, w = await asyncio.open_unix_connection(str(tmp_path / "tipc.sock"))
        w.write(P.frame(P.OPEN, b"\x04"))
        hdr = await r.readexactly(5)
        await r.readexactly(P.LEN.unpack(hdr[:4])[0] - 1)
        names = [c.name for c in srv.clients]
        w.close()
        await srv.close()
        return hdr[4], names[0]

    kind, name = uvloop.run(main())
    assert kind == P.R_OK and name == f"pid {os.getpid()}"


# ------------------------------------------------------------------ big writes
@pytest.mark.parametrize("mode", ["blocking", "deadline", "nonblocking"])
def test_big_frames_written_in_pieces_arrive_whole(mode: str) -> None:
    """A 60 KB frame that the Unix socket takes only in part is finished from the
    caller's buffers (blocking) or from one copy of its rest (deadline / non-blocking):
    tipcd must read exactly the frames, in order, whatever was cut where."""
    import threading

    from tipcpy._client import Channel

    a, b = std.socketpair(std.AF_UNIX, std.SOCK_STREAM)
    a.setsockopt(std.SOL_SOCKET, std.SO_SNDBUF, 16 * 1024)   # force partial writes
    a.setblocking(False)
    chan = Channel(a)
    frames = []
    for i in range(30):
        data = bytearray(os.urandom(61440 - i * 997))
        head = struct.pack("<IB", len(data) + 1, 0x42 + i)
        frames.append((head, data if i % 2 else memoryview(data)))
    want = b"".join(bytes(h) + bytes(d) for h, d in frames)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for head, data in frames:
                if mode == "blocking":
                    chan.write(head, data)
                elif mode == "deadline":
                    chan.write(head, data, time.monotonic() + 10)
                else:
                    while True:
                        try:
                            chan.write(head, data, None, True)
                            break
                        except BlockingIOError:
                            time.sleep(0.001)
                if mode != "blocking" and isinstance(data, bytearray):
                    data[:] = bytes(len(data))     # the caller reuses its buffer at once
            while chan.has_unsent():
                chan.flush_nowait()
                time.sleep(0.001)
        except BaseException as e:  # reported below
            errors.append(e)

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    got = bytearray()
    end = time.monotonic() + 20
    b.settimeout(0.2)
    try:
        while len(got) < len(want) and time.monotonic() < end:
            try:
                chunk = b.recv(7000)     # slower and smaller than the writer
            except TimeoutError:
                if not t.is_alive():
                    break                # the writer is done and nothing more comes
                continue
            if not chunk:
                break
            got.extend(chunk)
            time.sleep(0.0005)
    finally:
        b.close()                        # a stuck writer gets EPIPE and ends
        t.join(5)
        a.close()
    assert not t.is_alive() and not errors
    assert bytes(got) == want

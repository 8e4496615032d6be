"""SocketLayer on one Stack: API semantics and errnos as the kernel's socket.c, and the
exact header words a Linux 6.1 peer sends/expects (§2.13), checked against a fake peer.

The fake peer: a node address in ``stack.peers`` that is "up", with ``send_to_node``
captured, and messages from it injected through the layer's stack handler. Nothing here
needs a link, so every byte the layer produces for a remote node can be inspected.
"""

from __future__ import annotations

import errno
import random
import struct
from types import SimpleNamespace

import pytest

from tipcpy.core import socket as S
from tipcpy.core.assembly import build_node
from tipcpy.core.discover import mem_media_addr
from tipcpy.core.name_table import Publication
from tipcpy.core.node import NodeDown
from tipcpy.core.socket import Accepted, Connected, ConnError, Deliver, Wakeup
from tipcpy.core.stack import Stack
from tipcpy.wire import decode
from tipcpy.wire.consts import ErrCode
from tipcpy.wire.msg import ConnMgrMsg, DataMsg

PEER = 0x195D0765  # kpeer-b's hash in the captures
NAMED, NAMESEQ, ID = S.TIPC_ADDR_NAME, S.TIPC_ADDR_NAMESEQ, S.TIPC_ADDR_ID


def make_stack(seed: int = 1) -> tuple[Stack, float]:
    """A Stack with a committed address (after the 1 s address trial)."""
    st = build_node(b"unit-node".ljust(16, b"\0"), rng=random.Random(seed))
    st.enable_bearer("eth:t", "mem", mem_media_addr(1), 1500, 0.0)
    t = 0.0
    while not st.own_addr:
        t = st.next_deadline()
        st.tick(t)
        st.take_transmits()
    return st, t


@pytest.fixture
def env():
    st, t = make_stack()
    return SimpleNamespace(st=st, L=st.sockets, t=t)


@pytest.fixture
def fake():
    """Stack + a fake up peer (BLOCK_FLOWCTL etc. as our own caps); sends captured."""
    st, t = make_stack()
    st.peers[PEER] = SimpleNamespace(caps=0x17F, is_up=True, addr=PEER)
    sent: list[tuple[int, object]] = []

    def send_to_node(node, msg, selector, now):
        sent.append((node, msg))
        return True

    st.send_to_node = send_to_node  # type: ignore[method-assign]
    return SimpleNamespace(st=st, L=st.sockets, t=t, sent=sent)


def evs(L, cls=None):
    out = L.take_events()
    return [e for e in out if cls is None or isinstance(e, cls)]


def inject(L, msg, now=10.0):
    """A message from the fake peer, through the wire codec (bytes as a kernel sends)."""
    L._stack_rcv(PEER, decode(msg.encode()), now)


# ============================================================ open / bind
def test_open_types_and_random_ports(env) -> None:
    L = env.L
    with pytest.raises(OSError) as e:
        L.open(3, 0.0)  # SOCK_RAW
    assert e.value.errno == errno.EPROTOTYPE
    ports = {L.open(t, 0.0) for t in (S.SOCK_RDM, S.SOCK_DGRAM, S.SOCK_SEQPACKET,
                                      S.SOCK_STREAM) for _ in range(50)}
    assert len(ports) == 200 and all(1 <= p <= 0xFFFFFFFF for p in ports)
    p = L.open(S.SOCK_RDM, 0.0)
    assert L.getsockname(p) == (ID, p, env.st.own_addr, 0)
    with pytest.raises(OSError) as e:
        L.getpeername(p)
    assert e.value.errno == errno.ENOTCONN
    with pytest.raises(OSError) as e:
        L.sendto(12345, None, b"", 0.0)
    assert e.value.errno == errno.EBADF


def test_bind_rules_and_keys(env) -> None:
    L, nt = env.L, env.st.name_table
    p = L.open(S.SOCK_RDM, 0.0)
    for addr, err in [((NAMESEQ, 63, 0, 0), errno.EACCES), ((NAMESEQ, 1000, 5, 4), errno.EINVAL),
                      ((ID, 1, 2, 0), errno.EAFNOSUPPORT), ((9, 1000, 1, 1), errno.EINVAL)]:
        with pytest.raises(OSError) as e:
            L.bind(p, addr, 0.0)
        assert e.value.errno == err, addr
    L.bind(p, (NAMESEQ, 1000, 1, 10), 0.0)
    L.bind(p, (NAMESEQ, 1000, 1, 10), 0.0)  # identical binding twice: allowed (new key)
    L.bind(p, (NAMED, 1001, 7, 0, S_ZONE := 1), 0.0)  # zone scope -> cluster
    L.bind(p, (NAMED, 1002, 7, 0, 3), 0.0)  # node scope
    keys = [pb.key for pb in nt.find(1000, 1, 10)]
    assert sorted(keys) == [p + 1, p + 2]  # kernel: key = port + pub_count + 1
    assert nt.find(1001, 7, 7)[0].scope == 2 and S_ZONE == 1
    assert nt.find(1002, 7, 7)[0].scope == 3 and nt.find(1002, 7, 7)[0].key == p + 4
    # unbind: negative scope; scope must match, upper must match the first same-lower one
    with pytest.raises(OSError) as e:
        L.bind(p, (NAMESEQ, 1000, 1, 11, -2), 0.0)
    assert e.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        L.bind(p, (NAMED, 1002, 7, 0, -2), 0.0)  # bound node scope, unbind cluster: no
    L.bind(p, (NAMESEQ, 1000, 1, 10, -2), 0.0)
    assert len(nt.find(1000, 1, 10)) == 1
    L.bind(p, None, 0.0)  # alen 0: unbind all
    assert not nt.find(1000, 1, 10) and not nt.find(1002, 7, 7)
    assert L.sock_list()[[r["port"] for r in L.sock_list()].index(p)]["bound"] == []


def test_publication_limit(env, monkeypatch) -> None:
    L = env.L
    p = L.open(S.SOCK_RDM, 0.0)
    monkeypatch.setattr(type(env.st.name_table), "local_count", property(lambda s: 65535))
    with pytest.raises(OSError) as e:
        L.bind(p, (NAMESEQ, 1000, 1, 1), 0.0)
    assert e.value.errno == errno.EINVAL


# ============================================================ connectionless
def test_rdm_anycast_round_robin_local(env) -> None:
    L = env.L
    srv = [L.open(S.SOCK_RDM, 0.0) for _ in range(3)]
    for s in srv:
        L.bind(s, (NAMESEQ, 1000, 0, 99), 0.0)
    c = L.open(S.SOCK_RDM, 0.0)
    got = []
    for i in range(9):
        assert L.sendto(c, (NAMED, 1000, 5, 0), b"m%d" % i, 0.0)
        (d,) = evs(L)
        assert isinstance(d, Deliver) and d.src == (c, env.st.own_addr)
        assert d.dest == (1000, 5, 5) and d.errcode == 0 and not d.returned
        got.append(d.port)
    assert sorted(got[:3]) == sorted(srv) and got[:3] * 3 == got  # strict rotation


def test_multicast_each_socket_once(env) -> None:
    L = env.L
    a, b, c, d = (L.open(S.SOCK_RDM, 0.0) for _ in range(4))
    L.bind(a, (NAMESEQ, 1000, 0, 10), 0.0)
    L.bind(b, (NAMESEQ, 1000, 5, 5), 0.0)
    L.bind(b, (NAMESEQ, 1000, 6, 20), 0.0)  # two matching ranges: still one copy
    L.bind(c, (NAMESEQ, 1000, 50, 60), 0.0)  # outside
    L.bind(d, (NAMESEQ, 1000, 8, 8, 3), 0.0)  # node scope: local senders reach it
    s = L.open(S.SOCK_DGRAM, 0.0)
    assert L.sendto(s, (NAMESEQ, 1000, 4, 9), b"mc", 0.0)
    got = evs(L, Deliver)
    assert sorted(x.port for x in got) == sorted([a, b, d])
    assert all(x.dest == (1000, 4, 9) and x.data == b"mc" for x in got)
    with pytest.raises(OSError) as e:
        L.sendto(s, (NAMESEQ, 1000, 30, 40), b"x", 0.0)
    assert e.value.errno == errno.EHOSTUNREACH


def test_direct_and_errors(env) -> None:
    L = env.L
    a, b = L.open(S.SOCK_RDM, 0.0), L.open(S.SOCK_RDM, 0.0)
    assert L.sendto(a, (ID, b, env.st.own_addr), b"direct", 0.0)
    (d,) = evs(L)
    assert d.port == b and d.dest is None and d.src == (a, env.st.own_addr)
    assert L.sendto(a, (ID, b, 0, 0, 0), b"node 0 = own", 0.0)  # 5-tuple, node 0
    assert evs(L)[0].data == b"node 0 = own"
    for addr, data, err in [((NAMED, 1000, 1, 0), b"", errno.EHOSTUNREACH),
                            ((ID, b, 0x7777), b"", errno.EHOSTUNREACH),
                            ((ID, b, 0), b"x" * 66001, errno.EMSGSIZE),
                            (None, b"x", errno.EDESTADDRREQ),
                            ((NAMESEQ, 1000, 2, 1), b"x", errno.EINVAL)]:
        with pytest.raises(OSError) as e:
            L.sendto(a, addr, data, 0.0)
        assert e.value.errno == err, addr
    assert L.sendto(a, (ID, b, 0), b"x" * 66000, 0.0)
    # connect() on RDM records a default destination; None forgets it
    L.connect(a, (ID, b, 0), 0.0)
    assert L.sendto(a, None, b"dflt", 0.0) and evs(L)[-1].data == b"dflt"
    L.connect(a, None, 0.0)
    with pytest.raises(OSError):
        L.sendto(a, None, b"x", 0.0)
    with pytest.raises(OSError) as e:
        L.listen(a)
    assert e.value.errno == errno.EOPNOTSUPP


def test_returned_no_port_unless_droppable(env) -> None:
    L = env.L
    a, b = L.open(S.SOCK_RDM, 0.0), L.open(S.SOCK_RDM, 0.0)
    L.close(b, 0.0)
    # RDM is dest_droppable by default: dropped silently
    assert L.sendto(a, (ID, b, 0), b"lost", 0.0)
    assert evs(L) == [] and L.counters["dropped"] >= 1
    L.setsockopt(a, S.TIPC_DEST_DROPPABLE, 0)
    big = bytes(range(256)) * 8  # 2048 bytes: only 1024 come back
    assert L.sendto(a, (ID, b, 0), big, 0.0)
    (d,) = evs(L)
    assert d.port == a and d.returned and d.errcode == ErrCode.TIPC_ERR_NO_PORT
    assert d.data == big[:1024] and d.src == (b, env.st.own_addr) and d.dest is None


def test_rcvbuf_overload_and_consumed(env) -> None:
    L = env.L
    r, s = L.open(S.SOCK_RDM, 0.0), L.open(S.SOCK_RDM, 0.0)
    L.setsockopt(s, S.TIPC_DEST_DROPPABLE, 0)
    L.setsockopt(r, S.SO_RCVBUF, 1)  # clamped to 512 KiB
    assert L.getsockopt(r, S.SO_RCVBUF) == 512 * 1024
    chunk = b"z" * 60000
    ok = 0
    for _ in range(12):
        L.sendto(s, (ID, r, 0), chunk, 0.0)
    got = evs(L)
    ok = [e for e in got if e.port == r]
    back = [e for e in got if e.port == s]
    # limit = rcvbuf << importance(LOW=0) = 512 KiB: 8 fit (480000 < 524288), the rest return
    assert len(ok) == 8 and len(back) == 4
    assert all(e.errcode == ErrCode.TIPC_ERR_OVERLOAD and e.returned for e in back)
    assert L.getsockopt(r, S.TIPC_SOCK_RECVQ_DEPTH) == 8
    assert L.getsockopt(r, S.TIPC_SOCK_RECVQ_USED) == 8 * 60000
    L.consumed(r, 3 * 60000, 0.0)
    assert L.getsockopt(r, S.TIPC_SOCK_RECVQ_DEPTH) == 5
    L.sendto(s, (ID, r, 0), chunk, 0.0)
    assert [e.port for e in evs(L)] == [r]
    # importance raises the connectionless limit (rcvbuf << importance)
    L.setsockopt(s, S.TIPC_IMPORTANCE, 2)
    for _ in range(10):
        L.sendto(s, (ID, r, 0), chunk, 0.0)
    assert all(e.port == r for e in evs(L))


# ============================================================ connections
def connect_pair(L, sotype=S.SOCK_SEQPACKET, inst=1):
    srv = L.open(sotype, 0.0)
    L.bind(srv, (NAMED, 2000, inst, 0), 0.0)
    L.listen(srv, 5)
    cli = L.open(sotype, 0.0)
    L.connect(cli, (NAMED, 2000, inst, 0), 0.0)
    ev = evs(L)
    acc = [e for e in ev if isinstance(e, Accepted)]
    con = [e for e in ev if isinstance(e, Connected)]
    assert len(acc) == 1 and acc[0].listen_port == srv and acc[0].peer[0] == cli
    assert con == [Connected(cli, (acc[0].new_port, con[0].peer[1]))]
    return srv, cli, acc[0].new_port


def test_seqpacket_echo_and_names(env) -> None:
    L = env.L
    srv, cli, new = connect_pair(L)
    own = env.st.own_addr
    assert L.getpeername(cli) == (ID, new, own, 0) and L.getpeername(new) == (ID, cli, own, 0)
    assert L.state(cli) == "ESTABLISHED" and L.state(srv) == "LISTEN"
    for i in range(20):
        assert L.sendto(cli, None, b"ping%d" % i, 0.0)
        (d,) = evs(L)
        assert d.port == new and d.data == b"ping%d" % i and d.dest == (2000, 1, 1)
        L.consumed(new, len(d.data), 0.0)
        assert L.sendto(new, None, d.data.upper(), 0.0)
        (e,) = evs(L)
        assert e.port == cli and e.data == b"PING%d" % i and e.src == (new, own)
        L.consumed(cli, len(e.data), 0.0)
    rows = {r["port"]: r for r in L.sock_list()}
    assert rows[cli]["connected"] == {"node": own, "port": new, "name": [2000, 1]}
    assert rows[srv]["bound"] == [{"type": 2000, "lower": 1, "upper": 1, "scope": 2}]
    assert rows[L.topsrv_port]["bound"] == [{"type": 1, "lower": 1, "upper": 1, "scope": 3}]


def test_connection_misuse_errnos(env) -> None:
    L = env.L
    srv, cli, new = connect_pair(L)
    cases = [
        (lambda: L.connect(cli, (NAMED, 2000, 1, 0), 0.0), errno.EISCONN),
        (lambda: L.connect(srv, (NAMED, 2000, 1, 0), 0.0), errno.EINVAL),
        (lambda: L.sendto(srv, (NAMED, 2000, 1, 0), b"x", 0.0), errno.EPIPE),
        (lambda: L.sendto(srv, None, b"x", 0.0), errno.ENOTCONN),
        (lambda: L.listen(cli), errno.EINVAL),
        (lambda: L.bind(cli, (NAMED, 3000, 1, 0), 0.0), errno.EINVAL),
        (lambda: L.shutdown(cli, 0, 0.0), errno.EINVAL),
        (lambda: L.sendto(cli, None, b"x" * 66001, 0.0), errno.EMSGSIZE),
        (lambda: L.setsockopt(cli, S.TIPC_IMPORTANCE, 4), errno.EINVAL),
        (lambda: L.setsockopt(cli, 999, 1), errno.EINVAL),
        (lambda: L.getsockopt(cli, 999), errno.EINVAL),
    ]
    for fn, err in cases:
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == err
    bound = L.open(S.SOCK_SEQPACKET, 0.0)
    L.bind(bound, (NAMED, 3000, 1, 0), 0.0)
    with pytest.raises(OSError) as e:
        L.connect(bound, (NAMED, 2000, 1, 0), 0.0)
    assert e.value.errno == errno.EOPNOTSUPP
    o = L.open(S.SOCK_STREAM, 0.0)
    for fn, err in [(lambda: L.connect(o, (NAMESEQ, 2000, 1, 1), 0.0), errno.EINVAL),
                    (lambda: L.connect(o, (NAMED, 2999, 1, 0), 0.0), errno.EHOSTUNREACH),
                    (lambda: L.sendto(o, None, b"x", 0.0), errno.ENOTCONN),
                    (lambda: L.shutdown(o, S.SHUT_RDWR, 0.0), errno.ENOTCONN),
                    (lambda: L.setsockopt(o, S.TIPC_SRC_DROPPABLE, 1), errno.ENOPROTOOPT),
                    (lambda: L.setsockopt(o, S.TIPC_GROUP_JOIN, 1), errno.EINVAL)]:
        with pytest.raises(OSError) as e:
            fn()
        assert e.value.errno == err
    assert L.state(o) == "OPEN"  # failed connect left it usable


def test_sockopts(env) -> None:
    L = env.L
    r, q, d = L.open(S.SOCK_RDM, 0.0), L.open(S.SOCK_SEQPACKET, 0.0), L.open(S.SOCK_DGRAM, 0.0)
    assert [L.getsockopt(r, o) for o in (S.TIPC_IMPORTANCE, S.TIPC_SRC_DROPPABLE,
                                          S.TIPC_DEST_DROPPABLE, S.TIPC_CONN_TIMEOUT)] == \
        [0, 0, 1, 8000]
    assert L.getsockopt(d, S.TIPC_SRC_DROPPABLE) == 1 and L.getsockopt(q, S.TIPC_DEST_DROPPABLE) == 0
    assert L.getsockopt(r, S.SO_RCVBUF) == 2 * 1024 * 1024
    L.setsockopt(r, S.SO_RCVBUF, 1 << 30)
    assert L.getsockopt(r, S.SO_RCVBUF) == 16 * 1024 * 1024
    L.setsockopt(q, S.TIPC_CONN_TIMEOUT, 1234)
    L.setsockopt(r, S.TIPC_IMPORTANCE, 3)
    L.setsockopt(r, S.TIPC_MCAST_REPLICAST, 0)
    assert L.getsockopt(q, S.TIPC_CONN_TIMEOUT) == 1234 and L.getsockopt(r, S.TIPC_IMPORTANCE) == 3
    assert L.getsockopt(r, S.TIPC_NODE_RECVQ_DEPTH) == 0


def test_implicit_connect(env) -> None:
    L = env.L
    srv = L.open(S.SOCK_SEQPACKET, 0.0)
    L.bind(srv, (NAMED, 2000, 1, 0), 0.0)
    L.listen(srv)
    cli = L.open(S.SOCK_SEQPACKET, 0.0)
    assert L.sendto(cli, (NAMED, 2000, 1, 0), b"hello with SYN", 0.0)
    ev = evs(L)
    acc = next(e for e in ev if isinstance(e, Accepted))
    d = next(e for e in ev if isinstance(e, Deliver))
    assert d.port == acc.new_port and d.syn and d.data == b"hello with SYN"
    assert d.dest == (2000, 1, 1) and Connected(cli, (acc.new_port, env.st.own_addr)) in ev
    assert L.sendto(acc.new_port, None, b"reply", 0.0)
    assert evs(L) == [Deliver(cli, b"reply", (acc.new_port, env.st.own_addr), (2000, 1, 1))]


def test_stream_large_split_at_66000(env) -> None:
    L = env.L
    srv, cli, new = connect_pair(L, S.SOCK_STREAM)
    blob = bytes(random.Random(5).randbytes(200_000))
    assert L.sendto(cli, None, blob, 0.0)
    got = []
    while True:
        ev = evs(L, Deliver)
        if not ev:
            break
        for d in ev:
            got.append(d.data)
            L.consumed(new, len(d.data), 0.0)
    assert [len(x) for x in got] == [66000, 66000, 66000, 2000]
    assert b"".join(got) == blob


def test_close_fin_econnreset_and_shutdown_eof(env) -> None:
    L = env.L
    _, cli, new = connect_pair(L)
    L.close(cli, 0.0)
    assert evs(L) == [ConnError(new, errno.ECONNRESET)]
    assert L.state(new) == "DISCONNECTING"
    with pytest.raises(OSError) as e:
        L.sendto(new, None, b"x", 0.0)
    assert e.value.errno == errno.EPIPE
    _, cli, new = connect_pair(L, inst=2)
    L.shutdown(cli, S.SHUT_RDWR, 0.0)
    assert evs(L) == [ConnError(new, 0)]  # EOF
    with pytest.raises(OSError) as e:
        L.sendto(cli, None, b"x", 0.0)
    assert e.value.errno == errno.EPIPE


def test_connect_refused_and_timeout(env) -> None:
    L = env.L
    c = L.open(S.SOCK_SEQPACKET, 0.0)
    L.connect(c, (ID, 4242, env.st.own_addr), 0.0)  # no such port: SYN returned NO_PORT
    assert evs(L) == [ConnError(c, errno.ECONNREFUSED)]
    r = L.open(S.SOCK_RDM, 0.0)
    L.bind(r, (NAMED, 2500, 1, 0), 0.0)
    c2 = L.open(S.SOCK_SEQPACKET, 0.0)
    t = env.t
    L.connect(c2, (NAMED, 2500, 1, 0), t)  # an RDM socket takes the SYN as data
    assert [type(e) for e in evs(L)] == [Deliver]
    L.setsockopt(c2, S.TIPC_CONN_TIMEOUT, 1000)  # too late for this attempt: 8 s
    assert env.st.next_deadline() <= t + 8.0
    env.st.tick(t + 7.9)
    assert evs(L) == []
    env.st.tick(t + 8.0)
    assert evs(L) == [ConnError(c2, errno.ETIMEDOUT)]


def test_flow_control_100k_in_order_intra_node(env) -> None:
    L = env.L
    _, cli, new = connect_pair(L)
    n, i, falses, wakeups, got = 100_000, 0, 0, 0, []
    pending: list[Deliver] = []
    blocked = False

    def drain() -> None:
        nonlocal wakeups, blocked
        for e in evs(L):
            if isinstance(e, Wakeup):
                assert e.port == cli and blocked
                wakeups += 1
                blocked = False
            else:
                assert isinstance(e, Deliver) and e.port == new
                pending.append(e)

    while len(got) < n:
        while i < n and not blocked:  # the writer only retries after a Wakeup
            if not L.sendto(cli, None, struct.pack(">I", i) + b"p" * 96, 0.0):
                falses += 1
                blocked = True
                break
            i += 1
        drain()
        assert len(pending) <= 600  # the window (512 blocks) bounds what is in flight
        for d in pending[:50]:  # a slow reader: 50 messages per round
            got.append(struct.unpack(">I", d.data[:4])[0])
            L.consumed(new, len(d.data), 0.0)
        del pending[:50]
        drain()
    assert got == list(range(n))
    assert falses > 100 and wakeups == falses  # every refusal was answered by a wakeup
    assert L.counters["overload"] == 0
    # window: never more than 512 blocks (+1 message) in flight to the reader
    assert L.getsockopt(new, S.TIPC_SOCK_RECVQ_DEPTH) == 0


def test_topology_subscription_over_seqpacket(env) -> None:
    L = env.L
    r = L.open(S.SOCK_RDM, 0.0)
    L.bind(r, (NAMESEQ, 5000, 1, 2), 0.0)
    c = L.open(S.SOCK_SEQPACKET, 0.0)
    L.connect(c, (NAMED, 1, 1, 0), 0.0)
    assert [type(e) for e in evs(L)] == [Connected]
    sub = struct.pack("<5I8s", 5000, 0, 100, 0xFFFFFFFF, 1, b"handle!!")  # TIPC_SUB_PORTS
    assert L.sendto(c, None, sub, 0.0)
    own = env.st.own_addr

    def events():
        out = []
        for d in evs(L):
            assert isinstance(d, Deliver) and d.port == c and len(d.data) == 48
            L.consumed(c, 48, 0.0)
            ev, lo, up, port, node = struct.unpack_from("<5I", d.data)
            assert d.data[20:] == sub
            out.append((ev, lo, up, port, node))
        return out

    assert events() == [(1, 1, 2, r, own)]
    r2 = L.open(S.SOCK_RDM, 0.0)
    L.bind(r2, (NAMED, 5000, 50, 0), 0.0)
    assert events() == [(1, 50, 50, r2, own)]
    L.close(r2, 0.0)
    assert events() == [(2, 50, 50, r2, own)]
    # a malformed subscription: the server closes the connection
    assert L.sendto(c, None, b"short", 0.0)
    assert evs(L) == [ConnError(c, errno.ECONNRESET)]


def test_topsrv_many_events_respect_window(env) -> None:
    """More events than the connection window holds still all arrive, in order."""
    L = env.L
    r = L.open(S.SOCK_RDM, 0.0)
    for i in range(3000):
        L.bind(r, (NAMED, 6000, i, 0), 0.0)
    c = L.open(S.SOCK_SEQPACKET, 0.0)
    L.connect(c, (NAMED, 1, 1, 0), 0.0)
    evs(L)
    L.sendto(c, None, struct.pack("<5I8s", 6000, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, b"x" * 8), 0.0)
    seen = []
    for _ in range(100):
        ds = evs(L, Deliver)
        if not ds:
            break
        for d in ds:
            seen.append(struct.unpack_from("<I", d.data, 4)[0])
            L.consumed(c, 48, 0.0)
    assert seen == list(range(3000))


# ============================================================ wire bytes vs Linux 6.1
def words(msg) -> list[int]:
    b = msg.encode()
    return list(struct.unpack(f">{len(b) // 4}I", b[: len(b) // 4 * 4]))


def test_named_rdm_header_as_kernel(fake) -> None:
    L, st = fake.L, fake.st
    st.name_table.insert(Publication(1000, 1, 1, 2, PEER, 0xF6994332, 0xF6994333))
    s = L.open(S.SOCK_RDM, 0.0)
    assert L.sendto(s, (NAMED, 1000, 1, 0), b"hello-from-b", 0.0)
    node, m = fake.sent[-1]
    w = words(m)
    assert node == PEER and m.size == 52
    assert w[0] == 0x41480034 and w[1] == 0x40100000 and w[2] == 0
    assert w[3:] [:5] == [st.own_addr, s, 0xF6994332, st.own_addr, PEER]
    assert w[8:10] == [1000, 1]
    # direct reply: 32-byte DIRECT header
    assert L.sendto(s, (ID, 0x3FC5FE95, PEER), b"x" * 12, 0.0)
    w = words(fake.sent[-1][1])
    assert w[0] == 0x4108002C and w[1] == 0x60000000 and w[5] == 0x3FC5FE95 and w[7] == PEER
    # multicast replicast copy: 44 bytes, is_rcast (the kernel's first one also has SYN)
    st.name_table.insert(Publication(1000, 0, 10, 2, PEER, 77, 78))
    assert L.sendto(s, (NAMESEQ, 1000, 0, 10), b"x" * 12, 0.0)
    w = words(fake.sent[-1][1])
    assert w[0] == 0x416E0038 & ~(1 << 17) and w[1] == 0x20100000
    assert w[5] == 0 and w[7] == PEER and w[8:11] == [1000, 0, 10]


def test_connection_headers_as_kernel(fake) -> None:
    L, st, own = fake.L, fake.st, fake.st.own_addr
    st.name_table.insert(Publication(2000, 1, 1, 2, PEER, 0x0BADBEEF, 1))
    c = L.open(S.SOCK_STREAM, 0.0)
    L.connect(c, (NAMED, 2000, 1, 0), 0.0)
    w = words(fake.sent[-1][1])  # SYN: empty NAMED, not droppable
    assert w[0] == 0x41420028 and w[1] == 0x40100000
    assert w[3:10] == [own, c, 0x0BADBEEF, own, PEER, 2000, 1]
    assert L.state(c) == "CONNECTING"
    # the acceptor's ACK comes from its new port: empty 24-byte CONN_MSG
    ack = DataMsg([0x40C00018, 0, 0, PEER, 0x12C4A84A, c], b"")
    inject(L, ack)
    assert evs(L) == [Connected(c, (0x12C4A84A, PEER))]
    assert L.sendto(c, None, b"data", 0.0)
    w = words(fake.sent[-1][1])  # established: SHORT header
    assert w == [0x40C0001C, 0, 0, own, c, 0x12C4A84A, int.from_bytes(b"data", "big")]
    # the peer sends a 40000-byte STREAM message; reading it triggers the CONN_ACK
    inject(L, DataMsg([0x40C00000 | (24 + 40000), 0, 0, PEER, 0x12C4A84A, c], b"s" * 40000))
    (d,) = evs(L)
    assert d.data == b"s" * 40000 and d.dest == (2000, 1, 1)
    n = len(fake.sent)
    L.consumed(c, 40000, 0.0)
    assert len(fake.sent) == n + 1
    m = fake.sent[-1][1]
    w = words(m)
    assert isinstance(m, ConnMgrMsg) and m.size == 40
    assert w[0] == 0x51400028 and w[1] == 0x40000000
    assert w[3:8] == [own, c, 0x12C4A84A, own, PEER] and w[9] == 0x00280200  # 40 blk / 512
    # close: FIN = 24-byte CRITICAL CONN_MSG, errcode NO_PORT
    L.close(c, 0.0)
    w = words(fake.sent[-1][1])
    assert w == [0x46C00018, 0x04000000, 0, own, c, 0x12C4A84A]


def test_accept_from_kernel_peer_and_probe(fake) -> None:
    L, own = fake.L, fake.st.own_addr
    srv = L.open(S.SOCK_SEQPACKET, 0.0)
    L.bind(srv, (NAMED, 2000, 1, 0), 0.0)
    L.listen(srv)
    syn = DataMsg([0x41420028, 0x40100000, 0, PEER, 0x3FC5FE95, srv, PEER, own, 2000, 1], b"")
    inject(L, syn)
    (acc,) = evs(L)
    assert acc == Accepted(srv, acc.new_port, (0x3FC5FE95, PEER))
    node, m = fake.sent[-1]
    assert node == PEER and words(m) == [0x40C00018, 0, 0, own, acc.new_port, 0x3FC5FE95]
    # CONN_PROBE -> CONN_PROBE_REPLY (the probe reversed, TIPC_OK)
    probe = ConnMgrMsg([0x51400028, 0, 0, PEER, 0x3FC5FE95, acc.new_port, PEER, own, 0, 0], b"")
    inject(L, probe)
    w = words(fake.sent[-1][1])
    assert w[0] == 0x51400028 and w[1] >> 29 == 1 and (w[1] >> 25) & 0xF == 0
    assert w[3:8] == [own, acc.new_port, 0x3FC5FE95, own, PEER]
    # the peer node is lost: ECONNRESET (kernel: generated TIPC_ERR_NO_NODE)
    L._stack_event(NodeDown(PEER), 20.0)
    assert evs(L) == [ConnError(acc.new_port, errno.ECONNRESET)]


def test_reject_and_secondary_lookup_for_remote_sender(fake) -> None:
    L, own = fake.L, fake.st.own_addr
    # NAMED to a gone port, name unbound: reversed with NO_NAME, data kept, BASIC kept
    m = DataMsg([0x41480034, 0x40100000, 0x00020003, PEER, 0x3FC5FE95, 0xF6994332, PEER,
                 own, 1000, 1], b"hello-from-b")
    inject(L, m)
    assert fake.sent == []  # RDM data is dest_droppable: dropped, not returned
    m.dest_droppable = 0
    inject(L, m)
    node, r = fake.sent[-1]
    w = words(r)
    assert node == PEER and r.errcode == ErrCode.TIPC_ERR_NO_NAME and r.data == b"hello-from-b"
    assert w[0] == 0x41400034 and w[1] == 0x42100000  # errcode 1, seqno fields copied
    assert w[3:8] == [own, 0xF6994332, 0x3FC5FE95, own, PEER]
    # the name is bound here by another port: rerouted there (reroute_cnt 1)
    p = L.open(S.SOCK_RDM, 0.0)
    L.bind(p, (NAMED, 1000, 1, 0), 0.0)
    inject(L, m)
    (d,) = evs(L)
    assert d.port == p and d.data == b"hello-from-b" and d.src == (0x3FC5FE95, PEER)
    assert L.counters["rerouted"] == 1
    # SHORT connection message to an unknown port: widened to BASIC, NO_PORT
    inject(L, DataMsg([0x40C0001C, 0, 0, PEER, 5, 6], b"abcd"))
    r = fake.sent[-1][1]
    w = words(r)
    assert r.hsize == 32 and w[0] == 0x41000024 and w[1] == 0x04000000
    assert w[3:8] == [own, 6, 5, own, PEER] and r.data == b"abcd"


def test_fuzzed_messages_never_raise(fake) -> None:
    """Random (decodable) data and CONN_MANAGER messages aimed at live ports, in every
    state: counted and dropped/rejected, never an exception, never a crash."""
    from tipcpy.wire import DecodeError

    L, own = fake.L, fake.st.own_addr
    srv = L.open(S.SOCK_SEQPACKET, 0.0)
    L.bind(srv, (NAMESEQ, 2000, 0, 10), 0.0)
    L.listen(srv)
    ports = [srv, L.open(S.SOCK_RDM, 0.0), L.open(S.SOCK_STREAM, 0.0)]
    L.bind(ports[1], (NAMESEQ, 2000, 0, 10), 0.0)
    rng = random.Random(11)
    n = 0
    for _ in range(20000):
        hw = rng.choice([6, 7, 8, 10, 11, 15])
        w = [rng.getrandbits(32) for _ in range(hw)]
        user = rng.choice([0, 1, 2, 3, 8])
        w[0] = (2 << 29) | (user << 25) | (hw << 21) | (w[0] & 0x1E0000)
        w[0] |= hw * 4 + 8
        if rng.random() < 0.7:
            w[5] = rng.choice(ports + L.ports())
        if hw > 7 and rng.random() < 0.5:
            w[6], w[7] = PEER, own
        if rng.random() < 0.5:
            w[3] = PEER
        try:
            m = decode(struct.pack(f">{hw}I", *w) + b"12345678")
        except DecodeError:
            continue
        n += 1
        L._stack_rcv(PEER, m, 1.0)
        L.take_events()
    assert n > 5000 and L.counters["errors"] == 0, L.last_error


def _fake_env(cong_after: int):
    st, t = make_stack()
    st.peers[PEER] = SimpleNamespace(caps=0x17F, is_up=True, addr=PEER)
    sent: list[bytes] = []

    def send_to_node(node, msg, selector, now):
        if len(sent) >= cong_after:
            return False
        sent.append(msg.encode())
        return True

    st.send_to_node = send_to_node  # type: ignore[method-assign]
    return st, t, sent


@pytest.mark.parametrize("cong_after", [100, 3])
def test_sendto_many_is_the_loop_of_sendto(cong_after) -> None:
    """sendto_many = sendto for each message until one is refused (congestion) or
    raises: same bytes out, same events, and it says how far it got and why."""
    datas = [b"a" * 10, b"", b"b" * 100, b"c" * (S.TIPC_MAX_USER_MSG_SIZE + 1), b"d"]
    results = []
    for many in (False, True):
        st, t, sent = _fake_env(cong_after)
        L = st.sockets
        srv = L.open(S.SOCK_RDM, t)
        L.bind(srv, (NAMESEQ, 5000, 0, 9), t)
        st.name_table.insert(Publication(5000, 10, 10, 2, PEER, 77, 78))
        cli = L.open(S.SOCK_RDM, t)
        outcome = []
        for addr in [(NAMED, 5000, 10, 0), (NAMED, 5000, 3, 0), (ID, 77, PEER)]:
            if many:
                n, err = L.sendto_many(cli, addr, datas, t)
                outcome.append((n, err.errno if err else None))
            else:
                n, err = 0, None
                for d in datas:
                    try:
                        if not L.sendto(cli, addr, d, t):
                            break
                    except OSError as e:
                        err = e.errno
                        break
                    n += 1
                outcome.append((n, err))
        results.append((outcome, sent, [repr(e) for e in L.take_events()]))
    assert results[0] == results[1]
    # the 3rd remote message meets congestion: accepted, parked in the port queue; the
    # oversized 4th raises; with the queue non-empty the next batches take nothing
    m = errno.EMSGSIZE
    assert results[0][0] == ([(3, m)] * 3 if cong_after > 3 else [(3, m), (0, None), (0, None)])
    n, err = _fake_env(100)[0].sockets.sendto_many(12345, (NAMED, 5000, 10, 0), [], 0.0)
    assert (n, err.errno) == (0, errno.EBADF)


def _local_mix(fast: bool):
    """Connectionless sends to ports of our own node, through every branch the node-local
    fast path must agree with: round-robin anycast over local and remote bindings, direct
    to node 0 / own node, a missing port (dropped, or returned when not dest_droppable,
    with the secondary lookup), a connection port, rcvbuf OVERLOAD at two importances,
    empty messages, DGRAM, sendto_many, congestion queueing and consumed()."""
    st, t, sent = _fake_env(1000)
    L = st.sockets
    L.fast_local = fast
    own = st.own_addr
    r1, r2 = L.open(S.SOCK_RDM, t), L.open(S.SOCK_DGRAM, t)
    conn = L.open(S.SOCK_SEQPACKET, t)
    gone = L.open(S.SOCK_RDM, t)
    L.close(gone, t)
    for p in (r1, r2, conn):
        L.bind(p, (NAMESEQ, 6000, 0, 9), t)
    L.bind(r1, (NAMESEQ, 6001, 5, 5), t)
    st.name_table.insert(Publication(6000, 0, 9, 2, PEER, 77, 78))
    L.setsockopt(r1, S.SO_RCVBUF, 1)  # 512 KiB
    s = L.open(S.SOCK_RDM, t)
    d = L.open(S.SOCK_DGRAM, t)
    log = []

    def step(fn, *a):
        try:
            log.append(fn(*a))
        except OSError as e:
            log.append(("err", e.errno))
        log.append([repr(e) for e in L.take_events()])
        log.append({p: (q.rcv_used, [list(e) for e in q.rcvq], q.drops)
                    for p, q in L._ports.items()})

    chunk = b"z" * 60000
    for imp, droppable in ((0, 1), (0, 0), (2, 0)):
        L.setsockopt(s, S.TIPC_IMPORTANCE, imp)
        L.setsockopt(s, S.TIPC_DEST_DROPPABLE, droppable)
        for _ in range(5):
            step(L.sendto, s, (NAMED, 6000, 3, 0), b"rr", t)
        step(L.sendto, s, (NAMED, 6000, 3, own), b"local rr", t)
        step(L.sendto, s, (NAMED, 6001, 5, 0), b"", t)
        step(L.sendto, s, (ID, r1, 0), b"to node 0", t)
        step(L.sendto, s, (ID, r2, own), b"to own node", t)
        step(L.sendto, s, (ID, r1, own), b"x" * 990, t)  # 1 block with 32 B header, 2 with 40
        step(L.sendto, s, (NAMED, 6001, 5, 0), b"x" * 990, t)
        step(L.sendto, s, (ID, gone, own), b"no port", t)
        step(L.sendto, s, (ID, conn, own), b"conn port", t)
        step(L.sendto, d, (ID, r1, 0), b"dgram", t)
        step(L.sendto_many, s, (ID, r1, 0), [chunk] * 12 + [b""], t)
        step(L.getsockopt, r1, S.TIPC_SOCK_RECVQ_DEPTH)
        step(L.getsockopt, r1, S.TIPC_SOCK_RECVQ_USED)
        step(L.consumed, r1, 5 * 60000 + 7, t)
        step(L.getsockopt, r1, S.TIPC_SOCK_RECVQ_USED)
        step(L.sendto_many, s, (NAMED, 6000, 4, 0), [b"m%d" % i for i in range(9)], t)
        step(L.consumed, r1, 1 << 30, t)
        step(L.sendto_many, s, (ID, r1, 0), [b"y" * 65536] * 8, t)  # the 8th: == limit
        step(L.consumed, r1, 1 << 30, t)
        step(L.consumed, r2, 1 << 30, t)
    # the remote binding congests: the port's queue then holds the local ones too
    sent.extend([b"(congested from here)"] * 1000)
    step(L.sendto_many, s, (NAMED, 6000, 1, 0), [b"q%d" % i for i in range(9)], t)
    step(L.sendto, s, (ID, r1, 0), b"after congestion", t)
    return log, sent, dict(L.counters)


def test_local_fast_path_is_the_message_path() -> None:
    """The node-local RDM/DGRAM fast path (no message built) gives exactly what the
    message path gives: same results and errors, events, bytes to the peer, counters
    and receive-queue accounting."""
    fast, slow = _local_mix(True), _local_mix(False)
    assert fast == slow
    assert any("OVERLOAD" in repr(x) or "errcode=" in repr(x) for x in fast[0])
    c = fast[2]
    assert c["overload"] >= 8 and c["no_port"] and c["rejected"] and c["dropped"]
    assert c["link_cong"] == 1 and False in fast[0]

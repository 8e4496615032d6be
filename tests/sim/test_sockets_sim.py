"""SocketLayer across a 3-node SimCluster (real Stacks, links, name distribution; virtual
time): anycast/multicast cluster-wide, connections between nodes, loss of a node,
flow control through a congested link, returned messages, topology events."""

from __future__ import annotations

import errno
import random
import struct
from collections.abc import Callable
from typing import Any

import pytest

from tipcpy.core import socket as S
from tipcpy.core.socket import Accepted, Connected, ConnError, Deliver, Wakeup
from tipcpy.sim import SimCluster
from tipcpy.wire.consts import ErrCode

NAMED, NAMESEQ, ID = S.TIPC_ADDR_NAME, S.TIPC_ADDR_NAMESEQ, S.TIPC_ADDR_ID


class Net:
    """A SimCluster plus helpers to call a node's SocketLayer at the virtual now, flush
    what it sent, and collect every node's socket events."""

    def __init__(self, n: int = 3, seed: int = 1, **kw: Any) -> None:
        self.c = SimCluster(n, seed=seed, **kw)
        assert self.c.run_until(self.c.all_links_up, timeout=10.0)
        self.ev: list[list[Any]] = [[] for _ in range(n)]

    def L(self, i: int) -> S.SocketLayer:
        return self.c.nodes[i].stack.sockets

    def addr(self, i: int) -> int:
        return self.c.addr(i)

    def do(self, i: int, name: str, *args: Any) -> Any:
        fn = getattr(self.L(i), name)
        if name in ("listen", "setsockopt", "getsockopt", "getsockname", "getpeername"):
            r = fn(*args)
        else:
            r = fn(*args, self.c.now)
        self.c._flush(i)  # what the call sent goes on the wire now
        self.collect()
        return r

    def collect(self) -> None:
        for i, n in enumerate(self.c.nodes):
            if n.alive:
                self.ev[i].extend(n.stack.sockets.take_events())

    def run_until(self, pred: Callable[[], bool], timeout: float = 10.0) -> bool:
        def p() -> bool:
            self.collect()
            return pred()
        return self.c.run_until(p, timeout=timeout)

    def take(self, i: int, cls: type | None = None) -> list[Any]:
        self.collect()
        out = [e for e in self.ev[i] if cls is None or isinstance(e, cls)]
        self.ev[i] = [e for e in self.ev[i] if not (cls is None or isinstance(e, cls))]
        return out

    def bound_everywhere(self, typ: int, count: int) -> bool:
        return all(len([p for p in n.stack.name_table if p.type == typ]) == count
                   for n in self.c.nodes if n.alive)

    def pair(self, sotype: int = S.SOCK_SEQPACKET, srv_node: int = 1, cli_node: int = 0,
             inst: int = 1) -> tuple[int, int, int]:
        srv = self.do(srv_node, "open", sotype)
        self.do(srv_node, "bind", srv, (NAMED, 2000, inst, 0))
        self.do(srv_node, "listen", srv, 1)
        assert self.run_until(lambda: bool(self.L(cli_node).table.find(2000, inst, inst)))
        cli = self.do(cli_node, "open", sotype)
        self.do(cli_node, "connect", cli, (NAMED, 2000, inst, 0))
        assert self.run_until(lambda: any(isinstance(e, Connected) for e in self.ev[cli_node]))
        (con,) = self.take(cli_node, Connected)
        (acc,) = self.take(srv_node, Accepted)
        assert acc.listen_port == srv and acc.peer == (cli, self.addr(cli_node))
        assert con == Connected(cli, (acc.new_port, self.addr(srv_node)))
        return srv, cli, acc.new_port


@pytest.fixture
def net() -> Net:
    return Net(3, seed=7)


def test_anycast_round_robin_across_nodes(net: Net) -> None:
    ports = [net.do(i, "open", S.SOCK_RDM) for i in range(3)]
    for i, p in enumerate(ports):
        net.do(i, "bind", p, (NAMESEQ, 1000, 0, 9))
    assert net.run_until(lambda: net.bound_everywhere(1000, 3))
    s = net.do(0, "open", S.SOCK_RDM)
    for k in range(30):
        assert net.do(0, "sendto", s, (NAMED, 1000, 4, 0), b"%d" % k)
    assert net.run_until(lambda: sum(len([e for e in net.ev[i] if isinstance(e, Deliver)])
                                     for i in range(3)) == 30)
    order = []
    for i in range(3):
        for d in net.take(i, Deliver):
            assert d.port == ports[i] and d.src == (s, net.addr(0)) and d.dest == (1000, 4, 4)
            order.append((int(d.data), i))
    seq = [i for _, i in sorted(order)]
    assert sorted(seq[:3]) == [0, 1, 2] and seq == seq[:3] * 10  # kernel round-robin


def test_multicast_reaches_every_socket_once(net: Net) -> None:
    expect = []
    for i in range(3):
        a = net.do(i, "open", S.SOCK_RDM)
        net.do(i, "bind", a, (NAMESEQ, 3000, 0, 100))
        net.do(i, "bind", a, (NAMESEQ, 3000, 5, 5))  # overlapping twice: one copy
        b = net.do(i, "open", S.SOCK_RDM)
        net.do(i, "bind", b, (NAMESEQ, 3000, 10, 10))
        expect += [(i, a), (i, b)]
        far = net.do(i, "open", S.SOCK_RDM)
        net.do(i, "bind", far, (NAMESEQ, 3000, 500, 600))  # outside the range
    n0 = net.do(0, "open", S.SOCK_RDM)
    net.do(0, "bind", n0, (NAMESEQ, 3000, 7, 7, 3))  # node scope on the sender's node
    n1 = net.do(1, "open", S.SOCK_RDM)
    net.do(1, "bind", n1, (NAMESEQ, 3000, 7, 7, 3))  # node scope elsewhere: not reached
    expect.append((0, n0))
    assert net.run_until(lambda: all(
        len([p for p in n.stack.name_table if p.type == 3000 and p.scope == 2]) == 12
        for n in net.c.nodes))
    s = net.do(2, "open", S.SOCK_RDM)
    net.L(2).setsockopt(s, S.TIPC_IMPORTANCE, 1)
    assert net.do(0, "sendto", net.do(0, "open", S.SOCK_RDM), (NAMESEQ, 3000, 5, 10), b"mc")
    assert net.run_until(lambda: sum(len(x) for x in net.ev) == len(expect))
    net.c.run_for(1.0)
    got = sorted((i, d.port) for i in range(3) for d in net.take(i, Deliver))
    assert got == sorted(expect)


def test_seqpacket_and_stream_between_nodes(net: Net) -> None:
    srv, cli, new = net.pair(S.SOCK_SEQPACKET)
    for k in range(50):
        assert net.do(0, "sendto", cli, None, b"ping %d" % k)
    assert net.run_until(lambda: len(net.ev[1]) == 50)
    for d in net.take(1, Deliver):
        net.do(1, "consumed", new, len(d.data))
        assert d.src == (cli, net.addr(0)) and d.dest == (2000, 1, 1)
        net.do(1, "sendto", new, None, d.data.upper())
    assert net.run_until(lambda: len(net.ev[0]) == 50)
    assert [d.data for d in net.take(0, Deliver)] == [b"PING %d" % k for k in range(50)]
    assert net.L(0).getpeername(cli) == (ID, new, net.addr(1), 0)
    # STREAM: 300 kB (5 messages, each fragmented on the 1500-byte link) and back
    _, scli, snew = net.pair(S.SOCK_STREAM, srv_node=2, cli_node=0, inst=2)
    blob = random.Random(3).randbytes(300_000)
    assert net.do(0, "sendto", scli, None, blob)
    buf = bytearray()

    def reader() -> bool:
        for d in net.take(2, Deliver):
            buf.extend(d.data)
            net.do(2, "consumed", snew, len(d.data))
        return len(buf) >= len(blob)

    assert net.run_until(reader, timeout=30.0)
    assert bytes(buf) == blob


def test_implicit_connect_between_nodes(net: Net) -> None:
    srv = net.do(1, "open", S.SOCK_SEQPACKET)
    net.do(1, "bind", srv, (NAMED, 2000, 9, 0))
    net.do(1, "listen", srv, 1)
    assert net.run_until(lambda: bool(net.L(0).table.find(2000, 9, 9)))
    cli = net.do(0, "open", S.SOCK_SEQPACKET)
    assert net.do(0, "sendto", cli, (NAMED, 2000, 9, 0), b"SYN with data")
    assert net.run_until(lambda: any(isinstance(e, Connected) for e in net.ev[0]))
    (acc,) = net.take(1, Accepted)
    (d,) = net.take(1, Deliver)
    assert d.port == acc.new_port and d.syn and d.data == b"SYN with data"


def test_fin_and_shutdown_between_nodes(net: Net) -> None:
    _, cli, new = net.pair()
    net.do(0, "close", cli)
    assert net.run_until(lambda: bool(net.ev[1]))
    assert net.take(1) == [ConnError(new, errno.ECONNRESET)]
    _, cli, new = net.pair(inst=3)
    net.do(1, "shutdown", new, S.SHUT_RDWR)
    assert net.run_until(lambda: bool(net.ev[0]))
    assert net.take(0) == [ConnError(cli, 0)]


def test_node_crash_resets_connections(net: Net) -> None:
    _, cli, new = net.pair(srv_node=1, cli_node=0)
    _, cli2, new2 = net.pair(srv_node=0, cli_node=1, inst=4)
    t0 = net.c.now
    net.c.crash(1)
    assert net.run_until(lambda: len(net.ev[0]) == 2, timeout=5.0)
    got = net.take(0)
    assert sorted(got, key=lambda e: e.port) == sorted(
        [ConnError(cli, errno.ECONNRESET), ConnError(new2, errno.ECONNRESET)],
        key=lambda e: e.port)
    dt = net.c.now - t0
    assert dt <= 1.5 + 0.2, f"reset {dt:.3f}s after the crash (tolerance 1.5 s)"
    with pytest.raises(OSError) as e:
        net.do(0, "sendto", cli, None, b"x")
    assert e.value.errno == errno.EPIPE
    # the crashed node's bindings are gone: anycast to them fails synchronously
    with pytest.raises(OSError) as e:
        net.do(0, "sendto", net.do(0, "open", S.SOCK_RDM), (NAMED, 2000, 1, 0), b"x")
    assert e.value.errno == errno.EHOSTUNREACH


def test_flow_control_100k_between_nodes(net: Net) -> None:
    """A fast sender, a receiver that reads 200 messages every 20 ms: nothing lost, in
    order; the sender is held back (False) and resumed by Wakeup."""
    _, cli, new = net.pair()
    n, i, falses, wakeups, got = 100_000, 0, 0, 0, []
    blocked = False
    L0, L1 = net.L(0), net.L(1)
    payload = b"q" * 60
    while len(got) < n:
        while i < n and not blocked:
            if not L0.sendto(cli, None, struct.pack(">I", i) + payload, net.c.now):
                falses += 1
                blocked = True
            else:
                i += 1
        net.c._flush(0)
        assert net.c.now < 300.0, f"stalled at {len(got)} (blocked={blocked})"
        net.c.run_for(0.02)
        for e in L0.take_events():
            assert e == Wakeup(cli) and blocked
            wakeups += 1
            blocked = False
        k = 0
        for d in L1.take_events():
            assert isinstance(d, Deliver) and d.port == new
            got.append(struct.unpack_from(">I", d.data)[0])
            k += 1
        # read what arrived, but no faster than 200 per 20 ms: the queue builds up
        L1.consumed(new, k * len(payload + b"1234"), net.c.now, k)
        net.c._flush(1)
        assert L1.getsockopt(new, S.TIPC_SOCK_RECVQ_DEPTH) == 0
    assert got == list(range(n))
    assert falses > 0 and wakeups == falses
    assert L1.counters["overload"] == 0 and L0.counters["rejected"] == 0


def test_flow_control_slow_reader_between_nodes(net: Net) -> None:
    """The reader consumes only 100 messages per 50 ms: the window (512 blocks) stops
    the writer; the receive queue never exceeds the window."""
    _, cli, new = net.pair()
    L0, L1 = net.L(0), net.L(1)
    n, i, got, queue, blocked, falses = 20_000, 0, [], [], False, 0
    while len(got) < n:
        while i < n and not blocked:
            if L0.sendto(cli, None, struct.pack(">I", i) + b"s" * 200, net.c.now):
                i += 1
            else:
                blocked = True
                falses += 1
        net.c._flush(0)
        assert net.c.now < 300.0, f"stalled at {len(got)} (blocked={blocked})"
        net.c.run_for(0.05)
        if any(isinstance(e, Wakeup) for e in L0.take_events()):
            blocked = False
        queue += [d for d in L1.take_events() if isinstance(d, Deliver)]
        assert len(queue) <= 512 + 2
        for d in queue[:100]:
            got.append(struct.unpack_from(">I", d.data)[0])
        L1.consumed(new, sum(len(d.data) for d in queue[:100]), net.c.now, len(queue[:100]))
        del queue[:100]
        net.c._flush(1)
    assert got == list(range(n)) and falses > 10


def test_returned_messages_between_nodes(net: Net) -> None:
    s = net.do(0, "open", S.SOCK_RDM)
    net.do(0, "setsockopt", s, S.TIPC_DEST_DROPPABLE, 0)
    gone = net.do(1, "open", S.SOCK_RDM)
    net.do(1, "close", gone)
    assert net.do(0, "sendto", s, (ID, gone, net.addr(1)), b"to nobody")
    assert net.run_until(lambda: bool(net.ev[0]))
    (d,) = net.take(0)
    assert d.returned and d.errcode == ErrCode.TIPC_ERR_NO_PORT and d.data == b"to nobody"
    assert d.src == (gone, net.addr(1))
    # NAMED: the port goes away while the message is in flight; no other binding
    r = net.do(1, "open", S.SOCK_RDM)
    net.do(1, "bind", r, (NAMED, 4000, 1, 0))
    assert net.run_until(lambda: bool(net.L(0).table.find(4000, 1, 1)))
    assert net.do(0, "sendto", s, (NAMED, 4000, 1, 0), b"late")
    net.do(1, "close", r)
    assert net.run_until(lambda: bool(net.ev[0]))
    (d,) = net.take(0)
    assert d.returned and d.errcode == ErrCode.TIPC_ERR_NO_NAME and d.dest == (4000, 1, 1)
    # ... with another binding on node 2, the secondary lookup forwards it there
    r1 = net.do(1, "open", S.SOCK_RDM)
    net.do(1, "bind", r1, (NAMED, 4001, 1, 0))
    r2 = net.do(2, "open", S.SOCK_RDM)
    net.do(2, "bind", r2, (NAMED, 4001, 1, 0))
    assert net.run_until(lambda: net.bound_everywhere(4001, 2))
    sent_to_1 = False
    for _ in range(2):  # round-robin: one of two sends resolves to node 1
        net.do(0, "sendto", s, (NAMED, 4001, 1, 0), b"reroute")
        sent_to_1 = sent_to_1 or net.L(0).table.find(4001, 1, 1)[0].node == net.addr(1)
    net.do(1, "close", r1)
    assert net.run_until(lambda: len(net.ev[2]) == 2)
    assert [d.port for d in net.take(2, Deliver)] == [r2, r2] and not net.take(0)
    assert net.L(1).counters["rerouted"] == 1


def test_topology_events_across_nodes(net: Net) -> None:
    L0 = net.L(0)
    c = net.do(0, "open", S.SOCK_SEQPACKET)
    net.do(0, "connect", c, (NAMED, 1, 1, 0))
    (con,) = net.take(0)
    assert isinstance(con, Connected) and con.peer[1] == net.addr(0)
    assert con.peer[0] != L0.topsrv_port  # the server's connection port, as accept()
    sub = struct.pack("<5I8s", 7000, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, b"usr-hndl")
    net.do(0, "sendto", c, None, sub)
    r = net.do(2, "open", S.SOCK_RDM)
    net.do(2, "bind", r, (NAMESEQ, 7000, 10, 20))
    assert net.run_until(lambda: bool(net.ev[0]))
    net.do(2, "close", r)
    assert net.run_until(lambda: len(net.ev[0]) == 2)
    evs = [struct.unpack_from("<5I", d.data) for d in net.take(0, Deliver)]
    assert evs == [(1, 10, 20, r, net.addr(2)), (2, 10, 20, r, net.addr(2))]


def test_link_congestion_backpressure_rdm(net: Net) -> None:
    """RDM has no connection window: a flood of 1000-byte messages fills the link's
    LOW-importance backlog; sendto answers False and a Wakeup follows when the link
    drains (kernel SOCK_WAKEUP). Nothing is lost, nothing reordered."""
    r = net.do(1, "open", S.SOCK_RDM)
    net.do(1, "bind", r, (NAMED, 5000, 1, 0))
    assert net.run_until(lambda: bool(net.L(0).table.find(5000, 1, 1)))
    s = net.do(0, "open", S.SOCK_RDM)
    L0, L1 = net.L(0), net.L(1)
    n, i, got, blocked, falses, wakeups = 20_000, 0, [], False, 0, 0
    while len(got) < n:
        while i < n and not blocked:
            if L0.sendto(s, (NAMED, 5000, 1, 0), struct.pack(">I", i) + bytes(996), net.c.now):
                i += 1
            else:
                blocked = True
                falses += 1
        net.c._flush(0)
        assert net.c.now < 300.0, f"stalled at {len(got)} (blocked={blocked})"
        net.c.run_for(0.005)
        for e in L0.take_events():
            assert e == Wakeup(s) and blocked
            blocked = False
            wakeups += 1
        ds = L1.take_events()
        got += [struct.unpack_from(">I", d.data)[0] for d in ds]
        L1.consumed(r, 1000 * len(ds), net.c.now, len(ds))
    assert got == list(range(n))
    assert falses > 10 and wakeups == falses and L0.counters["link_cong"] >= falses

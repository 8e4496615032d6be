"""Two links between two nodes: failover and synch (issue 11), in the simulator.

A numbered stream (RDM, SEQPACKET or STREAM) runs from one node to the other while
one of the two links is cut, or while the second link comes up; the receiver must
see every message exactly once and in order, the node FSM must pass through
NODE_FAILINGOVER / NODE_SYNCHING, and no FSM may see an illegal event (conftest)."""

from __future__ import annotations

import errno
import struct
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import pytest

from tipcpy.core import socket as S
from tipcpy.core.link import LinkState
from tipcpy.core.node import NodeState, PeerNode
from tipcpy.core.socket import Accepted, Connected, ConnError, Deliver, Wakeup
from tipcpy.sim import SimCluster

NAMED = S.TIPC_ADDR_NAME
TYPES = {"rdm": S.SOCK_RDM, "seqpacket": S.SOCK_SEQPACKET, "stream": S.SOCK_STREAM}
PAYLOAD = 96


class Pair:
    """Two nodes on two segments (two links), a server port on node 1."""

    def __init__(self, seed: int, loss: float = 0.0, second_link: bool = True,
                 delays: tuple[float, float] = (0.0005, 0.0005)) -> None:
        self.c = c = SimCluster(seed=seed, segments=("lan0", "lan1"))
        c.add_node(segments=("lan0",))
        c.add_node(segments=("lan0",))
        c.net.set_faults("lan0", delay=delays[0])
        c.net.set_faults("lan1", delay=delays[1])
        if second_link:
            for i in (0, 1):
                c.enable_bearer(i, "lan1")
            assert c.run_until(lambda: self.links_up(2), timeout=10.0)
        else:
            assert c.run_until(lambda: self.links_up(1), timeout=10.0)
        for s in ("lan0", "lan1"):
            c.net.set_faults(s, loss=loss)
        self.states: list[set[NodeState]] = [set(), set()]
        self.trace: list[list[NodeState]] = [[], []]
        self.ev: list[list[Any]] = [[], []]
        for i in (0, 1):
            self._trace(i)

    def _trace(self, i: int) -> None:
        """Record every state the node FSM of node i's peer enters."""
        peer = self.peer(i)
        orig = peer.fsm_evt
        out = self.trace[i]

        def fsm_evt(evt: Any) -> None:
            orig(evt)
            if not out or out[-1] != peer.state:
                out.append(peer.state)
        peer.fsm_evt = fsm_evt  # type: ignore[method-assign]

    def L(self, i: int) -> S.SocketLayer:
        sk = self.c.nodes[i].stack.sockets
        assert sk is not None
        return sk

    def peer(self, i: int) -> PeerNode:
        return self.c.nodes[i].stack.peers[self.c.addr(1 - i)]

    def links_up(self, n: int) -> bool:
        c = self.c
        return all(c.addr(1 - i) in st.peers and
                   sum(le.link.is_up for le in st.peers[c.addr(1 - i)].links.values()) == n
                   and st.peers[c.addr(1 - i)].state == NodeState.SELF_UP_PEER_UP
                   for i, st in enumerate(c.stacks))

    def run(self, dt: float) -> None:
        """Run the clock, recording every node state seen after each step."""
        c = self.c
        end = c.now + dt
        while c.step(end):
            for i in (0, 1):
                if c.addr(1 - i) in c.stacks[i].peers:
                    self.states[i].add(self.peer(i).state)
            for i in (0, 1):
                self.ev[i].extend(self.L(i).take_events())
        c.now = max(c.now, end)

    def take(self, i: int, cls: type) -> list[Any]:
        out = [e for e in self.ev[i] if isinstance(e, cls)]
        self.ev[i] = [e for e in self.ev[i] if not isinstance(e, cls)]
        return out

    def do(self, i: int, name: str, *args: Any) -> Any:
        fn = getattr(self.L(i), name)
        r = fn(*args) if name == "listen" else fn(*args, self.c.now)
        self.c._flush(i)
        self.ev[i].extend(self.L(i).take_events())
        return r

    def endpoints(self, sotype: int, sender: int) -> tuple[int, int, Any]:
        """(sending port, receiving port, destination address for sendto)."""
        srv = self.do(1, "open", sotype)
        self.do(1, "bind", srv, (NAMED, 7000, 1, 0))
        if sotype == S.SOCK_RDM:
            cli = self.do(0, "open", sotype)
            self.do(0, "bind", cli, (NAMED, 7001, 1, 0))
            self.run(0.5)
            if sender == 0:
                return cli, srv, (NAMED, 7000, 1, 0)
            return srv, cli, (NAMED, 7001, 1, 0)
        self.do(1, "listen", srv, 1)
        self.run(0.5)
        cli = self.do(0, "open", sotype)
        self.do(0, "connect", cli, (NAMED, 7000, 1, 0))
        acc: list[Any] = []
        con: list[Any] = []
        for _ in range(500):
            self.run(0.01)
            acc += self.take(1, Accepted)
            con += self.take(0, Connected)
            if acc and con:
                break
        assert acc and con
        new = acc[0].new_port
        return (cli, new, None) if sender == 0 else (new, cli, None)

    def stream(self, sotype: int, sender: int, n: int,
               fault: Callable[[int], None] | None = None, limit: float = 120.0,
               step: float = 0.005) -> list[int]:
        """Send n numbered messages from ``sender``; ``fault(sent)`` is called after
        every burst.  Returns the numbers in the order the receiver got them."""
        tx, rx, dest = self.endpoints(sotype, sender)
        self._tx = tx
        self.t_stream = self.c.now
        recv = 1 - sender
        got: list[int] = []
        buf = bytearray()
        i = 0
        blocked = False
        t0 = self.c.now
        while len(got) < n:
            while i < n and not blocked:
                data = struct.pack(">I", i) + bytes([i & 0xFF]) * (PAYLOAD - 4)
                if self.L(sender).sendto(tx, dest, data, self.c.now):
                    i += 1
                else:
                    blocked = True
            self.c._flush(sender)
            if fault is not None:
                fault(i)
            assert self.c.now - t0 < limit, f"stalled at {len(got)}/{n} sent {i}"
            self.run(step)
            if self.take(sender, Wakeup):
                blocked = False
            errs = self.take(0, ConnError) + self.take(1, ConnError)
            assert not errs, errs
            k = 0
            nbytes = 0
            for d in self.take(recv, Deliver):
                assert d.port == rx
                k += 1
                nbytes += len(d.data)
                if sotype == S.SOCK_STREAM:
                    buf += d.data
                else:
                    assert len(d.data) == PAYLOAD
                    got.append(struct.unpack_from(">I", d.data)[0])
            if sotype == S.SOCK_STREAM:
                while len(buf) >= PAYLOAD:
                    got.append(struct.unpack_from(">I", buf)[0])
                    del buf[:PAYLOAD]
            if k and sotype != S.SOCK_RDM:
                self.L(recv).consumed(rx, nbytes, self.c.now, k)
                self.c._flush(recv)
        return got


def verdict(got: list[int], n: int) -> tuple[int, int, int]:
    """(lost, duplicated, reordered)."""
    lost = n - len(set(got))
    dup = len(got) - len(set(got))
    reord = sum(1 for a, b in pairwise(got) if b < a)
    return lost, dup, reord


@pytest.mark.parametrize("which", ["used", "other"])
@pytest.mark.parametrize("sender", [0, 1])
@pytest.mark.parametrize("kind", sorted(TYPES))
def test_cut_either_link_mid_stream(kind: str, sender: int, which: str) -> None:
    """Cut the segment under the link the stream uses (or the other one) after 600
    of 1500 messages, 5% loss on both: nothing lost, duplicated or reordered.  When
    the used link goes, both nodes fail over (NODE_FAILINGOVER and back), count it,
    and the cut link comes back as a standby... once the segment heals."""
    p = Pair(seed=100 + 7 * sender + (which == "used"), loss=0.05)
    n = 1500
    cut: dict[str, Any] = {}

    def fault(i: int) -> None:
        if i >= 600 and not cut:
            tx = p._tx
            used = p.peer(sender).active[tx & 1]
            assert used is not None
            bid = used if which == "used" else 1 - used
            cut["bid"] = bid
            p.c.cut(sender, f"lan{bid}")
    got = p.stream(TYPES[kind], sender, n, fault)
    assert verdict(got, n) == (0, 0, 0)
    assert got == list(range(n))
    bid = cut["bid"]
    for i in (0, 1):
        lk = p.peer(i).links[bid].link
        if which == "used":
            assert NodeState.NODE_FAILINGOVER in p.trace[i]
            assert p.trace[i][-1] == NodeState.SELF_UP_PEER_UP
            assert lk.stats.failovers == 1
        assert p.peer(i).is_up
    # the segment heals: the failed link comes back beside the other (synch)
    p.c.heal(sender, f"lan{bid}")
    p.c.net.set_faults("lan0", loss=0.0)
    p.c.net.set_faults("lan1", loss=0.0)
    assert p.c.run_until(lambda: p.links_up(2), timeout=20.0)
    for i in (0, 1):
        assert p.peer(i).links[bid].link.stats.synchs + \
            p.peer(i).links[1 - bid].link.stats.synchs >= 1


@pytest.mark.parametrize("sender", [0, 1])
@pytest.mark.parametrize("kind", ["rdm", "seqpacket"])
def test_second_link_up_mid_stream_never_reorders(kind: str, sender: int) -> None:
    """One slow (20 ms) and one fast (0.5 ms) segment; the fast link comes up with a
    higher priority while a SEQPACKET stream runs on the slow one, so the stream
    moves to it: the receiver holds the new link until the old one reaches the
    synch point."""
    p = Pair(seed=31 + sender, second_link=False, delays=(0.02, 0.0005))
    n = 3000
    done: dict[str, bool] = {}

    def fault(i: int) -> None:
        if i >= 300 and not done:
            done["up"] = True
            for k in (0, 1):  # higher priority: every port moves to the fast link
                p.c.enable_bearer(k, "lan1", priority=20)
    got = p.stream(TYPES[kind], sender, n, fault)
    assert verdict(got, n) == (0, 0, 0)
    assert got == list(range(n))
    for i in (0, 1):
        assert NodeState.NODE_SYNCHING in p.trace[i]
        assert p.trace[i][-1] == NodeState.SELF_UP_PEER_UP
        new = p.peer(i).links[1].link
        assert new.is_up and new.state is LinkState.ESTABLISHED
        assert new.stats.synchs == 1
        assert p.peer(i).active_links() == [1]
    if kind == "rdm":  # (a connection waits for acks that come the slow way)
        assert p.peer(1 - sender).rx_synch_held > 0  # the fast link was held back


def test_both_links_cut_aborts_connection_on_both_sides() -> None:
    """The node is truly gone (both links cut): no silent stall - each end of the
    connection gets ECONNRESET within the tolerance (plus one tick)."""
    p = Pair(seed=41)
    tx, rx, _ = p.endpoints(S.SOCK_SEQPACKET, 0)
    for k in range(100):
        assert p.L(0).sendto(tx, None, b"m%d" % k, p.c.now)
    p.c._flush(0)
    p.c.cut(0, "lan0")
    p.c.cut(0, "lan1")
    t0 = p.c.now
    errs: list[list[Any]] = [[], []]
    while p.c.now - t0 < 2.0 and not all(errs):
        p.run(0.01)
        for i in (0, 1):
            errs[i] += p.take(i, ConnError)
    assert errs[0] == [ConnError(tx, errno.ECONNRESET)]
    assert errs[1] == [ConnError(rx, errno.ECONNRESET)]
    assert p.c.now - t0 <= 1.5 + 0.375 + 0.05
    for i in (0, 1):
        assert p.trace[i][-1] == NodeState.SELF_DOWN_PEER_LEAVING


def test_peer_reset_takes_node_to_self_down_peer_down() -> None:
    """A RESET from a restarted peer (newer session, not stopping) on the only
    link: the node sees the peer lost contact first, as the kernel does
    (SELF_UP_PEER_UP -> SELF_LEAVING_PEER_DOWN -> SELF_DOWN_PEER_DOWN), not
    SELF_DOWN_PEER_LEAVING; then the link and the node come back up."""
    p = Pair(seed=51, second_link=False)
    lk1 = p.peer(1).links[0].link
    lk1.session = (lk1.session + 1) & 0xFFFF  # what a restarted peer would use
    lk1._proto(1)  # RESET_MSG
    (raw,) = lk1.take_outgoing()
    p.c.inject(0, 0, raw)
    p.run(0.01)
    assert p.trace[0][:2] == [NodeState.SELF_LEAVING_PEER_DOWN, NodeState.SELF_DOWN_PEER_DOWN]
    assert NodeState.SELF_DOWN_PEER_LEAVING not in p.trace[0]
    assert p.c.run_until(lambda: p.links_up(1), timeout=10.0)


# Several seeds: which link dies first, and whether the first one's residue was already
# tunnelled onto the second when that one dies too, depends on the timing (seed 44 and
# 52 once lost every message in the tunnel: it was not unwrapped on the way back).
@pytest.mark.parametrize("seed", [61, 44, 45, 52, 70])
def test_node_down_returns_rdm_messages_the_sender_wants_back(seed: int) -> None:
    """RDM with dest_droppable off, both links cut mid-stream: every message is
    either delivered or comes back to its sender with TIPC_ERR_NO_NODE - none
    vanishes; droppable ones (the default) never come back."""
    p = Pair(seed=seed)
    tx, rx, dest = p.endpoints(S.SOCK_RDM, 0)
    drop = p.do(0, "open", S.SOCK_RDM)
    p.L(0).setsockopt(tx, S.TIPC_DEST_DROPPABLE, 0)
    n = 400
    sent = 0
    for k in range(n):
        if not p.L(0).sendto(tx, dest, struct.pack(">I", k), p.c.now):
            break
        sent += 1
        p.L(0).sendto(drop, dest, struct.pack(">I", 100000 + k), p.c.now)
    p.c._flush(0)
    p.run(0.0005)  # part of it is on the wire, part still queued
    p.c.cut(0, "lan0")
    p.c.cut(0, "lan1")
    p.run(3.0)
    delivered = {struct.unpack(">I", d.data)[0] for d in p.take(1, Deliver) if d.port == rx}
    back = p.take(0, Deliver)
    returned = {struct.unpack(">I", d.data)[0] for d in back}
    assert all(d.port == tx and d.returned and d.errcode == 3 for d in back)  # NO_NODE
    mine = {k for k in delivered if k < 100000}
    assert returned, "nothing came back: the cut came too late to test anything"
    assert mine | returned == set(range(sent))
    assert p.peer(0).returned_no_node == len(returned)


def test_synching_link_failing_over_is_not_overtaken() -> None:
    """The old link is slow (0.5 s one way) and the new one's link-protocol messages
    from the sender are lost while the receiver synchs, so the new link times out
    mid-synch and the sender fails its queue over through the old link, behind
    that link's own backlog.  The sender's next messages go the old link too, and
    must not join a bundle queued before the tunnel packets: once they did, and
    overtook the failed-over messages (1530.. arrived after 2583..2588)."""
    p = Pair(seed=41, second_link=False, delays=(0.5, 0.0005))
    n = 4000
    done: dict[str, bool] = {}
    rx = p.peer(1)
    orig_send = p.c.net.send
    dropped = [0]

    def send(node: Any, bearer_id: int, dest: object, data: bytes, now: float) -> None:
        user = (data[0] >> 1) & 0xF  # header word 0 bits 25-28: LINK_PROTOCOL = 7
        if node == 0 and bearer_id == 1 and user == 7 and \
                rx.state == NodeState.NODE_SYNCHING:
            dropped[0] += 1
            return
        orig_send(node, bearer_id, dest, data, now)
    p.c.net.send = send  # type: ignore[method-assign]

    def fault(i: int) -> None:
        if i >= 1500 and not done:
            done["up"] = True
            for k in (0, 1):
                p.c.enable_bearer(k, "lan1", priority=20)
    got = p.stream(TYPES["rdm"], 0, n, fault, limit=300)
    assert dropped[0] > 0 and rx.rx_synch_held > 0
    for i in (0, 1):  # the scenario happened: synch, then failover of the new link
        assert NodeState.NODE_SYNCHING in p.trace[i]
        assert NodeState.NODE_FAILINGOVER in p.trace[i]
    assert p.peer(0).links[1].link.stats.failovers >= 1
    assert verdict(got, n) == (0, 0, 0)
    assert got == list(range(n))

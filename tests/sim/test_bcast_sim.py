"""The broadcast send link inside whole Stacks (virtual time, seeded loss): multicast
and name updates go on the broadcast link in BROADCAST mode (its counters and the
unicast links' prove it), every receiver gets every message exactly once and in
order under 5% loss, REPLICAST uses the unicast links, AUTOSELECT switches by the
kernel's rule (dests <= 1 + peers * ratio / 100 -> replicast; 5 s hysteresis)."""

from __future__ import annotations

import struct
from typing import Any

import pytest

from tipcpy.core import socket as S
from tipcpy.core.bcast import BcMode
from tipcpy.core.socket import Deliver, GroupData, Wakeup
from tipcpy.sim import SimCluster
from tipcpy.sim.network import FaultModel

NAMESEQ = S.TIPC_ADDR_NAMESEQ
TYPE = 5000


class Net:
    def __init__(self, n: int, seed: int, loss: float = 0.0) -> None:
        faults = FaultModel(loss=loss, reorder=0.05 if loss else 0.0)
        self.c = SimCluster(n, seed=seed, faults=faults)
        assert self.c.run_until(self.c.all_links_up, timeout=30.0)
        self.n = n
        self.ev: list[list[Any]] = [[] for _ in range(n)]

    def L(self, i: int) -> Any:
        return self.c.nodes[i].stack.sockets

    def do(self, i: int, name: str, *args: Any) -> Any:
        fn = getattr(self.L(i), name)
        r = fn(*args) if name in ("setsockopt",) else fn(*args, self.c.now)
        self.c._flush(i)
        self.collect()
        return r

    def collect(self) -> None:
        """Take every node's socket events; group messages are read at once (the
        application's recvmsg), which is what reopens the sender's window."""
        for i, nd in enumerate(self.c.nodes):
            evs = nd.stack.sockets.take_events()
            self.ev[i].extend(evs)
            read = [e for e in evs if isinstance(e, GroupData)]
            for e in read:
                nd.stack.sockets.consumed(e.port, len(e.data), self.c.now, 1)
            if read:
                self.c._flush(i)

    def run_until(self, pred: Any, timeout: float = 30.0) -> bool:
        def p() -> bool:
            self.collect()
            return bool(pred())
        return self.c.run_until(p, timeout=timeout)

    def bc(self, i: int) -> Any:
        return self.c.nodes[i].stack.bcast

    def uc_sent(self, i: int) -> int:
        st = self.c.nodes[i].stack
        # messages, not packets: a bundle of k counts k
        return sum(le.link.stats.sent_pkts - le.link.stats.sent_bundles
                   + le.link.stats.sent_bundled
                   for p in st.peers.values() for le in p.links.values())

    def bind_range(self, nodes: list[int], lower: int, upper: int) -> dict[int, int]:
        ports = {}
        for i in nodes:
            r = self.do(i, "open", S.SOCK_RDM)
            self.do(i, "bind", r, (NAMESEQ, TYPE, lower, upper))
            ports[i] = r
        want = len(nodes)
        assert self.run_until(lambda: all(
            len([p for p in nd.stack.name_table if p.type == TYPE and p.lower == lower])
            == want for nd in self.c.nodes))
        return ports

    def send_all(self, i: int, port: int, dest: tuple[int, ...], msgs: list[bytes]) -> None:
        """Send in order; on congestion wait for the port's Wakeup, as an app blocks."""
        k = 0
        while k < len(msgs):
            if self.do(i, "sendto", port, dest, msgs[k]):
                k += 1
                continue
            assert self.run_until(lambda: any(isinstance(e, Wakeup) and e.port == port
                                              for e in self.ev[i]), timeout=60.0)
            self.ev[i] = [e for e in self.ev[i]
                          if not (isinstance(e, Wakeup) and e.port == port)]

    def received(self, i: int, port: int) -> list[int]:
        return [struct.unpack_from("!I", e.data)[0] for e in self.ev[i]
                if isinstance(e, Deliver) and e.port == port]


@pytest.mark.parametrize("n,seed", [(4, 1), (8, 2)])
def test_broadcast_mode_multicast_once_in_order_under_loss(n: int, seed: int) -> None:
    net = Net(n, seed, loss=0.05)
    net.bc(0).set_mode(BcMode.BCAST)
    rx = net.bind_range(list(range(1, n)), 0, 10)
    s = net.do(0, "open", S.SOCK_RDM)
    bl = net.bc(0).link
    sent0, uc0 = bl.stats.sent_pkts, net.uc_sent(0)
    count = 400
    msgs = [struct.pack("!I", k) + bytes(200) for k in range(count)]
    net.send_all(0, s, (NAMESEQ, TYPE, 2, 7), msgs)
    assert net.run_until(lambda: all(len(net.received(i, rx[i])) == count
                                     for i in rx), timeout=120.0)
    net.c.run_for(2.0)
    for i in rx:
        assert net.received(i, rx[i]) == list(range(count)), f"node {i}"
    # one copy per message on the broadcast link, not one per node on unicast links
    assert net.bc(0).counters["mcast_bcast"] == count
    assert net.bc(0).counters["mcast_rcast"] == 0
    data_pkts = bl.stats.sent_pkts - sent0
    assert count // 10 <= data_pkts <= count  # bundled when the window is full
    assert net.uc_sent(0) - uc0 < count // 4  # no data went by replicast
    assert bl.stats.retransmitted > 0  # the 5% loss was repaired by the link
    assert bl.transmq_len == 0 and bl.backlog_len == 0  # every peer acked everything
    # every unicast link announces the broadcast link's last sent packet: they read one
    # cell the broadcast link keeps current (the plain path wrote it into each link)
    assert bl.last_bcast > 0
    for p in net.c.nodes[0].stack.peers.values():
        for le in p.links.values():
            assert le.link.last_bcast == bl.last_bcast
    # the receivers NACKed what they missed through their STATEs
    assert sum(net.bc(i).counters["states_nack"] + net.bc(i).counters["states_sync"]
               for i in rx) > 0
    assert net.c.bugs() == {}


def test_name_updates_go_on_the_broadcast_link_under_loss() -> None:
    net = Net(6, 3, loss=0.05)
    before = [net.bc(0).link.stats.sent_pkts, net.bc(0).counters["names_bcast"]]
    ports = []
    for k in range(60):
        r = net.do(0, "open", S.SOCK_RDM)
        net.do(0, "bind", r, (NAMESEQ, TYPE + 1, k, k))
        ports.append(r)
    assert net.run_until(lambda: all(
        len([p for p in nd.stack.name_table if p.type == TYPE + 1]) == 60
        for nd in net.c.nodes), timeout=60.0)
    assert net.bc(0).counters["names_bcast"] - before[1] == 60
    assert net.bc(0).counters["names_rcast"] == 0
    assert net.bc(0).link.stats.sent_pkts > before[0]
    # and the withdrawals too
    for r in ports[:30]:
        net.do(0, "close", r)
    assert net.run_until(lambda: all(
        len([p for p in nd.stack.name_table if p.type == TYPE + 1]) == 30
        for nd in net.c.nodes), timeout=60.0)
    assert net.bc(0).counters["names_bcast"] - before[1] == 90


def test_replicast_mode_uses_the_unicast_links() -> None:
    net = Net(5, 4)
    for i in range(5):
        net.bc(i).set_mode(BcMode.RCAST)
    rx = net.bind_range([1, 2, 3, 4], 0, 10)
    s = net.do(0, "open", S.SOCK_RDM)
    sent0, uc0 = net.bc(0).link.stats.sent_pkts, net.uc_sent(0)
    msgs = [struct.pack("!I", k) for k in range(50)]
    net.send_all(0, s, (NAMESEQ, TYPE, 0, 10), msgs)
    assert net.run_until(lambda: all(len(net.received(i, rx[i])) == 50 for i in rx))
    for i in rx:
        assert net.received(i, rx[i]) == list(range(50))
    assert net.bc(0).link.stats.sent_pkts == sent0  # nothing on the broadcast link
    assert net.bc(0).counters["mcast_rcast"] == 50
    assert net.uc_sent(0) - uc0 >= 4 * 50
    # forced REPLICAST also keeps name updates off the broadcast link
    r = net.do(0, "open", S.SOCK_RDM)
    net.do(0, "bind", r, (NAMESEQ, TYPE + 2, 1, 1))
    assert net.run_until(lambda: all(
        any(p.type == TYPE + 2 for p in nd.stack.name_table) for nd in net.c.nodes))
    assert net.bc(0).link.stats.sent_pkts == sent0
    assert net.bc(0).counters["names_rcast"] >= 4


def test_autoselect_switches_by_the_kernel_rule() -> None:
    net = Net(8, 5)
    bc = net.bc(0)
    assert bc.get_broadcast() == {"method": "AUTOSELECT", "mode": 4, "ratio": 10}
    # 7 peers, ratio 10: threshold 1 + 7 * 10 // 100 = 1 destination node
    one = net.bind_range([1], 100, 100)
    many = net.bind_range([1, 2, 3, 4, 5], 200, 200)
    s = net.do(0, "open", S.SOCK_RDM)
    uc0 = net.uc_sent(0)
    assert net.do(0, "sendto", s, (NAMESEQ, TYPE, 100, 100), struct.pack("!I", 1))
    assert bc.counters["mcast_rcast"] == 1 and bc.counters["mcast_bcast"] == 0
    assert net.uc_sent(0) == uc0 + 1
    # within 5 s the socket's method stays (no MCAST_RBCTL in the cluster)
    assert net.do(0, "sendto", s, (NAMESEQ, TYPE, 200, 200), struct.pack("!I", 2))
    assert bc.counters["mcast_rcast"] == 2
    net.c.run_for(5.5)
    sent0 = bc.link.stats.sent_pkts
    assert net.do(0, "sendto", s, (NAMESEQ, TYPE, 200, 200), struct.pack("!I", 3))
    assert bc.counters["mcast_bcast"] == 1
    assert bc.link.stats.sent_pkts == sent0 + 1
    assert net.run_until(lambda: all(net.received(i, many[i]) == [2, 3] for i in many))
    assert net.received(1, one[1]) == [1]
    # ratio 100: threshold 8 > 5 destinations -> replicast again (after 5 s)
    bc.set_ratio(100)
    net.c.run_for(5.5)
    assert net.do(0, "sendto", s, (NAMESEQ, TYPE, 200, 200), struct.pack("!I", 4))
    assert bc.counters["mcast_rcast"] == 3
    assert net.run_until(lambda: all(net.received(i, many[i]) == [2, 3, 4] for i in many))


def test_socket_option_mandates_the_method() -> None:
    """TIPC_MCAST_BROADCAST / TIPC_MCAST_REPLICAST override AUTOSELECT for that socket."""
    net = Net(5, 6)
    bc = net.bc(0)
    one = net.bind_range([1], 100, 100)  # 1 node: AUTOSELECT would replicast
    many = net.bind_range([1, 2, 3, 4], 200, 200)  # 4 nodes: AUTOSELECT would broadcast
    b = net.do(0, "open", S.SOCK_RDM)
    net.L(0).setsockopt(b, S.TIPC_MCAST_BROADCAST, 1)
    r = net.do(0, "open", S.SOCK_RDM)
    net.L(0).setsockopt(r, S.TIPC_MCAST_REPLICAST, 1)
    sent0 = bc.link.stats.sent_pkts
    assert net.do(0, "sendto", b, (NAMESEQ, TYPE, 100, 100), struct.pack("!I", 1))
    assert bc.link.stats.sent_pkts == sent0 + 1 and bc.counters["mcast_bcast"] == 1
    assert net.do(0, "sendto", r, (NAMESEQ, TYPE, 200, 200), struct.pack("!I", 2))
    assert bc.link.stats.sent_pkts == sent0 + 1 and bc.counters["mcast_rcast"] == 1
    assert net.run_until(lambda: net.received(1, one[1]) == [1]
                         and all(net.received(i, many[i]) == [2] for i in many))


def test_group_broadcast_goes_on_the_broadcast_link_in_order_under_loss() -> None:
    """Group broadcasts (send() with no address) take the socket's method too
    (tipc_send_group_bcast -> tipc_mcast_xmit): with BROADCAST every member on the
    5 other nodes gets every message once, in order, and the copies were one per
    message on the broadcast link, except the ack-requesting ones the group forces
    to replicast."""
    net = Net(6, 7, loss=0.05)
    net.bc(0).set_mode(BcMode.BCAST)
    gtype = 7777
    ports = {}
    for i in range(6):
        p = net.do(i, "open", S.SOCK_RDM)
        net.L(i).setsockopt(p, S.TIPC_GROUP_JOIN, struct.pack("=IIII", gtype, i, 2, 2))
        net.c._flush(i)
        ports[i] = p
    # every member sees the 5 others join
    assert net.run_until(lambda: all(
        len([e for e in net.ev[i] if isinstance(e, GroupData) and e.evt == 1]) == 5
        for i in range(6)), timeout=60.0)
    sent0 = net.bc(0).link.stats.sent_pkts
    count = 200
    k = 0
    while k < count:
        if net.do(0, "sendto", ports[0], None, struct.pack("!I", k) + bytes(100)):
            k += 1
            continue
        assert net.run_until(lambda: any(isinstance(e, Wakeup) and e.port == ports[0]
                                         for e in net.ev[0]), timeout=60.0)
        net.ev[0] = [e for e in net.ev[0] if not isinstance(e, Wakeup)]

    def got(i: int) -> list[int]:
        return [struct.unpack_from("!I", e.data)[0] for e in net.ev[i]
                if isinstance(e, GroupData) and e.evt == 0 and e.port == ports[i]]

    assert net.run_until(lambda: all(len(got(i)) == count for i in range(1, 6)),
                         timeout=120.0)
    net.c.run_for(2.0)
    for i in range(1, 6):
        assert got(i) == list(range(count)), i
    assert net.bc(0).counters["mcast_bcast"] >= count // 2
    assert net.bc(0).link.stats.sent_pkts - sent0 >= count // 10
    assert net.c.bugs() == {}


def test_cached_cluster_caps_equal_a_walk_over_every_peer() -> None:
    """Twin test of StackBcast._cluster_caps (cached on Stack.peers_gen) against the
    plain AND over every known peer, through the events that change it: peers found,
    a peer rediscovered with fewer capabilities, a peer removed."""
    from tipcpy.core.bcast import ADVERTISE_CAPS
    from tipcpy.core.discover import PeerDiscovered
    from tipcpy.wire.consts import Cap

    c = SimCluster(4, seed=2)
    assert c.run_until(lambda: c.all_links_up(), timeout=5.0)
    st = c.nodes[0].stack

    def plain() -> int:
        caps = ADVERTISE_CAPS
        for p in st.peers.values():
            caps &= int(p.caps)
        return caps

    assert st.bcast._cluster_caps() == plain() == ADVERTISE_CAPS
    # a peer comes back with fewer capabilities (an older node on the same identity)
    peer = st.peers[c.addr(1)]
    bid, le = next(iter(peer.links.items()))
    st._peer_discovered(PeerDiscovered(bid, peer.addr, peer.node_id,
                                       int(peer.caps) & ~Cap.NAMED_BCAST, le.media_addr,
                                       peer.signature), c.now)
    assert st.bcast._cluster_caps() == plain()
    assert not plain() & Cap.NAMED_BCAST
    # the downgraded peer crashes and is removed: the cluster is whole again
    c.crash(1)
    assert c.run_until(lambda: not st.node_is_up(c.addr(1)), timeout=3.0)
    st.remove_peer(c.addr(1), c.now)
    assert st.bcast._cluster_caps() == plain() == ADVERTISE_CAPS

"""Build N Stacks on a :class:`SimNetwork` and run them on a virtual clock.

Why: the same :class:`~tipcpy.core.stack.Stack` the daemon drives runs here with no
sockets and no sleeping.  Time always jumps to the earliest pending thing (a Stack
deadline or a packet arrival), so a 100-node cluster's minutes of protocol time cost
only the CPU time of the packets actually exchanged.
"""

from __future__ import annotations

import heapq
import random
import zlib
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Any, cast

from tipcpy.core.assembly import build_node
from tipcpy.core.link import keepalive_for
from tipcpy.core.stack import Stack
from tipcpy.sim.network import FaultModel, SimNetwork

__all__ = ["SimCluster", "SimNode", "make_node_id"]


def make_node_id(i: int) -> bytes:
    """Deterministic 16-byte identity for node ``i`` ("sim-node-<i>", NUL padded).

    A printable string id so ``node_list()`` shows it the way the kernel shows
    string identities.
    """
    s = f"simnode{i}".encode()
    return s.ljust(16, b"\0")


@dataclass
class SimNode:
    """One simulated node: its Stack, its log of (time, event), alive flag."""

    index: int
    stack: Stack
    events: list[tuple[float, object]]
    alive: bool = True


class SimCluster:
    """N nodes, each with one bearer per segment, on a shared virtual clock.

    >>> c = SimCluster(3, seed=1)
    >>> c.run_until(lambda: c.all_links_up(), timeout=5.0)
    """

    def __init__(
        self,
        n: int = 0,
        *,
        seed: int = 0,
        segments: Iterable[str] = ("lan0",),
        net_id: int = 4711,
        tolerance: int = 1500,
        priority: int = 10,
        window: int = 50,
        mtu: int = 1500,
        faults: FaultModel | None = None,
        start: bool = True,
        mon_threshold: int | None = None,
        probe_idle: bool = True,
    ) -> None:
        self.seed = seed
        self.now = 0.0
        self.net = SimNetwork(seed)
        self.net_id = net_id
        self.segments = list(segments)
        for s in self.segments:
            self.net.add_segment(s, faults)
        self.tolerance = tolerance
        self.priority = priority
        self.window = window
        self.mtu = mtu
        self.mon_threshold = mon_threshold
        self.probe_idle = probe_idle
        self.nodes: list[SimNode] = []
        self._heap: list[tuple[float, int]] = []
        self._deadline: dict[int, float | None] = {}
        self.steps = 0
        for _ in range(n):
            self.add_node(start=start)

    # ---- building -------------------------------------------------------------------
    @property
    def stacks(self) -> list[Stack]:
        return [n.stack for n in self.nodes]

    def add_node(self, node_id: bytes | None = None, *, start: bool = True,
                 segments: Iterable[str] | None = None, net_id: int | None = None) -> SimNode:
        """Create a Stack (identity ``make_node_id(i)`` unless given) and enable bearers."""
        i = len(self.nodes)
        rng = random.Random((self.seed << 16) ^ (i * 7919 + 1))
        stack = build_node(node_id or make_node_id(i), net_id=net_id or self.net_id, rng=rng)
        if self.mon_threshold is not None:
            stack.set_mon_threshold(self.mon_threshold)
        stack.probe_idle = self.probe_idle
        node = SimNode(i, stack, [])
        self.nodes.append(node)
        if start:
            for seg in (segments if segments is not None else self.segments):
                self.enable_bearer(i, seg)
        self._touch(i)
        return node

    def enable_bearer(self, i: int, segment: str, **props: Any) -> int:
        """Give node ``i`` a bearer ``eth:<segment>`` attached to that segment."""
        stack = self.nodes[i].stack
        # the bearer id is the index the Stack will assign; attach first for the address
        bearer_id = stack.next_bearer_id()
        maddr = self.net.attach(i, bearer_id, segment)
        kw: dict[str, Any] = dict(priority=self.priority, tolerance=self.tolerance,
                                  window=self.window)
        kw.update(props)
        got = stack.enable_bearer(f"eth:{segment}", "mem", maddr, self.mtu, self.now, **kw)
        assert got == bearer_id
        self._flush(i)
        return got

    def disable_bearer(self, i: int, segment: str) -> None:
        stack = self.nodes[i].stack
        bid = stack.bearer_id(f"eth:{segment}")
        stack.disable_bearer(f"eth:{segment}", self.now)
        self._flush(i)
        self.net.detach(i, bid)

    # ---- faults ---------------------------------------------------------------------
    def crash(self, i: int) -> None:
        """Node ``i`` stops dead: no more ticks, packets to it are lost."""
        self.nodes[i].alive = False
        self.net.cut(i)

    def replace(self, i: int, node_id: bytes, *, start: bool = True) -> SimNode:
        """Node ``i`` leaves for good (its Stack dropped, its attachments removed) and a
        new node with identity ``node_id`` takes its slot: churn without the
        cluster's own lists growing."""
        old = self.nodes[i]
        old.alive = False
        self.net.detach(i)
        rng = random.Random((self.seed << 16) ^ (i * 7919 + 1) ^ zlib.crc32(node_id))
        stack = build_node(node_id, net_id=self.net_id, rng=rng)
        if self.mon_threshold is not None:
            stack.set_mon_threshold(self.mon_threshold)
        stack.probe_idle = self.probe_idle
        node = SimNode(i, stack, [])
        self.nodes[i] = node
        self._deadline.pop(i, None)
        if start:
            for seg in self.segments:
                self.enable_bearer(i, seg)
        self._touch(i)
        return node

    def cut(self, i: int, segment: str | None = None) -> None:
        self.net.cut(i, segment)

    def heal(self, i: int, segment: str | None = None) -> None:
        self.net.heal(i, segment)

    def partition(self, *groups: Iterable[int]) -> None:
        sets: list[set[Hashable]] = [set(g) for g in groups]
        self.net.partition(*sets)

    def heal_partition(self) -> None:
        self.net.heal_partition()

    def inject(self, i: int, bearer_id: int, data: bytes, delay: float = 0.0) -> None:
        """Put raw bytes on node i's bearer (garbage, foreign net id, ...)."""
        self.net.inject(i, bearer_id, data, self.now, delay)

    # ---- running --------------------------------------------------------------------
    def _touch(self, i: int) -> None:
        node = self.nodes[i]
        d = node.stack.next_deadline() if node.alive else None
        if self._deadline.get(i) != d:
            self._deadline[i] = d
            if d is not None:
                heapq.heappush(self._heap, (d, i))

    def _flush(self, i: int) -> None:
        node = self.nodes[i]
        stack = node.stack
        for bearer_id, dest, data in stack.take_transmits():
            if node.alive:
                self.net.send(i, bearer_id, dest, data, self.now)
        for ev in stack.take_events():
            node.events.append((self.now, ev))
        self._touch(i)

    def _next_time(self) -> float | None:
        heap = self._heap
        while heap:
            d, i = heap[0]
            if self._deadline.get(i) != d or not self.nodes[i].alive:
                heapq.heappop(heap)
                continue
            break
        t_stack = heap[0][0] if heap else None
        t_net = self.net.next_delivery()
        if t_stack is None:
            return t_net
        if t_net is None:
            return t_stack
        return min(t_stack, t_net)

    def step(self, limit: float) -> bool:
        """Advance to the next event time if it is <= limit; False if nothing to do."""
        t = self._next_time()
        if t is None or t > limit:
            return False
        self.now = max(self.now, t)
        now = self.now
        self.steps += 1
        touched: set[int] = set()
        for att, data in self.net.pop_due(now):
            node = self.nodes[cast(int, att.node)]
            if not node.alive:
                continue
            node.stack.receive(att.bearer_id, data, now)
            touched.add(node.index)
        heap = self._heap
        while heap and heap[0][0] <= now:
            d, i = heapq.heappop(heap)
            if self._deadline.get(i) != d or not self.nodes[i].alive:
                continue
            self._deadline[i] = None
            self.nodes[i].stack.tick(now)
            touched.add(i)
        for i in sorted(touched):
            self._flush(i)
        return True

    def run_until(self, until: float | Callable[[], bool], timeout: float | None = None) -> bool:
        """Run to virtual time ``until``, or until the predicate holds (within ``timeout``).

        Returns True if the time was reached / the predicate became true.
        """
        if callable(until):
            limit = self.now + (timeout if timeout is not None else 60.0)
            while not until():
                if not self.step(limit):
                    self.now = max(self.now, limit)
                    return bool(until())
            return True
        while self.step(until):
            pass
        self.now = max(self.now, until)
        return True

    def run_for(self, dt: float) -> None:
        self.run_until(self.now + dt)

    # ---- queries --------------------------------------------------------------------
    def addr(self, i: int) -> int:
        return self.nodes[i].stack.own_addr

    def all_links_up(self, nodes: Iterable[int] | None = None) -> bool:
        """Every pair of (alive) nodes has at least one link up, seen from both sides."""
        idx = list(nodes) if nodes is not None else [n.index for n in self.nodes if n.alive]
        for i in idx:
            st = self.nodes[i].stack
            for j in idx:
                if i != j and not st.node_is_up(self.addr(j)):
                    return False
        return True

    def links_up(self, i: int) -> int:
        return sum(1 for lk in self.nodes[i].stack.link_list() if lk["up"]
                   and lk["name"] != "broadcast-link")

    def loss_bound(self) -> float:
        """Seconds within which every node must hold a crashed node down, above the
        monitor threshold too: its supervisors find it after the tolerance plus one
        interval, their record takes one interval to travel, and the others' own
        probing then fails after the tolerance plus one interval (10 ms of rounding)."""
        tol = self.tolerance / 1000
        intv = keepalive_for(self.tolerance)
        return 2 * (tol + intv) + intv + 0.01

    def bugs(self) -> dict[str, Any]:
        """Every FSM event a node or link table refused and every exception a socket
        layer swallowed, per node index; empty when all is well (tests/sim asserts it
        after each test)."""
        out: dict[str, Any] = {}
        for n in self.nodes:
            st = n.stack.stats()
            illegal = {k: v for k, v in st["fsm_illegal"].items() if v}
            if illegal:
                out[f"node{n.index} fsm_illegal"] = illegal
            if st["swallowed"]:
                out[f"node{n.index} swallowed"] = st["swallowed"]
        return out

    def events_of(self, i: int, cls: type) -> list[tuple[float, Any]]:
        return [(t, e) for t, e in self.nodes[i].events if isinstance(e, cls)]

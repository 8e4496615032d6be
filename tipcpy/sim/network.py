"""In-memory, lossy, deterministic network for simulating TIPC clusters.

Why: the protocol core is sans-IO, so a whole cluster can run on a virtual clock
with every fault we care about (loss, duplication, reordering, delay, partitions,
cut attachments) reproducible from one seed.  Nothing here sleeps or touches a socket.

Model: a *segment* is one broadcast medium (an Ethernet LAN or a UDP multicast
group).  A node *attaches* to a segment through one of its bearers and gets a
:class:`~tipcpy.core.discover.EthMediaAddr`.  A packet sent with destination ``None``
is delivered to every other attachment of the segment; a packet with a media address
goes only to that attachment (if it is on the same segment).
"""

from __future__ import annotations

import heapq
import itertools
import random
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from tipcpy.core.discover import mem_media_addr
from tipcpy.wire import EthMediaAddr

__all__ = ["FaultModel", "SimNetwork", "Attachment", "mem_media_addr"]


@dataclass
class FaultModel:
    """Fault parameters applied to each packet copy (probabilities in [0, 1], times in s).

    ``reorder`` is the probability that a copy gets an extra random delay of up to
    ``reorder_delay``, which lets later packets overtake it.  ``corrupt`` is the
    probability that a copy arrives with one random bit flipped: TIPC has no checksum
    of its own, so this is what a medium without one (or a broken NIC) would do.
    """

    loss: float = 0.0
    duplicate: float = 0.0
    reorder: float = 0.0
    reorder_delay: float = 0.005
    delay: float = 0.0005
    jitter: float = 0.0
    corrupt: float = 0.0

    def copy(self, **changes: float) -> FaultModel:
        d = dict(self.__dict__)
        d.update(changes)
        return FaultModel(**d)


@dataclass
class Attachment:
    """One node's bearer on one segment."""

    node: Hashable
    bearer_id: int
    segment: str
    media_addr: EthMediaAddr
    cut: bool = False


@dataclass
class _Segment:
    name: str
    faults: FaultModel
    members: list[Attachment] = field(default_factory=list)


@dataclass
class SimStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    reordered: int = 0
    corrupted: int = 0
    blocked: int = 0  # partition or cut


class SimNetwork:
    """Segments, attachments and in-flight packets, driven by a virtual clock.

    ``deliver(node, bearer_id, data, now)`` is called for each packet when it arrives;
    the driver (:class:`~tipcpy.sim.cluster.SimCluster`) hands it to the node's Stack.
    """

    def __init__(self, seed: int = 0) -> None:
        self.rng = random.Random(seed)
        self._segments: dict[str, _Segment] = {}
        self._by_addr: dict[EthMediaAddr, Attachment] = {}
        self._by_node_bearer: dict[tuple[Hashable, int], Attachment] = {}
        self._pair_faults: dict[tuple[Hashable, Hashable], FaultModel] = {}
        self._partition: dict[Hashable, int] | None = None
        self._next_addr = itertools.count(1)
        self._seq = itertools.count()
        self._inflight: list[tuple[float, int, Attachment, bytes]] = []
        self.stats = SimStats()
        self.taps: list[Callable[[float, Attachment, EthMediaAddr | None, bytes], None]] = []

    # ---- topology -------------------------------------------------------------------
    def add_segment(self, name: str, faults: FaultModel | None = None) -> None:
        """Create a segment (idempotent: an existing one keeps its members)."""
        if name in self._segments:
            if faults is not None:
                self._segments[name].faults = faults
            return
        self._segments[name] = _Segment(name, faults or FaultModel())

    def set_faults(self, segment: str, **params: float) -> None:
        """Change fault parameters of a segment, e.g. ``set_faults("a", loss=0.1)``."""
        seg = self._segments[segment]
        seg.faults = seg.faults.copy(**params)

    def set_pair_faults(self, a: Hashable, b: Hashable, faults: FaultModel | None) -> None:
        """Override the fault model for packets between nodes a and b (both directions)."""
        for key in ((a, b), (b, a)):
            if faults is None:
                self._pair_faults.pop(key, None)
            else:
                self._pair_faults[key] = faults

    def attach(self, node: Hashable, bearer_id: int, segment: str) -> EthMediaAddr:
        """Attach a node's bearer to a segment; returns its fresh media address."""
        self.add_segment(segment)
        addr = mem_media_addr(next(self._next_addr))
        att = Attachment(node, bearer_id, segment, addr)
        self._segments[segment].members.append(att)
        self._by_addr[addr] = att
        self._by_node_bearer[(node, bearer_id)] = att
        return addr

    def detach(self, node: Hashable, bearer_id: int | None = None) -> None:
        """Remove a node's attachments (all of them when bearer_id is None)."""
        for key, att in list(self._by_node_bearer.items()):
            if key[0] != node or (bearer_id is not None and key[1] != bearer_id):
                continue
            del self._by_node_bearer[key]
            del self._by_addr[att.media_addr]
            self._segments[att.segment].members.remove(att)
        # packets already in flight towards a detached node are discarded on arrival

    def cut(self, node: Hashable, segment: str | None = None, cut: bool = True) -> None:
        """Cut (or heal with cut=False) a node's attachment(s): nothing passes either way."""
        for att in self._by_node_bearer.values():
            if att.node == node and (segment is None or att.segment == segment):
                att.cut = cut

    def heal(self, node: Hashable, segment: str | None = None) -> None:
        self.cut(node, segment, cut=False)

    def partition(self, *groups: list[Hashable] | set[Hashable] | tuple[Hashable, ...]) -> None:
        """Split the nodes into groups that cannot reach each other.

        Nodes not named in any group form one extra group together.
        """
        self._partition = {}
        for i, g in enumerate(groups):
            for n in g:
                self._partition[n] = i

    def heal_partition(self) -> None:
        self._partition = None

    def attachment(self, node: Hashable, bearer_id: int) -> Attachment:
        return self._by_node_bearer[(node, bearer_id)]

    # ---- traffic --------------------------------------------------------------------
    def _group(self, node: Hashable) -> int:
        assert self._partition is not None
        return self._partition.get(node, -1)

    def send(self, node: Hashable, bearer_id: int, dest: object, data: bytes, now: float) -> None:
        """Queue a packet from (node, bearer) to ``dest`` (a EthMediaAddr or None = all)."""
        src = self._by_node_bearer.get((node, bearer_id))
        if src is None:
            return
        self.stats.sent += 1
        for tap in self.taps:
            tap(now, src, dest if isinstance(dest, EthMediaAddr) else None, data)
        if src.cut:
            self.stats.blocked += 1
            return
        seg = self._segments[src.segment]
        if dest is None:
            targets = [a for a in seg.members if a is not src]
        else:
            att = self._by_addr.get(dest) if isinstance(dest, EthMediaAddr) else None
            targets = [att] if att is not None and att.segment == src.segment else []
        for dst in targets:
            self._send_one(src, dst, seg.faults, data, now)

    def _send_one(self, src: Attachment, dst: Attachment, seg_faults: FaultModel,
                  data: bytes, now: float) -> None:
        if dst.cut or (self._partition is not None
                       and self._group(src.node) != self._group(dst.node)):
            self.stats.blocked += 1
            return
        f = self._pair_faults.get((src.node, dst.node), seg_faults)
        rng = self.rng
        if f.loss and rng.random() < f.loss:
            self.stats.lost += 1
            return
        copies = 1
        if f.duplicate and rng.random() < f.duplicate:
            copies = 2
            self.stats.duplicated += 1
        for _ in range(copies):
            t = now + f.delay
            if f.jitter:
                t += rng.random() * f.jitter
            if f.reorder and rng.random() < f.reorder:
                t += rng.random() * f.reorder_delay
                self.stats.reordered += 1
            out = data
            if f.corrupt and data and rng.random() < f.corrupt:
                bit = rng.randrange(len(data) * 8)
                b = bytearray(data)
                b[bit >> 3] ^= 1 << (bit & 7)
                out = bytes(b)
                self.stats.corrupted += 1
            heapq.heappush(self._inflight, (t, next(self._seq), dst, out))

    def next_delivery(self) -> float | None:
        return self._inflight[0][0] if self._inflight else None

    def pop_due(self, now: float) -> list[tuple[Attachment, bytes]]:
        """Remove and return every packet due at or before ``now``, in arrival order."""
        out: list[tuple[Attachment, bytes]] = []
        q = self._inflight
        while q and q[0][0] <= now:
            _, _, dst, data = heapq.heappop(q)
            if self._by_node_bearer.get((dst.node, dst.bearer_id)) is not dst or dst.cut:
                self.stats.blocked += 1
                continue
            self.stats.delivered += 1
            out.append((dst, data))
        return out

    def inject(self, node: Hashable, bearer_id: int, data: bytes, now: float,
               delay: float = 0.0) -> None:
        """Deliver raw bytes to a node's bearer as if they came from the segment."""
        att = self._by_node_bearer[(node, bearer_id)]
        heapq.heappush(self._inflight, (now + delay, next(self._seq), att, data))

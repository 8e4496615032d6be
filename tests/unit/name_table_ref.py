"""The name table as it was before the compact representation (commit 1627611), kept
as the plain reference the compact NameTable is compared with in the twin tests
(test_name_table.py): one _Range object per exact range, dicts keyed by publication id.
Not used by tipcpy itself.
"""

from __future__ import annotations

import errno
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterator

from tipcpy.wire.consts import (
    TIPC_CLUSTER_SCOPE,
    TIPC_MAX_PUBL,
    TIPC_NODE_SCOPE,
    TIPC_RESERVED_TYPES,
    TIPC_ZONE_SCOPE,
)

__all__ = [
    "TIPC_ANY_SCOPE",
    "TIPC_NAMETBL_SIZE",
    "NameTable",
    "Observer",
    "Publication",
    "check_bind",
    "scope_name",
]

#: Kernel's hash size for service types; `tipc nametable show` walks buckets in order.
TIPC_NAMETBL_SIZE = 1024
#: Internal scope value: match both node and cluster scope (multicast receive lookup).
TIPC_ANY_SCOPE = 10
_U32 = 0xFFFFFFFF


class Publication:
    """One binding of a service range to a socket ``{node, port}``.

    ``key`` is the publication key chosen by the publishing node (socket layer: port +
    bind count + 1; node state: the node address). ``id`` is assigned by the table on
    insert (monotonic, used to report existing bindings "by age" as the kernel does);
    it is not part of equality.
    """

    __slots__ = ("type", "lower", "upper", "scope", "node", "port", "key", "id")

    def __init__(
        self, type: int, lower: int, upper: int, scope: int, node: int, port: int, key: int
    ) -> None:
        self.type = type
        self.lower = lower
        self.upper = upper
        self.scope = scope
        self.node = node
        self.port = port
        self.key = key
        self.id = -1

    def _t(self) -> tuple[int, int, int, int, int, int, int]:
        return (self.type, self.lower, self.upper, self.scope, self.node, self.port, self.key)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Publication):
            return NotImplemented
        return self._t() == other._t()

    def __hash__(self) -> int:
        return hash(self._t())

    def __repr__(self) -> str:
        return (
            f"Publication({{{self.type},{self.lower},{self.upper}}} {scope_name(self.scope)} "
            f"node={self.node:#x} port={self.port} key={self.key})"
        )


#: ``observer(publication, published, edge)``: ``published`` is True for insert, False
#: for remove; ``edge`` is True when the exact range got its first publication (insert)
#: or lost its last one (remove).
Observer = Callable[[Publication, bool, bool], None]


def scope_name(scope: int) -> str:
    """The word `tipc nametable show` prints for a scope."""
    return {TIPC_ZONE_SCOPE: "zone", TIPC_CLUSTER_SCOPE: "cluster", TIPC_NODE_SCOPE: "node"}.get(
        scope, str(scope)
    )


def check_bind(
    type: int, lower: int, upper: int, scope: int, *, local_count: int = 0, internal: bool = False
) -> int:
    """Validate a bind request as the socket layer must, and return the normalized scope.

    Raises ``OSError`` with the errno the application gets:

    * ``EINVAL``: ``lower > upper`` or a value outside u32 (kernel: ``tipc_uaddr_valid``);
    * ``EINVAL``: a scope other than 0/1/2 (cluster; 0 and the deprecated zone scope 1
      mean cluster, as in the kernel) or 3 (node). The kernel silently maps any other
      value to cluster; we refuse it because it can only be a caller bug. Negative scopes
      mean *unbind* and must be handled by the caller before calling this;
    * ``EACCES``: ``type < 64`` (``TIPC_RESERVED_TYPES``) unless ``internal``;
    * ``EINVAL``: this node already holds ``TIPC_MAX_PUBL`` (65535) publications (the
      kernel's ``tipc_nametbl_publish`` fails the bind with EINVAL too).
    """
    for name, v in (("type", type), ("lower", lower), ("upper", upper)):
        if not isinstance(v, int) or not 0 <= v <= _U32:
            raise OSError(errno.EINVAL, f"bind: {name} {v!r} is not a 32-bit unsigned value")
    if lower > upper:
        raise OSError(errno.EINVAL, f"bind: lower {lower} > upper {upper}")
    if scope in (0, TIPC_ZONE_SCOPE, TIPC_CLUSTER_SCOPE):
        scope = TIPC_CLUSTER_SCOPE
    elif scope != TIPC_NODE_SCOPE:
        raise OSError(errno.EINVAL, f"bind: bad scope {scope!r} (use 2 = cluster or 3 = node)")
    if type < TIPC_RESERVED_TYPES and not internal:
        raise OSError(
            errno.EACCES, f"bind: service type {type} is reserved (types < {TIPC_RESERVED_TYPES})"
        )
    if local_count >= TIPC_MAX_PUBL:
        raise OSError(
            errno.EINVAL,
            f"bind: this node already has {local_count} publications (limit {TIPC_MAX_PUBL})",
        )
    return scope


class _Range:
    """All publications of one exact service range (kernel ``struct service_range``)."""

    __slots__ = ("lower", "upper", "publs", "h", "local", "lh", "one")

    def __init__(self, p: Publication) -> None:
        """A new range holding its first publication ``p`` (every range has one)."""
        self.lower = p.lower
        self.upper = p.upper
        self.publs: list[Publication] = [p]  # all_publ, circular, logical head at h
        self.h = 0
        self.local: list[Publication] | None = None  # local_publ, circular, head at lh
        self.lh = 0
        self.one: tuple[int, int] | None = (p.node, p.port)  # while exactly one binding

    def fix_one(self) -> None:
        publs = self.publs
        self.one = (publs[0].node, publs[0].port) if len(publs) == 1 else None

    def ordered(self) -> list[Publication]:
        """all_publ in the kernel's list order."""
        h = self.h
        return self.publs[h:] + self.publs[:h] if h else list(self.publs)


class _Service:
    """All ranges of one service type (kernel ``struct tipc_service``)."""

    __slots__ = ("type", "seq", "ranges", "lowers", "pmax", "srs", "point", "disjoint")

    def __init__(self, type: int, seq: int) -> None:
        self.type = type
        self.seq = seq  # creation order: newer services first within a hash bucket
        # (lower << 32 | upper) -> range, for ranges with lower < upper only: a point
        # range {i, i} is found through ``point[i]`` (one dict entry and one big-int key
        # less per binding; most bindings are points) -- use get()/put()/drop()
        self.ranges: dict[int, _Range] = {}
        self.lowers: list[int] = []
        self.pmax: list[int] = []
        self.srs: list[_Range] = []
        # Single-instance ranges by instance. While no two ranges of the service overlap
        # (``disjoint``, kept conservatively: it only turns True again when the service
        # is emptied) the range bound to exactly {inst, inst} is the first match for
        # inst, so an anycast lookup is one dict probe instead of a bisect over
        # scattered int objects (5-10 cache misses less with a million bindings).
        self.point: dict[int, _Range] = {}
        self.disjoint = True

    def get(self, lower: int, upper: int) -> _Range | None:
        """The range bound to exactly ``{lower, upper}``, if any."""
        if lower == upper:
            return self.point.get(lower)
        return self.ranges.get((lower << 32) | upper)

    def add_range(self, r: _Range) -> None:
        lowers, pmax = self.lowers, self.pmax
        lo = r.lower
        if not lowers or lo > lowers[-1]:
            # fast path, common when bindings arrive in order (a bulk): append
            if lowers:
                m = pmax[-1]
                if self.disjoint and m >= lo:
                    self.disjoint = False
                if r.upper > m:
                    m = r.upper
            else:
                m = r.upper
            lowers.append(lo)
            self.srs.append(r)
            pmax.append(m)
            if lo == r.upper:
                self.point[lo] = r
            else:
                self.ranges[(lo << 32) | r.upper] = r
            return
        i = bisect_left(lowers, r.lower)  # before equal lowers: kernel goes left on <=
        lowers.insert(i, r.lower)
        self.srs.insert(i, r)
        m = r.upper
        if i and pmax[i - 1] > m:
            m = pmax[i - 1]
        pmax.insert(i, m)
        j, n = i + 1, len(pmax)
        if self.disjoint and ((i and pmax[i - 1] >= r.lower) or (j < n and lowers[j] <= r.upper)):
            self.disjoint = False
        if r.lower == r.upper:
            self.point[r.lower] = r
        else:
            self.ranges[(r.lower << 32) | r.upper] = r
        while j < n and pmax[j] < m:
            pmax[j] = m
            j += 1

    def del_range(self, r: _Range) -> None:
        lowers, srs, pmax = self.lowers, self.srs, self.pmax
        i = bisect_left(lowers, r.lower)
        while srs[i] is not r:
            i += 1
        del lowers[i], srs[i], pmax[i]
        if r.lower == r.upper:
            del self.point[r.lower]
        else:
            del self.ranges[(r.lower << 32) | r.upper]
        prev = pmax[i - 1] if i else -1
        n = len(pmax)
        while i < n:
            u = srs[i].upper
            nv = u if u > prev else prev
            if nv == pmax[i]:
                break
            pmax[i] = nv
            prev = nv
            i += 1

    def overlapping(self, lower: int, upper: int) -> Iterator[_Range]:
        """Ranges overlapping [lower, upper] in tree order (service_range_foreach_match)."""
        srs = self.srs
        end = bisect_right(self.lowers, upper)
        for i in range(bisect_left(self.pmax, lower), end):
            r = srs[i]
            if r.upper >= lower:
                yield r


def _circ_remove(lst: list[Publication], h: int, p: Publication) -> int:
    """Remove p (by identity) from a circular list with head h; return the new head."""
    for j, q in enumerate(lst):
        if q is p:
            del lst[j]
            if j < h:
                h -= 1
            if h >= len(lst):
                h = 0
            return h
    raise KeyError(p)


class NameTable:
    """The node's copy of the cluster binding table (kernel ``struct name_table``).

    ``own_addr`` is this node's 32-bit address; publications with ``node == own_addr``
    or ``node == 0`` are local (kernel ``in_own_node``).
    """

    def __init__(self, own_addr: int) -> None:
        self.own_addr = own_addr
        self._services: dict[int, _Service] = {}
        self._svc_seq = 0
        self._publ_seq = 0
        self._by_node: dict[int, dict[int, Publication]] = {}
        self._count = 0
        self._observers: list[Observer] = []

    # ------------------------------------------------------------------ observers
    def add_observer(self, cb: Observer) -> None:
        """Call ``cb(publ, published, edge)`` after every insert and remove."""
        self._observers.append(cb)

    def remove_observer(self, cb: Observer) -> None:
        self._observers.remove(cb)

    # ------------------------------------------------------------------ mutation
    def _is_local(self, node: int) -> bool:
        return node == 0 or node == self.own_addr

    def insert(self, p: Publication) -> bool:
        """Add a publication; False if the range already has one with the same key from
        the same node (the kernel's only duplicate check: ``key`` and ``node``, where a
        node-0 entry matches any node). Identical ranges with different keys -- even from
        the same socket -- are all kept."""
        svc = self._services.get(p.type)
        if svc is None:
            self._svc_seq += 1
            svc = self._services[p.type] = _Service(p.type, self._svc_seq)
        lower = p.lower
        if lower == p.upper:
            # point range: found through svc.point; share the int object (a decoded
            # item has two equal ints: 32 bytes a binding)
            p.upper = lower
            r = svc.point.get(lower)
        else:
            r = svc.ranges.get((lower << 32) | p.upper)
        node = p.node
        if r is None:
            r = _Range(p)
            svc.add_range(r)
            first = True
        else:
            key = p.key
            publs = r.publs
            for q in publs:
                if q.key == key and (not q.node or q.node == node):
                    return False
            publs.insert(r.h, p)
            r.one = None  # two or more now
            first = False
        if node == 0 or node == self.own_addr:
            if r.local is None:
                r.local = [p]
            else:
                r.local.insert(r.lh, p)
        self._publ_seq += 1
        p.id = self._publ_seq
        bn = self._by_node.get(node)
        if bn is None:
            bn = self._by_node[node] = {}
        bn[p.id] = p
        self._count += 1
        for cb in self._observers:
            cb(p, True, first)
        return True

    def _unlink(self, svc: _Service, r: _Range, p: Publication) -> None:
        r.h = _circ_remove(r.publs, r.h, p)
        r.fix_one()
        if r.local is not None and (p.node == 0 or p.node == self.own_addr):
            try:
                r.lh = _circ_remove(r.local, r.lh, p)
            except KeyError:  # pragma: no cover - own_addr changed under us
                pass
            if not r.local:
                r.local = None
                r.lh = 0
        last = not r.publs
        if last:
            svc.del_range(r)
            if not svc.srs:
                del self._services[svc.type]
        bn = self._by_node.get(p.node)
        if bn is not None:
            bn.pop(p.id, None)
            if not bn:
                del self._by_node[p.node]
        self._count -= 1
        for cb in self._observers:
            cb(p, False, last)

    def remove(
        self, type: int, lower: int, node: int, key: int, upper: int | None = None
    ) -> Publication | None:
        """Remove and return the publication matching a withdrawal, or None.

        As the kernel: the exact range ``{type, lower, upper}`` is searched for the first
        publication (in list order) with this ``key`` whose node equals ``node`` (``node
        == 0`` matches any node). The port is not compared. With ``upper=None`` every
        range starting at ``lower`` is tried (most recent first) -- only for callers that
        do not know the upper bound.
        """
        svc = self._services.get(type)
        if svc is None:
            return None
        if upper is not None:
            r = svc.get(lower, upper)
            cands = [r] if r is not None else []
        else:
            i = bisect_left(svc.lowers, lower)
            j = bisect_right(svc.lowers, lower)
            cands = svc.srs[i:j]
        for r in cands:
            for p in r.ordered():
                if p.key == key and (not node or node == p.node):
                    self._unlink(svc, r, p)
                    return p
        return None

    def remove_publication(self, p: Publication) -> bool:
        """Remove exactly this publication object (e.g. on socket close); False if absent."""
        if not self.contains(p):
            return False
        svc = self._services[p.type]
        r = svc.get(p.lower, p.upper)
        assert r is not None
        self._unlink(svc, r, p)
        return True

    def contains(self, p: Publication) -> bool:
        """True if this very publication object is in the table."""
        bn = self._by_node.get(p.node)
        return bn is not None and bn.get(p.id) is p

    def withdraw_node(self, node: int) -> list[Publication]:
        """Purge every publication of ``node`` (node lost); returns them in the order they
        were inserted. Observers see a remove for each."""
        bn = self._by_node.get(node)
        if not bn:
            return []
        out = list(bn.values())
        for p in out:
            svc = self._services[p.type]
            r = svc.get(p.lower, p.upper)
            assert r is not None
            self._unlink(svc, r, p)
        return out

    def set_own_addr(self, addr: int) -> None:
        """Adopt the node address once it is known (kernel ``tipc_named_reinit``): local
        publications made with node 0 or the old address now carry ``addr``."""
        old = self.own_addr
        if addr == old:
            return
        moved: dict[int, Publication] = {}
        for n in {0, old}:
            bn = self._by_node.pop(n, None)
            if bn:
                moved.update(bn)
        for p in moved.values():
            p.node = addr
            r = self._services[p.type].get(p.lower, p.upper)
            assert r is not None
            r.fix_one()
        if moved:
            bn = self._by_node.setdefault(addr, {})
            bn.update(moved)
        self.own_addr = addr

    # ------------------------------------------------------------------ lookups
    def lookup_anycast(self, type: int, instance: int, domain: int = 0) -> tuple[int, int] | None:
        """Translate ``{type, instance}`` to a socket ``(node, port)`` as the kernel does.

        * ``domain`` is another node: the lookup is deferred to that node; returns
          ``(domain, 0)`` (send there with destport 0, it looks up again).
        * ``domain == own node``: round-robin over *local* publications of the first
          (lowest) matching range that has any.
        * ``domain == 0``: round-robin over all publications, cluster-wide, of the first
          (lowest) matching range only.
        * no match: None (``sendto`` fails with EHOSTUNREACH).
        """
        if not domain:
            # hot path: one dict lookup, one C bisect, no allocation for a range with a
            # single binding (its (node, port) tuple is cached on the range)
            svc = self._services.get(type)
            if svc is None:
                return None
            if svc.disjoint:
                r = svc.point.get(instance)
                if r is not None:
                    one = r.one
                    if one is not None:
                        return one
                    publs = r.publs
                    h = r.h
                    p = publs[h]
                    h += 1
                    r.h = 0 if h == len(publs) else h
                    return (p.node, p.port)
            i = bisect_left(svc.pmax, instance)
            try:
                r = svc.srs[i]
            except IndexError:
                return None
            if r.lower > instance:
                return None
            one = r.one
            if one is not None:
                return one
            publs = r.publs
            h = r.h
            p = publs[h]
            h += 1
            r.h = 0 if h == len(publs) else h
            return (p.node, p.port)
        if domain != self.own_addr:
            return (domain, 0)
        svc = self._services.get(type)
        if svc is None:
            return None
        for r in svc.overlapping(instance, instance):
            loc = r.local
            if loc:
                h = r.lh
                p = loc[h]
                h += 1
                r.lh = 0 if h == len(loc) else h
                return (p.node, p.port)
        return None

    def lookup_mcast(
        self,
        type: int,
        lower: int,
        upper: int,
        *,
        scope: int = TIPC_ANY_SCOPE,
        exclude: tuple[int, int] | None = None,
    ) -> dict[int, list[int]]:
        """Every socket with a binding overlapping ``[lower, upper]``, grouped by node:
        ``{node: [port, ...]}`` with each port once per node (a socket bound to several
        matching ranges gets one copy). ``scope`` filters on the publication scope
        (``TIPC_ANY_SCOPE`` = both); ``exclude`` = ``(node, port)`` to skip (the sender)."""
        out: dict[int, dict[int, None]] = {}
        svc = self._services.get(type)
        if svc is None:
            return {}
        for r in svc.overlapping(lower, upper):
            for p in r.ordered():
                if scope != TIPC_ANY_SCOPE and p.scope != scope:
                    continue
                if exclude is not None and exclude[0] == p.node and exclude[1] == p.port:
                    continue
                d = out.get(p.node)
                if d is None:
                    d = out[p.node] = {}
                d[p.port] = None
        return {n: list(d) for n, d in out.items()}

    def lookup_mcast_nodes(self, type: int, lower: int, upper: int) -> set[int]:
        """Nodes with at least one overlapping binding (kernel ``lookup_mcast_nodes``),
        used by a sender to pick broadcast vs replicast."""
        svc = self._services.get(type)
        if svc is None:
            return set()
        return {p.node for r in svc.overlapping(lower, upper) for p in r.publs}

    def lookup_mcast_local(
        self, type: int, lower: int, upper: int, scope: int = TIPC_ANY_SCOPE
    ) -> list[int]:
        """Local ports with an overlapping binding of ``scope`` (kernel
        ``lookup_mcast_sockets``), used when a multicast message arrives."""
        svc = self._services.get(type)
        if svc is None:
            return []
        seen: dict[int, None] = {}
        for r in svc.overlapping(lower, upper):
            loc = r.local
            if not loc:
                continue
            lh = r.lh
            for p in loc[lh:] + loc[:lh]:
                if scope == TIPC_ANY_SCOPE or p.scope == scope:
                    seen[p.port] = None
        return list(seen)

    def subscription_snapshot(
        self, type: int, lower: int, upper: int, ports: bool
    ) -> list[Publication]:
        """Existing bindings a new subscription is told about, oldest first (kernel
        ``tipc_service_subscribe``): with ``ports`` every publication of every overlapping
        range, otherwise the oldest publication of each overlapping range."""
        svc = self._services.get(type)
        if svc is None:
            return []
        out: list[Publication] = []
        for r in svc.overlapping(lower, upper):
            if ports:
                out.extend(r.publs)
            else:
                out.append(min(r.publs, key=_by_id))
        out.sort(key=_by_id)
        return out

    def find(self, type: int, lower: int, upper: int) -> list[Publication]:
        """Publications bound to exactly ``{type, lower, upper}``, in kernel list order."""
        svc = self._services.get(type)
        r = svc.get(lower, upper) if svc else None
        return r.ordered() if r else []

    # ------------------------------------------------------------------ inspection
    def __len__(self) -> int:
        return self._count

    def __iter__(self) -> Iterator[Publication]:
        """Publications in the order `tipc nametable show` prints them: services by hash
        bucket (``type & 1023``), newest service first within a bucket, ranges in tree
        order, publications in list order (e.g. type 2000 before 1000, as captured)."""
        svcs = sorted(
            self._services.values(), key=lambda s: (s.type & (TIPC_NAMETBL_SIZE - 1), -s.seq)
        )
        for svc in svcs:
            for r in list(svc.srs):
                yield from r.ordered()

    def publications_of(self, node: int) -> list[Publication]:
        """All publications of ``node`` in insertion order (for bulk: own node)."""
        bn = self._by_node.get(node)
        return list(bn.values()) if bn else []

    def node_count(self, node: int) -> int:
        bn = self._by_node.get(node)
        return len(bn) if bn else 0

    @property
    def local_count(self) -> int:
        """Publications made by this node (kernel ``local_publ_count``), for the limit."""
        n = self.node_count(self.own_addr)
        if self.own_addr:
            n += self.node_count(0)
        return n

    def nodes(self) -> list[int]:
        """Nodes that currently have publications."""
        return list(self._by_node)

    def service_count(self) -> int:
        return len(self._services)


def _by_id(p: Publication) -> int:
    return p.id

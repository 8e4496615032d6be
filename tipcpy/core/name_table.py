"""The binding (name) table: service ranges bound to sockets, cluster-wide.

Mirrors net/tipc/name_table.c so that lookups pick the same socket the kernel would:

* a *service* per type; inside it *service ranges* keyed by the exact ``(lower, upper)``;
  every range holds the publications bound to exactly that range, from any node.
* ranges are kept in the kernel's rb-tree order (by ``lower``; among equal ``lower`` the
  most recently created range first, because the kernel descends left on ``<=``).
  We keep that order in plain sorted lists so that ``bisect`` (C speed) does the search:
  ``lowers[i]``, ``srs[i]`` and ``pmax[i]`` = max upper of ranges ``0..i``. ``pmax`` is
  non-decreasing, so the leftmost range overlapping ``instance`` is at
  ``bisect_left(pmax, instance)`` if that range's ``lower <= instance`` -- the same range
  the kernel's augmented rb-tree finds, with no scanning.
* within a range the kernel keeps ``all_publ`` and ``local_publ`` lists with new
  publications added at the head and round-robin done by moving the head to the tail.
  We keep each as a Python list plus a rotating head index ``h`` (logical order is
  ``L[h:] + L[:h]``): head insertion is ``L.insert(h, p)``, a lookup is ``L[h]; h += 1``.
  That reproduces the kernel's round-robin order exactly, including the order in which
  ``tipc nametable show`` lists identical bindings after lookups have rotated them.
* memory: a range with a single publication (most of them) is that Publication itself,
  not a range object with a list and a cached tuple; removed ranges leave tombstones
  in the sorted lists (compacted in bulk) and publications are kept per node and per
  local port in lists with lazy deletion. ~290 bytes a point binding instead of ~580,
  and withdrawing a socket's 65,535 bindings is linear, not a memmove each.

The table is sans-IO and knows nothing about distribution or subscriptions: observers
registered with :meth:`NameTable.add_observer` are called on every insert/remove with a
flag telling whether the exact range got its first publication / lost its last one
(what ``TIPC_SUB_SERVICE`` subscriptions report).
"""

from __future__ import annotations

import errno
from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Iterator
from itertools import compress

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
    insert (monotonic, used to report existing bindings "by age" as the kernel does;
    -1 = never in a table, 0 = removed); it is not part of equality.
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
    """An exact service range holding two or more publications (kernel ``struct
    service_range``). A range with a single publication is stored as that Publication
    itself (it has ``lower``/``upper`` too): most bindings are alone in their range, and
    the range object, its list and a cached ``(node, port)`` tuple cost ~200 bytes each.
    A range is promoted to ``_Range`` when a second publication joins it and demoted back
    when only one is left; neither changes the kernel order: with one publication the
    round-robin heads are necessarily 0."""

    __slots__ = ("lower", "upper", "publs", "h", "local", "lh")

    def __init__(self, new: Publication, old: Publication, new_local: bool, old_local: bool) -> None:
        """A range that held ``old`` alone and gets ``new`` (kernel list_add: new first)."""
        self.lower = old.lower
        self.upper = old.upper
        self.publs: list[Publication] = [new, old]  # all_publ, circular, logical head at h
        self.h = 0
        loc = [q for q, is_loc in ((new, new_local), (old, old_local)) if is_loc]
        self.local: list[Publication] | None = loc or None  # local_publ, head at lh
        self.lh = 0

    def ordered(self) -> list[Publication]:
        """all_publ in the kernel's list order."""
        h = self.h
        return self.publs[h:] + self.publs[:h] if h else list(self.publs)


#: What a service holds for one exact range: the lone Publication, or a _Range.
_Slot = Publication | _Range
#: Fewest dead entries before a sorted list or a bag is compacted (and only once they
#: outnumber the live ones): removals stay O(1) amortised instead of a memmove each.
_COMPACT_MIN = 32


def _slot_publs(s: _Slot) -> list[Publication]:
    """A slot's publications in the kernel's all_publ order."""
    if s.__class__ is Publication:
        return [s]
    return s.ordered()  # type: ignore[union-attr]


class _Service:
    """All ranges of one service type (kernel ``struct tipc_service``).

    ``lowers``/``pmax``/``srs`` are parallel lists in tree order. A removed range leaves a
    tombstone (``srs[i] is None``, ``lowers[i]`` kept so the list stays sorted, ``pmax[i]``
    = ``pmax[i-1]``: it contributes nothing), so withdrawing many ranges is not one
    memmove of three lists each; the lists are compacted once the dead outnumber the
    live. The leftmost index with ``pmax >= x`` is always a live range (its upper raised
    the running max), so lookups never land on a tombstone."""

    __slots__ = ("type", "seq", "ranges", "lowers", "pmax", "srs", "point", "disjoint",
                 "n", "dead")  # fmt: skip

    def __init__(self, type: int, seq: int) -> None:
        self.type = type
        self.seq = seq  # creation order: newer services first within a hash bucket
        # (lower << 32 | upper) -> slot, for ranges with lower < upper only: a point
        # range {i, i} is found through ``point[i]`` (one dict entry and one big-int key
        # less per binding; most bindings are points) -- use get()
        self.ranges: dict[int, _Slot] = {}
        self.lowers: list[int] = []
        self.pmax: list[int] = []
        self.srs: list[_Slot | None] = []
        # Single-instance ranges by instance. While no two ranges of the service overlap
        # (``disjoint``: recomputed exactly on compaction, otherwise only ever cleared) the
        # range bound to exactly {inst, inst} is the first match for inst, so an anycast
        # lookup is one dict probe instead of a bisect over scattered int objects.
        self.point: dict[int, _Slot] = {}
        self.disjoint = True
        self.n = 0  # live ranges
        self.dead = 0  # tombstones in the lists

    def get(self, lower: int, upper: int) -> _Slot | None:
        """The slot bound to exactly ``{lower, upper}``, if any."""
        if lower == upper:
            return self.point.get(lower)
        return self.ranges.get((lower << 32) | upper)

    def _index(self, s: _Slot) -> int:
        srs = self.srs
        i = bisect_left(self.lowers, s.lower)
        while srs[i] is not s:
            i += 1
        return i

    def replace(self, old: _Slot, new: _Slot) -> None:
        """Same range, new holder (promotion to / demotion from a _Range)."""
        self.srs[self._index(old)] = new
        lo, up = new.lower, new.upper
        if lo == up:
            self.point[lo] = new
        else:
            self.ranges[(lo << 32) | up] = new

    def add_range(self, r: _Slot) -> None:
        lowers, pmax, srs = self.lowers, self.pmax, self.srs
        lo, up = r.lower, r.upper
        self.n += 1
        if lo == up:
            self.point[lo] = r
        else:
            self.ranges[(lo << 32) | up] = r
        if not lowers or lo > lowers[-1]:
            # fast path, common when bindings arrive in order (a bulk): append
            if lowers:
                m = pmax[-1]
                if self.disjoint and m >= lo:
                    self.disjoint = False
                if up > m:
                    m = up
            else:
                m = up
            lowers.append(lo)
            srs.append(r)
            pmax.append(m)
            return
        i = bisect_left(lowers, lo)  # before equal lowers: kernel goes left on <=
        prev = pmax[i - 1] if i else -1
        m = up if up > prev else prev
        if srs[i] is None and lowers[i] == lo:
            srs[i] = r  # reuse the tombstone: same place in tree order
            pmax[i] = m
            self.dead -= 1
            j = i + 1
        else:
            lowers.insert(i, lo)
            srs.insert(i, r)
            pmax.insert(i, m)
            j = i + 1
        n = len(pmax)
        if self.disjoint:
            k = j
            while k < n and srs[k] is None:
                k += 1
            if prev >= lo or (k < n and lowers[k] <= up):
                self.disjoint = False
        while j < n and pmax[j] < m:
            pmax[j] = m
            j += 1

    def del_range(self, r: _Slot) -> None:
        srs, pmax = self.srs, self.pmax
        i = self._index(r)
        srs[i] = None
        self.n -= 1
        self.dead += 1
        if r.lower == r.upper:
            del self.point[r.lower]
        else:
            del self.ranges[(r.lower << 32) | r.upper]
        prev = pmax[i - 1] if i else -1
        n = len(pmax)
        pmax[i] = prev
        i += 1
        while i < n:
            s = srs[i]
            nv = prev if s is None or s.upper <= prev else s.upper
            if nv == pmax[i]:
                break
            pmax[i] = nv
            prev = nv
            i += 1
        if self.dead > _COMPACT_MIN and self.dead > self.n:
            self.compact()

    def compact(self) -> None:
        """Drop the tombstones (O(n), amortised over as many removals)."""
        srs = self.srs
        keep = [s is not None for s in srs]
        self.lowers = list(compress(self.lowers, keep))
        self.pmax = list(compress(self.pmax, keep))
        self.srs = [s for s in srs if s is not None]
        self.dead = 0
        lowers, pmax = self.lowers, self.pmax
        self.disjoint = all(lowers[i] > pmax[i - 1] for i in range(1, len(lowers)))

    def overlapping(self, lower: int, upper: int) -> Iterator[_Slot]:
        """Ranges overlapping [lower, upper] in tree order (service_range_foreach_match)."""
        srs = self.srs
        end = bisect_right(self.lowers, upper)
        for i in range(bisect_left(self.pmax, lower), end):
            r = srs[i]
            if r is not None and r.upper >= lower:
                yield r

    def live(self) -> list[_Slot]:
        return [s for s in self.srs if s is not None]


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


class _Bag:
    """Publications in insertion order with O(1) removal: a removed publication stays in
    ``items`` (its ``id`` is 0, or it moved) until the dead outnumber the live and the
    list is compacted. A list slot is 8 bytes where a dict entry keyed by id was ~40 and
    the id's int object another 32."""

    __slots__ = ("items", "live")

    def __init__(self) -> None:
        self.items: list[Publication] = []
        self.live = 0


class NameTable:
    """The node's copy of the cluster binding table (kernel ``struct name_table``).

    ``own_addr`` is this node's 32-bit address; publications with ``node == own_addr``
    or ``node == 0`` are local (kernel ``in_own_node``). A Publication object belongs to
    at most one table at a time (the table writes its ``id``).
    """

    def __init__(self, own_addr: int) -> None:
        self.own_addr = own_addr
        self._services: dict[int, _Service] = {}
        self._svc_seq = 0
        self._publ_seq = 0
        self._by_node: dict[int, _Bag] = {}
        # local publications by socket port: withdraw a closing socket's bindings without
        # the socket's own list, and in chunks (withdraw_port)
        self._by_port: dict[int, _Bag] = {}
        self._count = 0
        self.local_gen = 0
        """Grows on every insert or removal of a local publication (node 0 or own) and
        on an address change: lets the distributor cache its bulk list."""
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
        else:
            p.type = svc.type  # share the int object (a decoded item has its own)
        lower = p.lower
        if lower == p.upper:
            # point range: found through svc.point; share the int object (a decoded
            # item has two equal ints: 32 bytes a binding)
            p.upper = lower
            s = svc.point.get(lower)
        else:
            s = svc.ranges.get((lower << 32) | p.upper)
        node = p.node
        own = self.own_addr
        local = node == 0 or node == own
        if s is None:
            svc.add_range(p)
            first = True
        else:
            key = p.key
            if s.__class__ is Publication:
                if s.key == key and (not s.node or s.node == node):
                    return False
                sn = s.node
                svc.replace(s, _Range(p, s, local, sn == 0 or sn == own))
            else:
                r: _Range = s  # type: ignore[assignment]
                publs = r.publs
                for q in publs:
                    if q.key == key and (not q.node or q.node == node):
                        return False
                publs.insert(r.h, p)
                if local:
                    if r.local is None:
                        r.local = [p]
                    else:
                        r.local.insert(r.lh, p)
            first = False
        self._track(p, local)
        for cb in self._observers:
            cb(p, True, first)
        return True

    def insert_items(
        self, node: int, scope: int, items: Iterable[tuple[int, int, int, int, int]]
    ) -> tuple[int, int, int]:
        """Insert ``(type, lower, upper, port, key)`` items of one node (a received bulk):
        the same tables, ids and observer calls as ``insert(Publication(...))`` per item,
        without a call per item for the common case (a new point range after every range
        of its service, as a bulk delivers them). Returns ``(inserted, duplicates,
        malformed)``; malformed = ``lower > upper``, skipped."""
        services = self._services
        observers = self._observers
        insert = self.insert
        new = Publication.__new__
        P = Publication
        by_node = self._by_node
        fast = not (node == 0 or node == self.own_addr)  # local ones need the port bag
        done = dup = bad = 0
        for t, lo, up, port, key in items:
            if lo > up:
                bad += 1
                continue
            p = new(P)
            p.scope = scope
            p.node = node
            p.port = port
            p.key = key
            svc = services.get(t)
            if svc is not None and lo == up and fast:
                lows = svc.lowers
                # after every range's lower: no range {lo, lo} exists (its lower would
                # be in lows), and the new one is last in tree order
                if lows and lo > lows[-1]:
                    p.type = svc.type
                    p.lower = p.upper = lo
                    svc.point[lo] = p
                    svc.n += 1
                    pmax = svc.pmax
                    m = pmax[-1]
                    if m >= lo:
                        svc.disjoint = False
                    else:
                        m = lo
                    lows.append(lo)
                    svc.srs.append(p)
                    pmax.append(m)
                    self._publ_seq += 1
                    p.id = self._publ_seq
                    bag = by_node.get(node)
                    if bag is None:
                        bag = by_node[node] = _Bag()
                    bag.items.append(p)
                    bag.live += 1
                    self._count += 1
                    done += 1
                    for cb in observers:
                        cb(p, True, True)
                    continue
            p.type = t
            p.lower = lo
            p.upper = up
            p.id = -1
            if insert(p):
                done += 1
            else:
                dup += 1
        return done, dup, bad

    def _track(self, p: Publication, local: bool) -> None:
        """Give p its age and put it in its node's (and, if local, its port's) bag."""
        if p.id == 0:  # was in a table before: its stale bag entries must go first
            self._compact_bag(self._by_node, p.node)
            self._compact_bag(self._by_port, p.port)
        self._publ_seq += 1
        p.id = self._publ_seq
        bag = self._by_node.get(p.node)
        if bag is None:
            bag = self._by_node[p.node] = _Bag()
        bag.items.append(p)
        bag.live += 1
        if local:
            self.local_gen += 1
            bag = self._by_port.get(p.port)
            if bag is None:
                bag = self._by_port[p.port] = _Bag()
            bag.items.append(p)
            bag.live += 1
        self._count += 1

    @staticmethod
    def _compact_bag(bags: dict[int, _Bag], k: int) -> None:
        bag = bags.get(k)
        if bag is not None:
            bag.items = [q for q in bag.items if q.id > 0]

    def _untrack(self, p: Publication) -> None:
        p.id = 0  # dead in its bags from now (compaction below drops it)
        self._drop(self._by_node, p.node)
        if p.node == 0 or p.node == self.own_addr:
            self.local_gen += 1
            self._drop(self._by_port, p.port)
        self._count -= 1

    @staticmethod
    def _drop(bags: dict[int, _Bag], k: int) -> None:
        bag = bags.get(k)
        if bag is None:  # pragma: no cover - own_addr changed under a local publication
            return
        bag.live -= 1
        if not bag.live:
            del bags[k]
            return
        items = bag.items
        if len(items) - bag.live > _COMPACT_MIN and len(items) > 2 * bag.live:
            bag.items = [q for q in items if q.id > 0]

    def _unlink(self, svc: _Service, s: _Slot, p: Publication) -> None:
        """Remove p (held by slot s of svc) and tell the observers."""
        if s is p:
            svc.del_range(p)
            last = True
            if not svc.n:
                del self._services[svc.type]
        else:
            r: _Range = s  # type: ignore[assignment]
            r.h = _circ_remove(r.publs, r.h, p)
            if r.local is not None and (p.node == 0 or p.node == self.own_addr):
                try:
                    r.lh = _circ_remove(r.local, r.lh, p)
                except KeyError:  # pragma: no cover - own_addr changed under us
                    pass
                if not r.local:
                    r.local = None
                    r.lh = 0
            if len(r.publs) == 1:
                svc.replace(r, r.publs[0])
            last = False
        self._untrack(p)
        for cb in self._observers:
            cb(p, False, last)

    def _holder(self, p: Publication) -> tuple[_Service, _Slot] | None:
        """The service and slot holding this very publication object, if it is here."""
        if p.id <= 0:
            return None
        svc = self._services.get(p.type)
        if svc is None:
            return None
        s = svc.get(p.lower, p.upper)
        if s is None:
            return None
        if s is p or (s.__class__ is _Range and any(q is p for q in s.publs)):
            return svc, s
        return None

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
            s = svc.get(lower, upper)
            if s is None:
                return None
            if s.__class__ is Publication:
                if s.key == key and (not node or node == s.node):
                    self._unlink(svc, s, s)
                    return s
                return None
            cands: list[_Slot] = [s]
        else:
            i = bisect_left(svc.lowers, lower)
            j = bisect_right(svc.lowers, lower)
            cands = [s for s in svc.srs[i:j] if s is not None]
        for s in cands:
            for p in _slot_publs(s):
                if p.key == key and (not node or node == p.node):
                    self._unlink(svc, s, p)
                    return p
        return None

    def remove_publication(self, p: Publication) -> bool:
        """Remove exactly this publication object (e.g. on socket close); False if absent."""
        h = self._holder(p)
        if h is None:
            return False
        self._unlink(h[0], h[1], p)
        return True

    def remove_many(self, publs: Iterable[Publication]) -> list[Publication]:
        """Remove each of these publication objects that is here, in order; returns the
        ones removed. Same result and observer calls as remove_publication on each."""
        out = []
        holder, unlink = self._holder, self._unlink
        for p in publs:
            h = holder(p)
            if h is not None:
                unlink(h[0], h[1], p)
                out.append(p)
        return out

    def withdraw_port(self, port: int, limit: int | None = None) -> tuple[list[Publication], bool]:
        """Remove up to ``limit`` (all if None) local publications of socket ``port``,
        oldest first; returns them and whether more remain. A closing socket with many
        bindings can be withdrawn across several loop turns with a bounded limit."""
        bag = self._by_port.get(port)
        if bag is None:
            return [], False
        todo = [q for q in bag.items if q.id > 0]
        if limit is not None and limit < len(todo):
            todo = todo[:limit]
        out = self.remove_many(todo)
        return out, port in self._by_port

    def port_publications(self, port: int) -> list[Publication]:
        """Local publications of socket ``port``, oldest first."""
        bag = self._by_port.get(port)
        return [q for q in bag.items if q.id > 0] if bag else []

    def contains(self, p: Publication) -> bool:
        """True if this very publication object is in the table."""
        return self._holder(p) is not None

    def withdraw_node(self, node: int) -> list[Publication]:
        """Purge every publication of ``node`` (node lost); returns them in the order they
        were inserted. Observers see a remove for each."""
        bag = self._by_node.get(node)
        if bag is None:
            return []
        out = [q for q in bag.items if q.id > 0 and q.node == node]
        services = self._services
        unlink = self._unlink
        for p in out:
            svc = services[p.type]
            s = svc.get(p.lower, p.upper)
            assert s is not None
            unlink(svc, s, p)
        return out

    def set_own_addr(self, addr: int) -> None:
        """Adopt the node address once it is known (kernel ``tipc_named_reinit``): local
        publications made with node 0 or the old address now carry ``addr``."""
        old = self.own_addr
        if addr == old:
            return
        self.local_gen += 1
        moved: list[Publication] = []
        for n in {0, old}:
            bag = self._by_node.pop(n, None)
            if bag:
                moved += [q for q in bag.items if q.id > 0 and q.node == n]
        for p in moved:
            p.node = addr
        if moved:
            bag = self._by_node.get(addr)
            if bag is None:
                bag = self._by_node[addr] = _Bag()
            bag.items += moved
            bag.live += len(moved)
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
            # hot path: one dict lookup (or one C bisect), no call; the round-robin pick
            # is inlined twice on purpose (a helper call costs ~10% of a lookup)
            svc = self._services.get(type)
            if svc is None:
                return None
            if svc.disjoint:
                r = svc.point.get(instance)
                if r is not None:
                    if r.__class__ is Publication:
                        return (r.node, r.port)
                    publs = r.publs  # type: ignore[union-attr]
                    h = r.h  # type: ignore[union-attr]
                    p = publs[h]
                    h += 1
                    r.h = 0 if h == len(publs) else h  # type: ignore[union-attr]
                    return (p.node, p.port)
            try:
                r = svc.srs[bisect_left(svc.pmax, instance)]
                if r.lower > instance:  # type: ignore[union-attr]
                    return None
            except (IndexError, AttributeError):  # past the end / negative instance
                return None
            if r.__class__ is Publication:
                return (r.node, r.port)
            publs = r.publs  # type: ignore[union-attr]
            h = r.h  # type: ignore[union-attr]
            p = publs[h]
            h += 1
            r.h = 0 if h == len(publs) else h  # type: ignore[union-attr]
            return (p.node, p.port)
        own = self.own_addr
        if domain != own:
            return (domain, 0)
        svc = self._services.get(type)
        if svc is None:
            return None
        for s in svc.overlapping(instance, instance):
            if s.__class__ is Publication:
                n = s.node
                if n == 0 or n == own:
                    return (n, s.port)
                continue
            r = s
            loc = r.local  # type: ignore[union-attr]
            if loc:
                h = r.lh  # type: ignore[union-attr]
                p = loc[h]
                h += 1
                r.lh = 0 if h == len(loc) else h  # type: ignore[union-attr]
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
        for s in svc.overlapping(lower, upper):
            for p in _slot_publs(s):
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
        return {p.node for s in svc.overlapping(lower, upper) for p in _slot_publs(s)}

    def lookup_mcast_local(
        self, type: int, lower: int, upper: int, scope: int = TIPC_ANY_SCOPE
    ) -> list[int]:
        """Local ports with an overlapping binding of ``scope`` (kernel
        ``lookup_mcast_sockets``), used when a multicast message arrives."""
        svc = self._services.get(type)
        if svc is None:
            return []
        own = self.own_addr
        seen: dict[int, None] = {}
        for s in svc.overlapping(lower, upper):
            if s.__class__ is Publication:
                n = s.node
                if n != 0 and n != own:
                    continue
                loc: list[Publication] = [s]
            else:
                r: _Range = s  # type: ignore[assignment]
                if not r.local:
                    continue
                lh = r.lh
                loc = r.local[lh:] + r.local[:lh]
            for p in loc:
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
        for s in svc.overlapping(lower, upper):
            if s.__class__ is Publication:
                out.append(s)
            elif ports:
                out.extend(s.publs)  # type: ignore[union-attr]
            else:
                out.append(min(s.publs, key=_by_id))  # type: ignore[union-attr]
        out.sort(key=_by_id)
        return out

    def find(self, type: int, lower: int, upper: int) -> list[Publication]:
        """Publications bound to exactly ``{type, lower, upper}``, in kernel list order."""
        svc = self._services.get(type)
        s = svc.get(lower, upper) if svc else None
        return _slot_publs(s) if s is not None else []

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
            for s in svc.live():
                yield from _slot_publs(s)

    def publications_of(self, node: int) -> list[Publication]:
        """All publications of ``node`` in insertion order (for bulk: own node)."""
        bag = self._by_node.get(node)
        return [q for q in bag.items if q.id > 0 and q.node == node] if bag else []

    def node_count(self, node: int) -> int:
        bag = self._by_node.get(node)
        return bag.live if bag else 0

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

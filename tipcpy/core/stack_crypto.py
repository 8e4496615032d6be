"""The node's side of encryption: where TipcCrypto meets the Stack.

Why a module of its own: the crypto kernel (:mod:`tipcpy.core.crypto`) knows keys and
packets, not links or peers; the Stack knows links and bearers, not keys.  The kernel
joins them in bearer.c (tipc_crypto_xmit on every packet to a bearer), node.c
(tipc_crypto_rcv before tipc_rcv, MSG_CRYPTO to tipc_crypto_msg_rcv, the crypto timeout
in the node timer) and link.c (KEY_DISTR sent over the link).  Here that joining is one
object, :class:`StackCrypto`, so the Stack only has three hooks: ``rx`` before decode,
``tx`` where bytes go to a bearer, and the timer it registers.

What is encrypted: once a key is set, every packet this node puts on a bearer -
discovery (LINK_CONFIG, 28-byte header, its node id inside), link protocol, data, name
distribution, MSG_CRYPTO - as the kernel does; nothing is sent in clear.  What is
accepted: v7 packets that authenticate; clear v2 packets too (the kernel accepts them,
so that keys can be set one node at a time) unless ``refuse_clear`` is on.  A MSG_CRYPTO
is taken only if the packet that carried it was encrypted (the kernel's ``decrypted``
check): a clear one could otherwise plant a session key.

Counters: per (peer address, bearer id) and reason (:data:`tipcpy.core.crypto.REASONS`),
which ``tipc link stat show`` shows per link; drops of packets from a node that has no
link (a wrong key: its discovery never opens) are under peer 0 and the bearer.

Randomness (session keys, key generations, distribution delays) comes from
``random_bytes``: the runtime passes ``os.urandom``; the Stack's default is its seeded
rng, so the simulator stays reproducible.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from tipcpy.core.crypto import (
    REASONS,
    AeadKey,
    CryptoError,
    CryptoEvent,
    Dropped,
    TipcCrypto,
    parse_key_distr,
)
from tipcpy.core.node import NodeDown, NodeUp
from tipcpy.wire import DecodeError, Msg, decode
from tipcpy.wire.consts import User


class Stack(Protocol):
    """What this module uses of :class:`tipcpy.core.stack.Stack` (named here, not
    imported: the Stack imports this module)."""

    rng: random.Random
    own_addr: int
    node_id: bytes | None
    peers: dict[int, Any]
    _events: list[object]

    def register_user(self, users: int | Iterable[int],
                      fn: Callable[[int, Msg, float], None]) -> None: ...

    def add_listener(self, fn: Callable[[object, float], None]) -> None: ...

    def add_timer(self, owner: Any) -> None: ...

    def up_nodes(self) -> list[int]: ...

    def send_to_node(self, node_addr: int, msg: Msg, selector: int, now: float) -> bool: ...

    def _emit(self, ev: object, now: float) -> None: ...

__all__ = ["CryptoDrop", "CryptoEvent", "NoKey", "StackCrypto"]

_W_DESTNODE = 28  # byte offset of w7 (destnode) in a v2 header
_DEFUSED = 7  # MSG_CRYPTO type given to a refused KEY_DISTR (the kernel ignores unknown types)


@dataclass(frozen=True)
class CryptoDrop:
    """A received packet the crypto dropped (wrong key, forged, replayed...).  The
    runtime logs these (rate-limited) so a key mismatch is visible."""

    bearer_id: int
    peer: int
    reason: str
    detail: str


class NoKey(Exception):
    """``rekeying`` asked of a node that has no key."""


class StackCrypto:
    """One node's encryption: the TipcCrypto plus its seams into the Stack."""

    def __init__(self, stack: Stack) -> None:
        self.stack = stack
        self.crypto: TipcCrypto | None = None
        self.random_bytes: Callable[[int], bytes] = stack.rng.randbytes
        self.refuse_clear = False
        self.stats: dict[tuple[int, int], dict[str, int]] = {}
        # the packet being handled arrived unencrypted (for the MSG_CRYPTO check)
        self.rx_clear = True
        stack.register_user(User.MSG_CRYPTO, self._crypto_msg_rcv)
        stack.add_listener(self._event)

    # ------------------------------------------------------------------ state
    @property
    def working(self) -> bool:
        """True once a TX key is set: every packet sent is then encrypted."""
        cr = self.crypto
        return cr is not None and cr.tx.working

    def _get(self, now: float) -> TipcCrypto:
        st = self.stack
        cr = self.crypto
        if cr is None:
            cr = TipcCrypto(st.own_addr, st.node_id or b"", self.random_bytes, now,
                            refuse_clear=self.refuse_clear)
            self.crypto = cr
            st.add_timer(self)
        if st.node_id is not None:
            cr.own_id = st.node_id
        cr.own_addr = st.own_addr
        for a, p in st.peers.items():
            rx = cr.rx.get(a)
            if rx is None or not rx.node_id:
                cr.learn_peer(a, p.node_id, now)
        return cr

    # ------------------------------------------------------------------ control
    def set_key(self, key: AeadKey, now: float, *, master: bool = False,
                node_id: bytes | None = None) -> int:
        """``tipc node set key``: attach ``key`` (TipcCrypto.set_key) and send what
        that sends (a new cluster or per-node TX key goes to every peer).  Raises
        CryptoError ("busy": a key change is still under way)."""
        slot = self._get(now).set_key(key, now, master=master, node_id=node_id)
        self.pump(now)
        return slot

    def set_rekeying(self, now: float, minutes: int | None) -> None:
        """``tipc node set key rekeying INTERVAL|now`` (None = now, 0 = off)."""
        if not self.working:
            raise NoKey("no key is set: nothing to rekey")
        assert self.crypto is not None
        self.crypto.set_rekeying(now, minutes)
        self.pump(now)

    def flush(self) -> None:
        """``tipc node flush key``: every key goes; traffic is sent in clear again."""
        if self.crypto is not None:
            self.crypto.flush()

    def set_refuse_clear(self, on: bool) -> None:
        self.refuse_clear = on
        if self.crypto is not None:
            self.crypto.refuse_clear = on

    def key_info(self) -> dict[str, object]:
        """What is set (never the key material): slots and hints, per side."""
        cr = self.crypto
        if cr is None:
            return {"working": False, "refuse_clear": self.refuse_clear}

        def side(c: object) -> dict[str, object]:
            s = c  # a crypto._Side
            keys = {}
            for k, a in enumerate(s.aead):  # type: ignore[attr-defined]
                if a is not None:
                    keys[str(k)] = {"hint": a.key.hint, "bits": a.key.bits,
                                    "mode": "cluster" if a.mode == 1 else "per-node",
                                    "gen": a.gen}
            return {"active": s.active, "pending": s.pending,  # type: ignore[attr-defined]
                    "passive": s.passive, "keys": keys}  # type: ignore[attr-defined]

        return {"working": cr.tx.working, "refuse_clear": self.refuse_clear,
                "master": cr.tx.key_master, "tx": side(cr.tx),
                "rx": {f"{a:08x}": side(r) for a, r in cr.rx.items()},
                "tx_counters": dict(cr.tx_counters)}

    # ------------------------------------------------------------------ seams
    def tx(self, data: bytes, peer: int | None, now: float) -> list[bytes]:
        """tipc_crypto_xmit for one packet to a bearer (``peer``: the link's peer, None
        for discovery).  Only called while :attr:`working`."""
        assert self.crypto is not None
        return self.crypto.encrypt(data, peer, now)

    def rx(self, bearer_id: int, data: bytes, now: float) -> bytes | None:
        """tipc_crypto_rcv: the clear v2 packet to decode, or None (dropped, counted
        per (peer, bearer) and reason, and reported as a :class:`CryptoDrop` event)."""
        cr = self.crypto if self.crypto is not None else self._get(now)
        res = cr.decrypt(data, None, now)
        if isinstance(res, Dropped):
            self.count(res.peer, bearer_id, res.reason)
            self.stack._events.append(CryptoDrop(bearer_id, res.peer, res.reason, res.detail))
            return None
        self.rx_clear = res.clear
        if res.clear:
            m = res.msg
            if len(m) >= 4 and (m[0] >> 1) & 0xF == User.MSG_CRYPTO:
                # nobody sends a key in clear: one that comes so is planted.  Dropped
                # here, before the link (it could otherwise wait in the link's deferred
                # queue and come out while an encrypted packet is being handled)
                self.count(res.peer, bearer_id, "clear_dropped")
                return None
            return m
        self.count(res.peer, bearer_id, "ok")
        msg = res.msg
        if len(msg) >= 8 and (msg[0] >> 1) & 0xF == User.MSG_CRYPTO and msg[4] >> 5 == 0:
            # A KEY_DISTR the key parser refuses (the CVE-2021-43267 shape) is still a
            # packet in the link's sequence: the kernel's link takes it and its crypto
            # drops it.  Our v2 codec would refuse it whole (the link would NACK it
            # forever), so it goes on as a MSG_CRYPTO of a type nobody handles.
            try:
                parse_key_distr(msg)
            except CryptoError as exc:
                self.count(res.peer, bearer_id, exc.reason)
                self.stack._events.append(CryptoDrop(bearer_id, res.peer, exc.reason,
                                                     str(exc)))
                msg = msg[:4] + bytes([msg[4] | _DEFUSED << 5]) + msg[5:]
        return msg

    def count(self, peer: int, bearer_id: int, reason: str) -> None:
        c = self.stats.get((peer, bearer_id))
        if c is None:
            c = self.stats[(peer, bearer_id)] = dict.fromkeys(REASONS, 0)
        c[reason] += 1

    def link_counters(self, peer: int, bearer_id: int) -> dict[str, int]:
        return dict(self.stats.get((peer, bearer_id)) or dict.fromkeys(REASONS, 0))

    # ------------------------------------------------------------------ timer (Timed)
    def next_deadline(self) -> float | None:
        cr = self.crypto
        return cr.next_deadline() if cr is not None else None

    def tick(self, now: float) -> None:
        cr = self.crypto
        if cr is not None:
            cr.tick(now)
            self.pump(now)

    # ------------------------------------------------------------------ plumbing
    def _crypto_msg_rcv(self, src: int, msg: Msg, now: float) -> None:
        """A MSG_CRYPTO the link delivered: taken only if it arrived encrypted."""
        cr = self.crypto
        bid = self._bearer_of(src)
        if msg.w[1] >> 29 == _DEFUSED:
            return  # a refused KEY_DISTR, counted when it was decrypted
        if cr is None or self.rx_clear:
            self.count(src, bid, "clear_dropped")
            return
        res = cr.receive_crypto_msg(msg.encode(), now)
        if isinstance(res, Dropped):
            self.count(src, bid, res.reason)
            self.stack._events.append(CryptoDrop(bid, src, res.reason, res.detail))
        self.pump(now)

    def _bearer_of(self, addr: int) -> int:
        p = self.stack.peers.get(addr)
        if p is None:
            return -1
        act = p.active_links()
        return act[0] if act else next(iter(p.links), -1)

    def pump(self, now: float) -> None:
        """Send what the crypto wants sent (KEY_DISTR over the link; dnode 0: to every
        peer that is up, over its unicast link, since this node never sends on the
        broadcast link) and pass its key events on."""
        cr = self.crypto
        if cr is None:
            return
        st = self.stack
        for o in cr.take_outgoing():
            targets = [o.dnode] if o.dnode else st.up_nodes()
            for addr in targets:
                data = o.msg if o.dnode else (o.msg[:_W_DESTNODE] + addr.to_bytes(4, "big")
                                              + o.msg[_W_DESTNODE + 4:])
                try:
                    m = decode(data)
                except DecodeError:  # pragma: no cover - we built it
                    continue
                st.send_to_node(addr, m, 0, now)
        for ev in cr.take_events():
            st._emit(ev, now)

    def _event(self, ev: object, now: float) -> None:
        cr = self.crypto
        if cr is None:
            return
        cr.own_addr = self.stack.own_addr  # (AddressCommitted)
        if isinstance(ev, NodeUp):
            p = self.stack.peers.get(ev.addr)
            if p is not None:
                cr.learn_peer(ev.addr, p.node_id, now)
        elif isinstance(ev, NodeDown):
            cr.peer_down(ev.addr)

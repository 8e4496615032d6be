"""TIPC encryption as Linux does it (net/tipc/crypto.c): AES-GCM under a "v7" header.

Where it sits: between the link and the bearer, like the kernel's tipc_crypto_xmit /
tipc_crypto_rcv.  Every packet a link (or discovery, or the broadcast link) hands to a
bearer goes through :meth:`TipcCrypto.encrypt`; every datagram a bearer receives goes
through :meth:`TipcCrypto.decrypt` before the v2 codec sees it.  MSG_CRYPTO messages
(user 14, session keys) travel inside the encrypted link like data; the node passes
the ones it received *decrypted* to :meth:`TipcCrypto.receive_crypto_msg`, and sends
what :meth:`TipcCrypto.take_outgoing` returns over the link to ``dnode`` (0 = every
peer, the kernel's broadcast link).

Sans-IO and deterministic: time comes in as ``now`` (seconds, any monotonic origin),
randomness only from the ``random`` callable given at construction (the runtime passes
``os.urandom``; tests pass a seeded source).  Nothing here raises on bad input: a packet
either decrypts (:class:`Decrypted`) or is dropped with a reason (:class:`Dropped`) and
counted per peer (:attr:`TipcCrypto.counters`).

Wire facts (tipc-reference.md section 2.12, checked against Linux 6.1 captures):

* header w0 = ver 7 (3 bits) | user (4) | D | TX key (2) | RX key (2) | K | M | N | rsvd;
  w1-w2 = 64-bit seqno; w3 = sender's address, or its 16-byte node id for LINK_CONFIG
  (28-byte header).  ``user`` is 13 for LINK_CONFIG, 7 for LINK_PROTOCOL STATE, else 0.
* body = the whole v2 packet padded to a multiple of 4, then a 16-byte tag; the AAD is
  the encryption header.
* nonce = 4 salt bytes XOR-ed with an address in x86 (little-endian) host order, then
  the 8 seqno bytes as on the wire.  The address is the sender's (header w3 / first 4
  bytes of the node id) for a cluster key; for a per-node (session) key it is the
  destination's address when the packet is destined (D = 1), else nothing.

Key slots as the kernel: 0 = master key (TX only), 1..3 for cluster and session keys,
each side (one TX, one RX per peer) with an active, a pending and (RX only) a passive
slot, moved by the kernel's timers (TX lasting 10 s, RX active 3 s, RX passive 15 s,
master-key grace 5 s) in :meth:`tick`.

Beyond the kernel: a per-peer replay window (per key, and per counter: a sender numbers
destined and undestined packets of a session key separately).  Discovery (LINK_CONFIG)
is exempt: it is idempotent, and a rebooted peer restarts its seqnos at 1 there first.
The node calls :meth:`peer_down` when it loses a peer so a rebooted one is accepted.
Limit: the kernel restarts a per-node key's per-peer counter when the receiver's active
key changes, so after such a change one restart below the window is accepted.

Contract for the node (integration): ``encrypt(plain, peer, now) -> list[bytes]``,
``decrypt(pkt, peer_hint, now) -> Decrypted | Dropped``, ``receive_crypto_msg``,
``tick(now)`` at ``next_deadline()``, ``take_outgoing()`` (KEY_DISTR to send over the
link), ``take_events()``, ``counters`` (per peer, by :data:`REASONS`) and
``tx_counters``; ``set_key`` / ``set_rekeying`` / ``flush`` for ``tipc node set key``.
Not done: the kernel's key revocation on a 64-bit seqno wrap (unreachable in practice).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM


def _aesgcm(key: bytes) -> AESGCM:
    """AES-GCM for ``key``; cryptography is imported on first use, not at every start
    of every tipcd and tipc (10 ms of a 120 ms start; most nodes never set a key)."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    return AESGCM(key)


def _invalid_tag() -> type[Exception]:
    from cryptography.exceptions import InvalidTag

    return InvalidTag

__all__ = [
    "AeadKey", "CLUSTER_KEY", "CryptoError", "CryptoEvent", "Decrypted", "Dropped",
    "EHDR_CFG_SIZE", "EHDR_SIZE", "EHdr", "KeyDistr", "Outgoing", "PER_NODE_KEY", "REASONS",
    "TipcCrypto", "build_key_distr", "decrypt_with", "encrypt_with", "parse_key",
    "parse_key_distr",
]

EVERSION = 7
KEY_SIZES = (16, 24, 32)
SALT_SIZE = 4
TAG_SIZE = 16
EHDR_SIZE = 16
EHDR_CFG_SIZE = 28
EMSG_OVERHEAD = EHDR_SIZE + TAG_SIZE
ALG_NAME = "gcm(aes)"
ALG_NAME_LEN = 32  # TIPC_AEAD_ALG_NAME
AEAD_KEY_HDR = ALG_NAME_LEN + 4  # sizeof(struct tipc_aead_key)
KEYLEN_MIN = 16 + SALT_SIZE
KEYLEN_MAX = 32 + SALT_SIZE

CLUSTER_KEY = 1
PER_NODE_KEY = 2
KEY_MASTER = 0
KEY_MAX = 3

TX_GRACE = 5.0
TX_LASTING = 10.0
RX_ACTIVE_LIM = 3.0
RX_PASSIVE_LIM = 15.0
REKEYING_INTV_DEF = 60 * 24  # minutes
KEY_DISTR_RETRY = 5.0
TICK_INTERVAL = 0.5  # how often tick() wants to run while keys are set
USERS_DEAD = -10  # an RX key that failed this many times more than it worked is removed

USER_LINK_PROTOCOL = 7
USER_LINK_CONFIG = 13
USER_MSG_CRYPTO = 14
STATE_MSG = 0
RESET_MSG = 1
KEY_DISTR_MSG = 0
INT_H_SIZE = 40
SHORT_H_SIZE = 24

REPLAY_WINDOW = 4096

#: Drop (and success) reasons counted per peer.
REASONS = ("ok", "bad_tag", "replay", "no_key", "unknown_key_id", "too_old", "clear_dropped",
           "malformed")

_U32 = struct.Struct(">I")
_W0_SEQ = struct.Struct(">IQ")
_W01 = struct.Struct(">II")
_HDR16 = struct.Struct(">IQI")


class CryptoError(ValueError):
    """A key or key message that cannot be used; ``reason`` is a counter name."""

    def __init__(self, reason: str, text: str) -> None:
        super().__init__(text)
        self.reason = reason


# ---------------------------------------------------------------------------- keys


@dataclass(frozen=True)
class AeadKey:
    """``struct tipc_aead_key``: the AES key followed by the 4-byte salt."""

    material: bytes
    alg: str = ALG_NAME

    def __post_init__(self) -> None:
        if self.alg != ALG_NAME:
            raise CryptoError("malformed", f"unsupported algorithm {self.alg!r} (only gcm(aes))")
        if len(self.material) - SALT_SIZE not in KEY_SIZES:
            raise CryptoError("malformed", f"incorrect key length {len(self.material)} "
                                           "(20, 28 or 36 octets: key + 4-byte salt)")

    @property
    def aes_key(self) -> bytes:
        return self.material[:-SALT_SIZE]

    @property
    def salt(self) -> bytes:
        return self.material[-SALT_SIZE:]

    @property
    def bits(self) -> int:
        return 8 * len(self.aes_key)

    @property
    def hint(self) -> str:
        """The kernel's key hint: hex of the last 5 bytes of the AES key."""
        return self.aes_key[-5:].hex()


def parse_key(text: str) -> AeadKey:
    """A key as ``tipc node set key KEY`` reads it: ``0x`` + hex, or the ASCII bytes.

    iproute2 takes ``0x...`` as hex (key then salt) and anything else as the raw
    characters; either must come to 20, 28 or 36 bytes.
    """
    if text[:2] in ("0x", "0X"):
        h = text[2:]
        if len(h) % 2:
            raise CryptoError("malformed", "odd number of hex digits in key")
        try:
            raw = bytes.fromhex(h)
        except ValueError:
            raise CryptoError("malformed", "key is not valid hex after 0x") from None
    else:
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise CryptoError("malformed", "an ASCII key must be plain ASCII") from None
    return AeadKey(raw)


# ---------------------------------------------------------------------------- header


@dataclass
class EHdr:
    """The v7 encryption header (``struct tipc_ehdr``)."""

    user: int = 0
    destined: bool = False
    tx_key: int = 0
    rx_key_active: int = 0
    keepalive: bool = False
    master_key: bool = False
    rx_nokey: bool = False
    seqno: int = 0
    addr: int = 0  # sender's address (non-LINK_CONFIG)
    node_id: bytes = b""  # sender's 16-byte node id (LINK_CONFIG)

    @property
    def size(self) -> int:
        return EHDR_CFG_SIZE if self.user == USER_LINK_CONFIG else EHDR_SIZE

    def w0(self) -> int:
        return (EVERSION << 29 | (self.user & 0xF) << 25 | int(self.destined) << 24
                | (self.tx_key & 3) << 22 | (self.rx_key_active & 3) << 20
                | int(self.keepalive) << 19 | int(self.master_key) << 18
                | int(self.rx_nokey) << 17)

    def pack(self) -> bytes:
        head = _W0_SEQ.pack(self.w0(), self.seqno)
        if self.user == USER_LINK_CONFIG:
            return head + self.node_id[:16].ljust(16, b"\0")
        return head + _U32.pack(self.addr)

    def nonce_word(self) -> int:
        """Header bytes 12..15 as the kernel's be32_to_cpu(ehdr->addr)."""
        if self.user == USER_LINK_CONFIG:
            return int.from_bytes(self.node_id[:4].ljust(4, b"\0"), "big")
        return self.addr

    @classmethod
    def unpack(cls, pkt: bytes | bytearray | memoryview) -> EHdr:
        """Parse and validate like tipc_ehdr_validate(); raises CryptoError('malformed')."""
        n = len(pkt)
        if n < EHDR_SIZE:
            raise CryptoError("malformed", f"{n} bytes: shorter than the 16-byte v7 header")
        w0, seqno = _W0_SEQ.unpack_from(pkt, 0)
        if w0 >> 29 != EVERSION:
            raise CryptoError("malformed", f"version {w0 >> 29}, not 7")
        user = (w0 >> 25) & 0xF
        h = cls(user, bool(w0 >> 24 & 1), w0 >> 22 & 3, w0 >> 20 & 3, bool(w0 >> 19 & 1),
                bool(w0 >> 18 & 1), bool(w0 >> 17 & 1), seqno)
        ehsz = h.size
        if n <= ehsz + TAG_SIZE:
            raise CryptoError("malformed", f"{n} bytes: no room for a {ehsz}-byte header, "
                                           "data and a 16-byte tag")
        if user == USER_LINK_CONFIG:
            h.node_id = bytes(pkt[12:28])
        else:
            h.addr = _U32.unpack_from(pkt, 12)[0]
        return h


def _nonce(salt_le: int, xor: int, seq8: bytes | bytearray | memoryview) -> bytes:
    return ((salt_le ^ xor) & 0xFFFFFFFF).to_bytes(4, "little") + bytes(seq8)


def encrypt_with(key: AeadKey, mode: int, ehdr: EHdr, plain: bytes, dest_addr: int = 0) -> bytes:
    """One v7 packet: header, GCM of ``plain`` padded to 4 bytes, tag.

    ``dest_addr`` only matters for a per-node key on a destined packet.
    """
    return _encrypt(_aesgcm(key.aes_key), int.from_bytes(key.salt, "little"), mode, ehdr,
                    plain, dest_addr)


def _encrypt(gcm: AESGCM, salt_le: int, mode: int, ehdr: EHdr, plain: bytes,
             dest_addr: int) -> bytes:
    hdr = ehdr.pack()
    if mode == CLUSTER_KEY:
        xor = ehdr.nonce_word()
    else:
        xor = dest_addr if ehdr.destined else 0
    pad = -len(plain) & 3
    body = plain + bytes(pad) if pad else plain
    return hdr + gcm.encrypt(_nonce(salt_le, xor, hdr[4:12]), body, hdr)


def decrypt_with(key: AeadKey, mode: int, pkt: bytes, own_addr: int = 0) -> bytes:
    """The padded v2 packet inside ``pkt``; raises CryptoError ('malformed' or 'bad_tag').

    ``own_addr`` (the receiver) only matters for a per-node key on a destined packet.
    """
    ehdr = EHdr.unpack(pkt)
    return _decrypt(_aesgcm(key.aes_key), int.from_bytes(key.salt, "little"), mode, ehdr,
                    pkt, own_addr)


def _decrypt(gcm: AESGCM, salt_le: int, mode: int, ehdr: EHdr, pkt: bytes | memoryview,
             own_addr: int) -> bytes:
    ehsz = ehdr.size
    if mode == CLUSTER_KEY:
        xor = ehdr.nonce_word()
    else:
        xor = own_addr if ehdr.destined else 0
    mv = memoryview(pkt)
    try:  # (AESGCM takes buffers: no copy of the packet)
        return gcm.decrypt(_nonce(salt_le, xor, mv[4:12]), mv[ehsz:], mv[:ehsz])
    except _invalid_tag():
        raise CryptoError("bad_tag", "authentication tag does not match") from None


# ---------------------------------------------------------------------------- MSG_CRYPTO


@dataclass(frozen=True)
class KeyDistr:
    """A parsed KEY_DISTR_MSG: who sent which session key."""

    prevnode: int
    destnode: int
    gen: int
    mode: int
    key: AeadKey


def build_key_distr(own_addr: int, dnode: int, key: AeadKey, gen: int, mode: int) -> bytes:
    """The v2 MSG_CRYPTO/KEY_DISTR_MSG the kernel's tipc_crypto_key_xmit() builds.

    40-byte header (the link fills in its sequence fields), then ``struct
    tipc_aead_key``: algorithm name in 32 NUL-padded bytes, be32 key length, key+salt.
    """
    name = key.alg.encode()
    data = name.ljust(ALG_NAME_LEN, b"\0") + _U32.pack(len(key.material)) + key.material
    size = INT_H_SIZE + len(data)
    w = [0] * 10
    w[0] = 2 << 29 | USER_MSG_CRYPTO << 25 | (INT_H_SIZE // 4) << 21 | size
    w[1] = KEY_DISTR_MSG << 29
    w[3] = own_addr
    w[4] = (gen & 0xFFFF) << 16 | (mode & 0xF)
    w[6] = own_addr
    w[7] = dnode
    return struct.pack(">10I", *w) + data


def parse_key_distr(msg: bytes | bytearray | memoryview) -> KeyDistr:
    """Check a received KEY_DISTR_MSG like tipc_crypto_key_rcv() (with the CVE-2021-43267
    fix: the key length must fit the message and at most 36 bytes) and more: the length
    must be a usable AES-GCM key + salt and the algorithm gcm(aes).  Raises CryptoError."""
    n = len(msg)
    if n < SHORT_H_SIZE:
        raise CryptoError("malformed", "MSG_CRYPTO shorter than a header")
    w0 = _U32.unpack_from(msg, 0)[0]
    user = (w0 >> 25) & 0xF
    hsize = (w0 >> 21 & 0xF) * 4
    size = w0 & 0x1FFFF
    if w0 >> 29 != 2 or user != USER_MSG_CRYPTO:
        raise CryptoError("malformed", "not a v2 MSG_CRYPTO message")
    if hsize < INT_H_SIZE or size < hsize or size > n:
        raise CryptoError("malformed", f"bad header size {hsize} / message size {size}")
    w1, _w2, prev, w4, _w5, _w6, dest = struct.unpack_from(">7I", msg, 4)
    if w1 >> 29 != KEY_DISTR_MSG:
        raise CryptoError("malformed", f"MSG_CRYPTO type {w1 >> 29} is not KEY_DISTR")
    data = bytes(msg[hsize:size])
    if len(data) < AEAD_KEY_HDR + KEYLEN_MIN:
        raise CryptoError("malformed", f"KEY_DISTR data of {len(data)} bytes is too small")
    keylen = _U32.unpack_from(data, ALG_NAME_LEN)[0]
    if keylen > KEYLEN_MAX or len(data) != keylen + AEAD_KEY_HDR:
        raise CryptoError("malformed", f"KEY_DISTR key length {keylen} does not fit "
                                       f"{len(data)} bytes of data")
    raw_name = data[:ALG_NAME_LEN]
    nul = raw_name.find(0)
    alg = (raw_name if nul < 0 else raw_name[:nul]).decode("ascii", "replace")
    key = AeadKey(data[AEAD_KEY_HDR:], alg)  # raises CryptoError for a bad length/alg
    return KeyDistr(prev, dest, w4 >> 16, w4 & 0xF, key)


# ---------------------------------------------------------------------------- results


@dataclass(frozen=True)
class Decrypted:
    """A received packet that may go on to the v2 codec (``clear``: it was not encrypted)."""

    msg: bytes
    peer: int
    tx_key: int = 0
    clear: bool = False


@dataclass(frozen=True)
class Dropped:
    reason: str
    peer: int = 0
    detail: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A MSG_CRYPTO to send over the link to ``dnode`` (0: to every peer)."""

    dnode: int
    msg: bytes


@dataclass(frozen=True)
class CryptoEvent:
    """Key life: ``kind`` is attached / activated / deactivated / removed / freed /
    distributed / received / revoked / rekey; ``side`` "TX" or the peer address."""

    kind: str
    side: str
    key: int
    detail: str = ""


# ---------------------------------------------------------------------------- key objects


class _Aead:
    """One key in a slot (struct tipc_aead)."""

    __slots__ = ("key", "mode", "gen", "users", "seqno", "gcm", "salt_le", "windows")

    def __init__(self, key: AeadKey, mode: int, gcm: AESGCM | None = None) -> None:
        self.key = key
        self.mode = mode
        self.gen = 0
        self.users = 0
        self.seqno = 0
        self.gcm = gcm if gcm is not None else _aesgcm(key.aes_key)
        self.salt_le = int.from_bytes(key.salt, "little")
        # replay windows, RX only: (sender, destined) -> [highest seqno, bitmap]
        self.windows: dict[tuple[int, bool], list[int]] = {}  # [top, bitmap, epoch]

    def clone(self) -> _Aead:
        return _Aead(self.key, self.mode, self.gcm)


class _Side:
    """struct tipc_crypto: the TX side (``addr`` None) or the RX side of one peer."""

    def __init__(self, addr: int | None, key_gen: int, now: float) -> None:
        self.addr = addr
        self.node_id = b""
        self.aead: list[_Aead | None] = [None] * (KEY_MAX + 1)
        self.pending = 0
        self.active = 0
        self.passive = 0
        self.key_gen = key_gen
        self.timer1 = now
        self.timer2 = now
        self.working = False
        self.key_master = False
        self.legacy_user = False
        self.nokey = False
        # RX only
        self.peer_rx_active = 0
        self.sndnxt = 0
        self.skey: AeadKey | None = None
        self.skey_mode = 0
        self.key_distr = 0  # 0, SCHED 1, COMPL 2
        self.work_at: float | None = None
        self.freed: set[int] = set()
        self.epoch = 0  # bumped when the active RX key changes (replay windows)
        # TX only
        self.rekeying_intv = REKEYING_INTV_DEF
        self.rekey_at: float | None = None

    @property
    def is_tx(self) -> bool:
        return self.addr is None

    @property
    def has_keys(self) -> bool:
        return bool(self.pending or self.active or self.passive)

    def users(self, k: int) -> int:
        a = self.aead[k] if k else None
        return a.users if a is not None else 0

    def name(self) -> str:
        return "TX" if self.addr is None else f"{self.addr:08x}"


def _key_next(k: int) -> int:
    return k % KEY_MAX + 1


# ---------------------------------------------------------------------------- the node's crypto


class TipcCrypto:
    """The keys and state of one node: the TX crypto and an RX crypto per peer."""

    def __init__(self, own_addr: int, own_id: bytes, random: Callable[[int], bytes],
                 now: float = 0.0, *, refuse_clear: bool = False) -> None:
        self.own_addr = own_addr
        self.own_id = own_id[:16].ljust(16, b"\0")
        self._random = random
        self.refuse_clear = refuse_clear
        self.tx = _Side(None, int.from_bytes(random(2), "big"), now)
        self.rx: dict[int, _Side] = {}
        self._rx_by_id: dict[bytes, _Side] = {}
        self._unknown_rx: list[_Side] = []  # per-node keys set by id before the peer is seen
        self.counters: dict[int, dict[str, int]] = {}
        self.tx_counters: dict[str, int] = {"ok": 0, "no_key": 0}
        self._out: list[Outgoing] = []
        self._peer_ctx = 0  # the sender a drop is counted against
        self._last_tick = now
        self._events: list[CryptoEvent] = []

    # ------------------------------------------------------------------ bookkeeping

    @property
    def working(self) -> bool:
        """True once a key is set: from then on every packet sent is encrypted."""
        return self.tx.working

    def _count(self, peer: int, reason: str) -> None:
        c = self.counters.get(peer)
        if c is None:
            c = self.counters[peer] = dict.fromkeys(REASONS, 0)
        c[reason] += 1

    def _event(self, kind: str, side: _Side, key: int, detail: str = "") -> None:
        self._events.append(CryptoEvent(kind, side.name(), key, detail))

    def take_outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def take_events(self) -> list[CryptoEvent]:
        ev, self._events = self._events, []
        return ev

    def peer(self, addr: int, now: float = 0.0) -> _Side:
        """The RX crypto of peer ``addr``, created on first use (tipc_crypto_start)."""
        rx = self.rx.get(addr)
        if rx is None:
            rx = self.rx[addr] = _Side(addr, 0, now)
        return rx

    def learn_peer(self, addr: int, node_id: bytes, now: float = 0.0) -> None:
        """Tie a peer's node id to its address (discovery knows both)."""
        nid = node_id[:16].ljust(16, b"\0")
        rx = self.rx.get(addr)
        if rx is None:
            rx = self._rx_by_id.get(nid)
            if rx is not None and rx.addr == 0:
                rx.addr = addr
                self.rx[addr] = rx
            else:
                rx = self.peer(addr, now)
        rx.node_id = nid
        self._rx_by_id[nid] = rx

    def peer_down(self, addr: int) -> None:
        """The node lost ``addr``: forget its replay windows (a rebooted peer restarts
        its seqnos), like the kernel forgets everything of a node it deletes."""
        rx = self.rx.get(addr)
        if rx is None:
            return
        for a in rx.aead:
            if a is not None:
                a.windows.clear()
        for a in self.tx.aead:
            if a is not None:
                for k in [k for k in a.windows if k[0] == addr]:
                    del a.windows[k]

    # ------------------------------------------------------------------ keys

    def _attach(self, c: _Side, aead: _Aead, pos: int, master: bool) -> int:
        """tipc_crypto_key_attach: the slot the new key takes, or -1 if all are busy."""
        passive, active, pending = c.passive, c.active, c.pending
        if master:
            new = KEY_MASTER
        else:
            if active and passive:
                return -1
            if pending:
                if c.users(pending) > 0:
                    return -1
                new = pending
            elif pos and active and pos != _key_next(active):
                passive = new = pos
            elif pos and not active and not passive:
                pending = new = pos
            else:
                pending = new = _key_next(active or passive)
        if c.is_tx:
            c.key_gen = (c.key_gen + 1) & 0xFFFF
        aead.gen = c.key_gen
        c.aead[new] = aead
        c.passive, c.active, c.pending = passive, active, pending
        c.freed.discard(new)
        c.working = True
        c.nokey = False
        c.key_master |= master
        self._event("attached", c, new, "master" if master else
                    ("cluster" if aead.mode == CLUSTER_KEY else "per-node"))
        return new

    def set_key(self, key: AeadKey, now: float, *, master: bool = False,
                node_id: bytes | None = None) -> int:
        """``tipc node set key KEY [nodeid ID] [master]``: returns the key's slot.

        No node id: a cluster key (TX, and RX for every peer through cloning), or the
        master key.  Own node id: this node's per-node TX key.  Another node id: that
        peer's per-node RX key.  A new non-master TX key is distributed to all peers,
        and rekeying is (re)scheduled, as the kernel does.  Raises CryptoError if every
        slot is busy (a key change is still under way).
        """
        if node_id is None:
            mode, c = CLUSTER_KEY, self.tx
        else:
            mode = PER_NODE_KEY
            nid = node_id[:16].ljust(16, b"\0")
            if nid == self.own_id:
                c = self.tx
            else:
                found = self._rx_by_id.get(nid)
                if found is None:
                    found = _Side(0, 0, now)
                    found.node_id = nid
                    self._rx_by_id[nid] = found
                c = found
            master = False
        slot = self._attach(c, _Aead(key, mode), 0, master)
        if slot < 0:
            raise CryptoError("busy", "unable to attach the new key: a key change is under way")
        if c is self.tx:
            if not master:
                self._distribute(slot, 0)
            self._rekey_sched(now)
        return slot

    def set_rekeying(self, now: float, interval_min: int | None) -> None:
        """``tipc node set key rekeying INTERVAL|now`` (None = now; 0 disables)."""
        if interval_min is None:
            self.tx.rekey_at = now
            return
        self.tx.rekeying_intv = interval_min
        self.tx.rekey_at = None
        self._rekey_sched(now)

    def _rekey_sched(self, now: float) -> None:
        if self.tx.rekeying_intv:
            self.tx.rekey_at = now + self.tx.rekeying_intv * 60.0

    def flush(self) -> None:
        """``tipc node flush key``: every key, every flag, on TX and all peers."""
        for c in [self.tx, *self.rx.values(), *self._rx_by_id.values()]:
            c.working = c.key_master = c.legacy_user = c.nokey = False
            c.aead = [None] * (KEY_MAX + 1)
            c.passive = c.active = c.pending = 0
            c.sndnxt = 0
            c.peer_rx_active = 0
            c.skey = None
            c.key_distr = 0
            c.work_at = None
        self.tx.rekey_at = None

    def _distribute(self, slot: int, dnode: int) -> bool:
        a = self.tx.aead[slot] if slot else None
        if a is None:
            return False
        self._out.append(Outgoing(dnode, build_key_distr(self.own_addr, dnode, a.key, a.gen,
                                                         a.mode)))
        self._event("distributed", self.tx, slot, f"to {dnode:08x}" if dnode else "to all")
        return True

    # ------------------------------------------------------------------ transmit

    def encrypt(self, plain: bytes, peer: int | None, now: float) -> list[bytes]:
        """tipc_crypto_xmit: the packets to put on the bearer for one v2 packet.

        ``peer`` is the destination node when the packet is for one known peer (link
        traffic), None for discovery and broadcast.  Without a key the packet goes out
        as is (a one-element list).  Usually one packet comes back; two while a key is
        being probed (pending key) or during the master key's grace (the kernel's
        SKB_PROBING / SKB_GRACING clones); none if no key can be used (counted).
        """
        tx = self.tx
        if not tx.working:
            return [plain]
        if len(plain) < SHORT_H_SIZE:
            self.tx_counters["no_key"] += 1
            return []
        w0, w1 = struct.unpack_from(">II", plain, 0)
        user = (w0 >> 25) & 0xF
        mtype = w1 >> 29
        rx = self.peer(peer, now) if peer is not None else None
        out: list[bytes] = []
        slot = self._pick_tx_key(rx, user, mtype, now, out, plain)
        if slot < 0:
            self.tx_counters["no_key"] += 1
            return out
        out.insert(0, self._encrypt_slot(slot, plain, rx))
        return out

    def _pick_tx_key(self, rx: _Side | None, user: int, mtype: int, now: float,
                     clones: list[bytes], plain: bytes) -> int:
        tx = self.tx
        vital = user in (USER_LINK_CONFIG, USER_LINK_PROTOCOL)
        if tx.pending:
            if not tx.key_master and not tx.active:
                return tx.pending
            if rx is not None and rx.peer_rx_active == tx.pending:
                return tx.pending
            if vital:  # probe the pending key with a copy
                clones.append(self._encrypt_slot(tx.pending, plain, rx))
        if tx.key_master and tx.aead[KEY_MASTER] is not None:
            if not tx.active:
                return KEY_MASTER
            if (user == USER_LINK_CONFIG or (user == USER_LINK_PROTOCOL and mtype == RESET_MSG)
                    or (user == USER_MSG_CRYPTO and mtype == KEY_DISTR_MSG)
                    or now < tx.timer2 + TX_GRACE):
                if rx is not None and rx.key_master and not rx.peer_rx_active:
                    return KEY_MASTER
                if rx is None:
                    if not tx.legacy_user:
                        return KEY_MASTER
                    clones.append(self._encrypt_slot(KEY_MASTER, plain, rx))
        if tx.active:
            return tx.active
        return -1

    def _encrypt_slot(self, slot: int, plain: bytes, rx: _Side | None) -> bytes:
        """One v7 packet (the header words built straight from the plain packet's: this
        runs for every packet sent; :class:`EHdr` + :func:`encrypt_with` is the same,
        slower, and the twin test checks both give the same bytes)."""
        a = self.tx.aead[slot]
        assert a is not None
        if rx is None or a.mode == CLUSTER_KEY:
            a.seqno += 1
            seqno = a.seqno
        else:
            rx.sndnxt += 1
            seqno = rx.sndnxt
        seqno &= 0xFFFFFFFFFFFFFFFF
        pw0, pw1 = _W01.unpack_from(plain, 0)
        user = (pw0 >> 25) & 0xF
        w0 = EVERSION << 29 | (slot & 3) << 22 | int(self.tx.key_master) << 18
        if rx is not None:
            w0 |= 1 << 24 | (rx.active & 3) << 20 | int(rx.nokey) << 17
        if user == USER_LINK_CONFIG:
            w0 |= USER_LINK_CONFIG << 25
            hdr = _W0_SEQ.pack(w0, seqno) + self.own_id
            xor = _U32.unpack_from(self.own_id, 0)[0]
        else:
            if user == USER_LINK_PROTOCOL and pw1 >> 29 == STATE_MSG:
                w0 |= USER_LINK_PROTOCOL << 25 | (pw0 & 1 << 19)
            xor = _U32.unpack_from(plain, 12)[0]
            hdr = _HDR16.pack(w0, seqno, xor)
        if a.mode != CLUSTER_KEY:
            xor = (rx.addr or 0) if rx is not None else 0
        self.tx_counters["ok"] += 1
        pad = -len(plain) & 3
        nonce = ((a.salt_le ^ xor) & 0xFFFFFFFF).to_bytes(4, "little") + hdr[4:12]
        return hdr + a.gcm.encrypt(nonce, plain + bytes(pad) if pad else plain, hdr)

    # ------------------------------------------------------------------ receive

    def decrypt(self, pkt: bytes, peer_hint: int | None, now: float) -> Decrypted | Dropped:
        """tipc_crypto_rcv: the v2 packet inside ``pkt``, or why it was dropped.

        ``peer_hint`` is the node the bearer believes sent it (None if unknown); the
        header's address is used otherwise.  A clear v2 packet passes through (the
        kernel accepts them) unless refuse-clear mode is on.
        """
        self._peer_ctx = peer_hint or 0
        try:
            return self._decrypt(pkt, peer_hint, now)
        except CryptoError as exc:
            peer = self._peer_ctx
            self._count(peer, exc.reason)
            return Dropped(exc.reason, peer, str(exc))

    def _decrypt(self, pkt: bytes, peer_hint: int | None, now: float) -> Decrypted | Dropped:
        if len(pkt) >= 4 and pkt[0] >> 5 == 2:
            peer = peer_hint or (_U32.unpack_from(pkt, 12)[0] if len(pkt) >= 16 else 0)
            self._peer_ctx = peer
            if self.refuse_clear and self.tx.working:
                raise CryptoError("clear_dropped", "clear packet refused: a key is set")
            return Decrypted(pkt, peer, 0, True)
        ehdr = EHdr.unpack(pkt)
        tx_key = ehdr.tx_key
        rx: _Side | None
        if ehdr.user == USER_LINK_CONFIG:
            rx = self._rx_by_id.get(ehdr.node_id)
            if rx is not None and not rx.addr:
                rx = None
        else:
            sender = peer_hint if peer_hint else ehdr.addr
            rx = self.rx.get(sender)
            if rx is None and sender:
                rx = self.peer(sender, now)
        peer = rx.addr if rx is not None and rx.addr else (peer_hint or ehdr.addr)
        self._peer_ctx = peer
        # candidates: (aead, owner side, from TX?)
        cands: list[tuple[_Aead, bool]] = []
        if rx is not None and tx_key != KEY_MASTER:
            if tx_key not in (rx.active, rx.pending, rx.passive):
                self._try_align(rx, tx_key)
            if tx_key in (rx.active, rx.pending, rx.passive):
                a = rx.aead[tx_key]
                if a is not None:
                    cands.append((a, False))
        guessed = not cands
        if guessed:
            cands = self._pick_tx(tx_key)
        if not cands:
            reason = "no_key"
            if rx is not None:
                rx.nokey = not (rx.skey is not None or rx.aead[_key_next(tx_key)] is not None)
                if tx_key in rx.freed:
                    reason = "too_old"
                elif rx.has_keys:
                    reason = "unknown_key_id"
            elif self.tx.has_keys or self.tx.aead[KEY_MASTER] is not None:
                reason = "unknown_key_id"
            raise CryptoError(reason, f"no key for key id {tx_key}")
        plain: bytes | None = None
        used: _Aead | None = None
        from_tx = False
        for a, _from_tx in cands:
            try:
                plain = _decrypt(a.gcm, a.salt_le, a.mode, ehdr, pkt, self.own_addr)
            except CryptoError:
                if not _from_tx:
                    a.users = max(a.users - 1, -(1 << 31))
                continue
            used, from_tx = a, _from_tx
            break
        if plain is None or used is None:
            reason = "bad_tag"
            if guessed and rx is not None and tx_key in rx.freed:
                reason = "too_old"
            elif guessed and rx is not None and rx.has_keys:
                reason = "unknown_key_id"
            raise CryptoError(reason, f"authentication failed with key id {tx_key}")
        inner = self._validate_inner(plain)
        if rx is None:  # LINK_CONFIG from a node not known yet: its address is inside
            addr = _U32.unpack_from(inner, 12)[0]
            self.learn_peer(addr, ehdr.node_id, now)
            rx = self.rx[addr]
            peer = addr
        if from_tx and tx_key != KEY_MASTER and used.mode == CLUSTER_KEY:
            clone = used.clone()
            clone.windows = used.windows
            if self._attach(rx, clone, tx_key, False) >= 0:
                used = clone
        if ehdr.user != USER_LINK_CONFIG and not self._replay_ok(used, peer, ehdr, rx.epoch):
            raise CryptoError("replay", f"seqno {ehdr.seqno} already seen or too old")
        if not from_tx or rx.aead[tx_key] is used:
            used.users = 1
            rx.timer1 = now
        if rx.passive and tx_key == rx.passive:
            rx.timer2 = now
        self._key_synch(rx, ehdr, inner, now)
        self._count(peer, "ok")
        return Decrypted(inner, peer, tx_key, False)

    @staticmethod
    def _validate_inner(plain: bytes) -> bytes:
        """tipc_msg_validate on the decrypted packet; strips the padding."""
        if len(plain) < SHORT_H_SIZE:
            raise CryptoError("malformed", "decrypted packet shorter than a v2 header")
        w0 = _U32.unpack_from(plain, 0)[0]
        hsize = (w0 >> 21 & 0xF) * 4
        size = w0 & 0x1FFFF
        if w0 >> 29 != 2 or hsize < SHORT_H_SIZE or size < hsize or size > len(plain):
            raise CryptoError("malformed", "decrypted packet is not a valid v2 message")
        return plain[:size]

    def _replay_ok(self, a: _Aead, peer: int, ehdr: EHdr, epoch: int) -> bool:
        """Sliding window over the sender's seqnos.  A sender restarts its per-peer
        counter at 1 when it sees our active RX key change (the kernel's sndnxt reset in
        tipc_crypto_key_synch), so after each such change of ours (``epoch``) one restart
        below the window's top is taken as a new window."""
        key = (peer, ehdr.destined and a.mode != CLUSTER_KEY)
        seq = ehdr.seqno
        w = a.windows.get(key)
        if w is None or (key[1] and seq <= w[0] and w[2] != epoch):
            a.windows[key] = [seq, 1, epoch]
            return True
        top, bits, _ = w
        if seq > top:
            shift = seq - top
            w[0] = seq
            w[1] = ((bits << shift) | 1) & ((1 << REPLAY_WINDOW) - 1) if shift < REPLAY_WINDOW \
                else 1
            return True
        off = top - seq
        if off >= REPLAY_WINDOW or bits >> off & 1:
            return False
        w[1] = bits | 1 << off
        return True

    def _pick_tx(self, tx_key: int) -> list[tuple[_Aead, bool]]:
        """tipc_crypto_key_pick_tx: our own master key, or our cluster keys (a peer using
        the same cluster key), pending first."""
        tx = self.tx
        if tx_key == KEY_MASTER:
            a = tx.aead[KEY_MASTER]
            return [(a, True)] if a is not None else []
        out: list[tuple[_Aead, bool]] = []
        for k in (tx.pending, tx.active, tx.passive):
            a = tx.aead[k] if k else None
            if a is not None and a.mode == CLUSTER_KEY:
                out.append((a, True))
        return out[:2]  # the kernel gives up after two rounds

    def _try_align(self, rx: _Side, new_pending: int) -> bool:
        """tipc_crypto_key_try_align: a rejoined peer uses another slot for our pending key."""
        if rx.pending == new_pending:
            return True
        if rx.active or not rx.pending or rx.users(rx.pending) > 0:
            return False
        moved = rx.aead[rx.pending]
        old_passive = rx.aead[rx.passive] if rx.passive else None
        new_passive = 0
        if rx.passive:
            x = (rx.passive - rx.pending + new_pending) % KEY_MAX
            new_passive = x + KEY_MAX if x <= 0 else x
        rx.aead = [None] * (KEY_MAX + 1)
        rx.aead[new_pending] = moved
        if new_passive:
            rx.aead[new_passive] = old_passive
        rx.passive, rx.active, rx.pending = new_passive, 0, new_pending
        self._event("aligned", rx, new_pending)
        return True

    def _key_synch(self, rx: _Side, ehdr: EHdr, inner: bytes, now: float) -> None:
        """tipc_crypto_key_synch: follow the peer's view of our keys."""
        tx = self.tx
        rx.key_master = ehdr.master_key
        if not rx.key_master:
            tx.legacy_user = True
        w0 = _U32.unpack_from(inner, 0)[0]
        if not ehdr.destined or (w0 >> 21 & 0xF) * 4 <= SHORT_H_SIZE:
            return
        if _U32.unpack_from(inner, 28)[0] != self.own_addr:
            return
        if ehdr.rx_nokey:
            tx.timer2 = now
            if tx.has_keys and rx.key_distr == 0:
                rx.key_distr = 1
                delay = 0.5 * (1 + int.from_bytes(self._random(2), "big") % 5)
                rx.work_at = now + delay if rx.work_at is None else min(rx.work_at, now + delay)
        else:
            rx.key_distr = 0
        cur, new = rx.peer_rx_active, ehdr.rx_key_active
        if tx.has_keys and cur != new:
            rx.peer_rx_active = new
            if new and tx.aead[new] is not None:
                tx.aead[new].users += 1  # type: ignore[union-attr]
            if cur and tx.aead[cur] is not None:
                a = tx.aead[cur]
                assert a is not None
                a.users = max(a.users - 1, 0)
            rx.sndnxt = 0
            tx.timer1 = now

    def receive_crypto_msg(self, msg: bytes, now: float) -> KeyDistr | Dropped:
        """A MSG_CRYPTO that arrived *decrypted* over a link (tipc_crypto_msg_rcv)."""
        try:
            kd = parse_key_distr(msg)
        except CryptoError as exc:
            peer = _U32.unpack_from(msg, 12)[0] if len(msg) >= 16 else 0
            self._count(peer, exc.reason)
            return Dropped(exc.reason, peer, str(exc))
        rx = self.rx.get(kd.prevnode)
        if rx is None:
            self._count(kd.prevnode, "no_key")
            return Dropped("no_key", kd.prevnode, "key from an unknown node")
        if rx.skey is not None or (kd.gen == rx.key_gen and rx.has_keys):
            self._count(kd.prevnode, "replay")
            return Dropped("replay", kd.prevnode, f"key generation {kd.gen} already known")
        rx.key_gen = kd.gen
        rx.skey = kd.key
        rx.skey_mode = kd.mode
        rx.nokey = False
        rx.work_at = now
        self._event("received", rx, 0, f"gen {kd.gen}")
        return kd

    # ------------------------------------------------------------------ timers

    def next_deadline(self) -> float | None:
        """When :meth:`tick` next has something to do (None: only on new input).

        Scheduled work (key distribution, session-key attaching, rekeying) at its time;
        while keys are set, also every TICK_INTERVAL after the last tick, as the kernel
        runs tipc_crypto_timeout from each node's timer: the key-switch conditions
        depend on traffic (users, last use), not only on time.
        """
        times: list[float] = []
        if self.tx.rekey_at is not None:
            times.append(self.tx.rekey_at)
        busy = self.tx.working
        for rx in self.rx.values():
            if rx.work_at is not None:
                times.append(rx.work_at)
            busy = busy or rx.has_keys
        if busy:
            times.append(self._last_tick + TICK_INTERVAL)
        return min(times) if times else None

    def tick(self, now: float) -> None:
        """Timers: key switches (tipc_crypto_timeout per peer), scheduled key
        distribution / session-key attaching (work_rx) and rekeying (work_tx)."""
        tx = self.tx
        self._last_tick = now
        for rx in list(self.rx.values()):
            self._timeout(rx, now)
            if rx.work_at is not None and now >= rx.work_at:
                rx.work_at = None
                self._work_rx(rx, now)
        if now > tx.timer2 + TX_GRACE:
            tx.legacy_user = False
        if tx.rekey_at is not None and now >= tx.rekey_at:
            tx.rekey_at = None
            self._work_tx(now)

    def _timeout(self, rx: _Side, now: float) -> None:
        tx = self.tx
        # TX pending: every peer uses it and it has lasted -> active
        if not (tx.active and tx.users(tx.active) > 0) and tx.pending \
                and tx.users(tx.pending) > 0 and now >= tx.timer1 + TX_LASTING:
            old = tx.active
            tx.active, tx.pending = tx.pending, 0
            if old:
                tx.aead[old] = None
            self._event("activated", tx, tx.active)
        # RX side
        if rx.pending and rx.users(rx.pending) > 0:
            if rx.active:
                rx.passive = rx.active
            rx.active, rx.pending = rx.pending, 0
            rx.timer2 = now
            rx.epoch += 1
            self._event("activated", rx, rx.active)
        elif rx.pending and rx.users(rx.pending) <= USERS_DEAD:
            k = rx.pending
            rx.aead[k] = None
            rx.pending = 0
            self._event("removed", rx, k)
        elif rx.active and not (now < rx.timer1 + RX_ACTIVE_LIM and rx.users(rx.active) > 0):
            k = rx.active
            if rx.pending:
                rx.passive = k
            else:
                rx.pending = k
            rx.active = 0
            rx.timer2 = now
            rx.epoch += 1
            a = rx.aead[rx.pending]
            if a is not None:
                a.users = 0
            self._event("deactivated", rx, k)
        elif rx.passive and not (now < rx.timer2 + RX_PASSIVE_LIM
                                 and rx.users(rx.passive) > USERS_DEAD):
            k = rx.passive
            rx.aead[k] = None
            rx.passive = 0
            rx.freed.add(k)
            self._event("freed", rx, k)

    def _work_rx(self, rx: _Side, now: float) -> None:
        resched = False
        if rx.key_distr == 1:
            rx.key_distr = 2
            slot = self.tx.pending or self.tx.active
            if rx.addr:
                self._distribute(slot, rx.addr)
            resched = True
        elif rx.key_distr == 2:
            rx.key_distr = 0
        if rx.skey is not None:
            slot = self._attach(rx, _Aead(rx.skey, rx.skey_mode or PER_NODE_KEY), 0, False)
            if slot < 0:
                resched = True
            else:
                rx.skey = None
        if resched:
            rx.work_at = now + KEY_DISTR_RETRY

    def _work_tx(self, now: float) -> None:
        """Rekeying: a fresh random session key of the current key's size, attached as
        the pending TX key and sent to every peer."""
        tx = self.tx
        if not tx.pending:
            tmpl = tx.aead[tx.active or KEY_MASTER]
            if tmpl is None:
                return
            skey = AeadKey(self._random(len(tmpl.key.material)), tmpl.key.alg)
            slot = self._attach(tx, _Aead(skey, PER_NODE_KEY), 0, False)
            if slot > 0:
                self._event("rekey", tx, slot)
                self._distribute(slot, 0)
        self._rekey_sched(now)


# ---------------------------------------------------------------------------- captures


@dataclass
class CaptureDecryptor:
    """Decrypt a recorded exchange without being one of its nodes (``tipc dump --key``).

    The given key (a cluster key, or the master key) is tried first; then the keys
    learnt from the KEY_DISTR messages that passed (session keys after a rekey, a new
    cluster key set while up: they travel under the given key or a key learnt earlier).
    A per-node key's nonce needs the receiver's address, which is tried among the
    addresses seen in the capture.
    """

    key: AeadKey
    addrs: set[int] = field(default_factory=set)
    # sender -> [(key, mode)]: a KEY_DISTR carries a session key (per-node) or a new
    # cluster key, and the mode decides the nonce
    session: dict[int, list[tuple[AeadKey, int]]] = field(default_factory=dict)
    _where: dict[tuple[int, int], tuple[AeadKey, int]] = field(default_factory=dict)
    counters: dict[str, int] = field(default_factory=lambda: dict.fromkeys(REASONS, 0))

    def decrypt(self, pkt: bytes) -> Decrypted | Dropped:
        try:
            ehdr = EHdr.unpack(pkt)
        except CryptoError as exc:
            self.counters[exc.reason] += 1
            return Dropped(exc.reason, 0, str(exc))
        sender = ehdr.addr if ehdr.user != USER_LINK_CONFIG else 0
        if sender:
            self.addrs.add(sender)
        tries: list[tuple[AeadKey, int, int]] = [(self.key, CLUSTER_KEY, 0)]
        if ehdr.tx_key != KEY_MASTER:
            known = self._where.get((sender, ehdr.tx_key))
            keys = self.session.get(sender, [])
            if known is not None:
                keys = [known] + [k for k in keys if k is not known]
            for k, kmode in reversed(keys):
                if kmode == CLUSTER_KEY or not ehdr.destined:
                    tries.append((k, kmode, 0))
                else:
                    tries += [(k, kmode, a) for a in sorted(self.addrs) if a != sender]
        for k, mode, own in tries:
            try:
                plain = _decrypt(_aesgcm(k.aes_key), int.from_bytes(k.salt, "little"), mode,
                                 ehdr, pkt, own)
                inner = TipcCrypto._validate_inner(plain)
            except CryptoError:
                continue
            if k is not self.key:
                self._where[(sender, ehdr.tx_key)] = (k, mode)
            self.counters["ok"] += 1
            self.note_inner(inner)
            return Decrypted(inner, sender or _U32.unpack_from(inner, 12)[0], ehdr.tx_key)
        self.counters["bad_tag"] += 1
        return Dropped("bad_tag", sender, f"no key authenticates it (key id {ehdr.tx_key})")

    def learn(self, pkts: list[bytes]) -> None:
        """A first pass over a capture: learn every session key it carries, so that a
        packet sent under a key before the KEY_DISTR announcing it (a probe) opens too."""
        for _ in range(2):  # a KEY_DISTR may itself be under a session key learnt later
            for p in pkts:
                if p[:1] and p[0] >> 5 == EVERSION:
                    self.decrypt(p)
        self.counters = dict.fromkeys(REASONS, 0)

    def note_inner(self, msg: bytes) -> None:
        """Learn from a decrypted message: addresses, and session keys in KEY_DISTR."""
        if len(msg) >= 16:
            self.addrs.add(_U32.unpack_from(msg, 12)[0])
        if len(msg) >= INT_H_SIZE and (msg[0] >> 1) & 0xF == USER_MSG_CRYPTO:
            try:
                kd = parse_key_distr(msg)
            except CryptoError:
                self.counters["malformed"] += 1
                return
            lst = self.session.setdefault(kd.prevnode, [])
            mode = CLUSTER_KEY if kd.mode == CLUSTER_KEY else PER_NODE_KEY
            if (kd.key, mode) not in lst:
                lst.append((kd.key, mode))

"""TIPC v2 message: header words + payload, decode/encode, one class per user.

Design (hot path of every packet):

* ``Msg.w`` is the header as a list of 32-bit ints (``len(w) == hsize // 4``) and
  ``Msg.data`` the payload bytes.  Fields are properties that shift and mask those
  words, so decoding is one ``struct.unpack_from`` plus a slice, re-encoding is
  byte-identical, and bits we do not know survive a decode/encode round trip.
* ``decode()`` picks the subclass from the user field through a 16-entry table.
  It validates like the kernel's ``tipc_msg_validate`` plus the structural checks
  needed so that every field a caller may read is readable; anything else raises
  :class:`DecodeError`, never IndexError/struct.error.
* Reading a field that lies beyond the header (e.g. destnode of a 24-byte SHORT
  header) returns 0; writing it raises ValueError (grow ``hsize`` first).
* Writing masks the value to the field width, like the kernel's msg_set_bits, so
  ``m.seqno = snd_nxt + 32767`` wraps modulo 2**16 as in C.

Bit positions are from the kernel's net/tipc/msg.h (see reference §2.2).
"""

from __future__ import annotations

import struct
from typing import Any, ClassVar

from tipcpy.addr import node_id_to_str
from tipcpy.wire.consts import (
    AEAD_KEY_HDR_SIZE,
    BASIC_H_SIZE,
    DSC_H_SIZE,
    GROUP_H_SIZE,
    INT_H_SIZE,
    MCAST_H_SIZE,
    MEDIA_INFO_SIZE,
    MIN_H_SIZE,
    NAMED_H_SIZE,
    NODE_ID_LEN,
    SHORT_H_SIZE,
    TIPC_AEAD_ALG_NAME,
    TIPC_AEAD_KEY_SIZE_MAX,
    TIPC_MAX_USER_MSG_SIZE,
    TIPC_VERSION,
    Cap,
    ErrCode,
    mtype_name,
    user_name,
)
from tipcpy.wire.items import (
    DecodeError,
    DistrItem,
    GapAckBlocks,
    MediaAddr,
    media_addr_from_info,
    pack_if_name,
    pack_items,
    unpack_if_name,
    unpack_items,
)

__all__ = [
    "Msg",
    "DataMsg",
    "BcastProtoMsg",
    "BundleMsg",
    "LinkProtoMsg",
    "ConnMgrMsg",
    "GroupProtoMsg",
    "TunnelMsg",
    "NameDistrMsg",
    "FragmentMsg",
    "DiscMsg",
    "CryptoMsg",
    "DecodeError",
    "decode",
    "decode_at",
    "default_hsize",
    "msg_class",
]

_U32 = struct.Struct(">I")
_HDR: list[struct.Struct] = [struct.Struct(f">{n}I") for n in range(16)]
"""Precompiled header structs indexed by word count (6..15 used)."""

# ---------------------------------------------------------------- header bits, named once
# Each field is ``(w[WORD] >> X_SHIFT) & X_MASK`` (mask unshifted, like msg_bits() in the
# kernel's msg.h).  The properties below use these; hot paths in core/ that work on raw
# header words use them too instead of repeating the numbers.  One-bit flags also get a
# pre-shifted ``X_BIT``.
# word 0
VERSION_SHIFT, VERSION_MASK = 29, 0x7
USER_SHIFT, USER_MASK = 25, 0xF
HSIZE_SHIFT, HSIZE_MASK = 21, 0xF          # header size in 32-bit words
NON_SEQ_SHIFT = 20
DEST_DROPPABLE_SHIFT = 19
SRC_DROPPABLE_SHIFT = 18
SYN_SHIFT = 17
SIZE_MASK = 0x1FFFF                        # shift 0: total size in bytes
NON_SEQ_BIT = 1 << NON_SEQ_SHIFT
DEST_DROPPABLE_BIT = 1 << DEST_DROPPABLE_SHIFT
SRC_DROPPABLE_BIT = 1 << SRC_DROPPABLE_SHIFT
SYN_BIT = 1 << SYN_SHIFT
KEEPALIVE_SHIFT = 19                       # LINK_PROTOCOL reuses the dest_droppable bit
W0_KEEP = ~((HSIZE_MASK << HSIZE_SHIFT) | SIZE_MASK) & 0xFFFFFFFF
"""w0 without hsize (24:21) and size (16:0): what encode() keeps before rewriting them."""
_HSIZE_BYTES_SHIFT, _HSIZE_BYTES_MASK = HSIZE_SHIFT - 2, HSIZE_MASK << 2  # hsize in bytes, one op
# word 1
MTYPE_SHIFT, MTYPE_MASK = 29, 0x7
ERRCODE_SHIFT, ERRCODE_MASK = 25, 0xF
REROUTE_SHIFT, REROUTE_MASK = 21, 0xF
SCOPE_SHIFT, SCOPE_MASK = 19, 0x3
BCAST_ACK_MASK = 0xFFFF                    # shift 0
SEQ_GAP_SHIFT, SEQ_GAP_MASK = 16, 0x1FFF   # LINK_PROTOCOL STATE (NACK)
# word 2
ACK_SHIFT, ACK_MASK = 16, 0xFFFF
SEQNO_MASK = 0xFFFF                        # shift 0
# LINK_PROTOCOL words 5 and 9
LINKPRIO_SHIFT, LINKPRIO_MASK = 4, 0x1F    # w5
MAX_PKT_SHIFT, MAX_PKT_MASK = 16, 0xFFFF   # w9, in 4-byte units
TOLERANCE_MASK = 0xFFFF                    # w9, shift 0
# MSG_BUNDLER / TUNNEL_PROTOCOL word 9
MSGCNT_SHIFT, MSGCNT_MASK = 16, 0xFFFF     # bundled messages / tunnelled packets


def w0_user(w0: int) -> int:
    """User field of header word 0 (for code holding a raw word, not a Msg)."""
    return (w0 >> USER_SHIFT) & USER_MASK


def w1_errcode(w1: int) -> int:
    """Error code field of header word 1."""
    return (w1 >> ERRCODE_SHIFT) & ERRCODE_MASK


# ---------------------------------------------------------------- field descriptors
def _bits(word: int, shift: int, mask: int, doc: str = "") -> property:
    clr = ~(mask << shift) & 0xFFFFFFFF
    need = 4 * (word + 1)

    def fget(self: Msg) -> int:
        try:
            return (self.w[word] >> shift) & mask
        except IndexError:
            return 0

    def fset(self: Msg, v: int) -> None:
        w = self.w
        try:
            w[word] = (w[word] & clr) | ((int(v) & mask) << shift)
        except IndexError:
            raise ValueError(f"field needs hsize >= {need}, header has {4 * len(w)}") from None

    return property(fget, fset, doc=doc)


def _word(word: int, doc: str = "") -> property:
    need = 4 * (word + 1)

    def fget(self: Msg) -> int:
        try:
            return self.w[word]
        except IndexError:
            return 0

    def fset(self: Msg, v: int) -> None:
        w = self.w
        if word >= len(w):
            raise ValueError(f"field needs hsize >= {need}, header has {4 * len(w)}")
        w[word] = int(v) & 0xFFFFFFFF

    return property(fget, fset, doc=doc)


def _hex8(v: int) -> str:
    return f"0x{v:08x}"


# ---------------------------------------------------------------- base class
class Msg:
    """A TIPC v2 message.  Subclasses add the fields a given user reuses words for."""

    __slots__ = ("w", "data")

    USER: ClassVar[int | None] = None
    _BUILD_FIRST: ClassVar[tuple[str, ...]] = ()

    w: list[int]
    data: bytes

    def __init__(self, w: list[int], data: bytes = b"") -> None:
        self.w = w
        self.data = data

    # ---- word 0
    version = _bits(0, VERSION_SHIFT, VERSION_MASK, "Protocol version; 2 on the wire (7 = encryption header).")
    user = _bits(0, USER_SHIFT, USER_MASK, "Message user: 0..3 data importance, 5..14 internal users.")
    non_seq = _bits(0, NON_SEQ_SHIFT, 1, "Not in the unicast link's sequence (discovery, broadcast link).")
    dest_droppable = _bits(0, DEST_DROPPABLE_SHIFT, 1, "Drop instead of returning when undeliverable.")
    src_droppable = _bits(0, SRC_DROPPABLE_SHIFT, 1, "DGRAM unreliability.")
    syn = _bits(0, SYN_SHIFT, 1, "Connection SYN / multicast method switch marker.")

    @property
    def hsize(self) -> int:
        """Header size in bytes.  Setting it grows (zero-filled) or cuts ``w``."""
        return 4 * len(self.w)

    @hsize.setter
    def hsize(self, n: int) -> None:
        if n % 4 or not MIN_H_SIZE <= n <= DSC_H_SIZE:
            raise ValueError(f"hsize {n}: must be a multiple of 4 in 24..60")
        w = self.w
        k = n // 4
        if k > len(w):
            w.extend([0] * (k - len(w)))
        else:
            del w[k:]
        w[0] = (w[0] & ~(HSIZE_MASK << HSIZE_SHIFT)) | (k << HSIZE_SHIFT)

    @property
    def size(self) -> int:
        """Total size = hsize + len(data); derived, encode() writes it into w0."""
        return 4 * len(self.w) + len(self.data)

    @property
    def data_size(self) -> int:
        return len(self.data)

    # ---- word 1
    mtype = _bits(1, MTYPE_SHIFT, MTYPE_MASK, "Message type within the user.")
    errcode = _bits(1, ERRCODE_SHIFT, ERRCODE_MASK, "TIPC_ERR_* of a returned/rejected data message.")
    reroute_cnt = _bits(1, REROUTE_SHIFT, REROUTE_MASK, "Secondary lookups done.")
    lookup_scope = _bits(1, SCOPE_SHIFT, SCOPE_MASK, "2 cluster, 3 node; 0 for direct messages.")
    bcast_ack = _bits(1, 0, BCAST_ACK_MASK, "Broadcast-link ack piggybacked on unicast traffic.")

    # ---- word 2
    ack = _bits(2, ACK_SHIFT, ACK_MASK, "Link ack: rcv_nxt - 1.")
    seqno = _bits(2, 0, SEQNO_MASK, "Link sequence number.")

    # ---- words 3..10
    prevnode = _word(3, "Address of the node that sent this packet on the link.")
    origport = _word(4, "Sending socket's port.")
    destport = _word(5, "Destination port (net id on broadcast-link packets).")
    mc_netid = _word(5, "Net id carried in w5 by packets sent on the broadcast link.")
    destnode = _word(7, "Destination node address.")
    nametype = _word(8, "Service type.")
    nameinst = _word(9, "Service instance (= lower of a range).")
    lower = _word(9, "Lower bound of a service range.")
    upper = _word(10, "Upper bound of a service range.")

    @property
    def orignode(self) -> int:
        """Originating node; a SHORT (24-byte) header has none and means prevnode."""
        w = self.w
        if len(w) <= 6:
            return w[3]
        return w[6]

    @orignode.setter
    def orignode(self, v: int) -> None:
        if len(self.w) <= 6:
            raise ValueError("orignode needs hsize >= 28 (a SHORT header uses prevnode)")
        self.w[6] = int(v) & 0xFFFFFFFF

    @property
    def is_data(self) -> bool:
        return ((self.w[0] >> USER_SHIFT) & USER_MASK) <= 3

    @property
    def importance(self) -> int:
        """msg_importance(): data user, or the carried importance of fragments and
        bundles, else SYSTEM (4) - also for data with an error code."""
        w0 = self.w[0]
        usr = (w0 >> USER_SHIFT) & USER_MASK
        if usr <= 3 and not ((self.w[1] >> ERRCODE_SHIFT) & ERRCODE_MASK):
            return usr
        if usr in (6, 12):
            return self.w[9] & 7 if len(self.w) > 9 else 0
        return 4

    @importance.setter
    def importance(self, i: int) -> None:
        usr = (self.w[0] >> USER_SHIFT) & USER_MASK
        if usr in (6, 12):
            if len(self.w) <= 9:
                raise ValueError("importance needs hsize >= 40")
            self.w[9] = (self.w[9] & ~7) | (int(i) & 7)
        elif i < 4:
            self.user = i
        else:
            raise ValueError("data messages take importance 0..3")

    # ---- construction
    @classmethod
    def build(
        cls,
        user: int,
        mtype: int = 0,
        hsize: int | None = None,
        data: bytes = b"",
        **fields: Any,
    ) -> Msg:
        """New message of the right subclass: version 2, the kernel's default header
        size for (user, mtype), then each keyword set through its property.
        Nothing else is implied (e.g. no non_seq for LINK_CONFIG): say it explicitly.
        """
        klass = msg_class(user)
        if hsize is None:
            hsize = default_hsize(user, mtype)
        if hsize % 4 or not MIN_H_SIZE <= hsize <= DSC_H_SIZE:
            raise ValueError(f"hsize {hsize}: must be a multiple of 4 in 24..60")
        n = hsize // 4
        w = [0] * n
        data = bytes(data)
        w[0] = (
            (TIPC_VERSION << VERSION_SHIFT)
            | ((user & USER_MASK) << USER_SHIFT)
            | (n << HSIZE_SHIFT)
            | ((hsize + len(data)) & SIZE_MASK)
        )
        w[1] = (mtype & MTYPE_MASK) << MTYPE_SHIFT
        m = klass(w, data)
        for name in klass._BUILD_FIRST:
            if name in fields:
                setattr(m, name, fields.pop(name))
        for name, v in fields.items():
            if name.startswith("_") or not hasattr(klass, name):
                raise TypeError(f"{klass.__name__} has no field {name!r}")
            try:
                setattr(m, name, v)
            except AttributeError:
                raise TypeError(f"{klass.__name__}.{name} is read-only") from None
        return m

    def copy(self) -> Msg:
        """Independent copy (header words are mutable)."""
        return type(self)(list(self.w), self.data)

    # ---- encoding
    def encode(self) -> bytes:
        """Wire bytes; w0's hsize and size fields are rewritten from len(w) and data."""
        w = self.w
        n = len(w)
        size = 4 * n + len(self.data)
        if size > SIZE_MASK:
            raise ValueError(f"message size {size} exceeds the 17-bit size field")
        w[0] = (w[0] & W0_KEEP) | (n << HSIZE_SHIFT) | size
        return _HDR[n].pack(*w) + self.data

    __bytes__ = encode

    # ---- introspection
    def _field_names(self) -> tuple[str, ...]:
        return ("ack", "seqno", "prevnode")

    def fields(self) -> dict[str, Any]:
        """Named fields meaningful for this user/type, JSON-friendly values (for
        ``tipc dump -v/-j``)."""
        out: dict[str, Any] = {
            "version": self.version,
            "user": self.user,
            "user_name": user_name(self.user),
            "mtype": self.mtype,
            "mtype_name": mtype_name(self.user, self.mtype),
            "hsize": self.hsize,
            "size": self.size,
            "non_seq": self.non_seq,
        }
        for name in self._field_names():
            try:
                v = getattr(self, name)
            except (DecodeError, ValueError):
                v = None
            out[name] = _jsonable(v)
        return out

    def summary(self) -> str:
        """One line, tshark style."""
        return f"{user_name(self.user)} {mtype_name(self.user, self.mtype)} ack={self.ack} seq={self.seqno} len={len(self.data)}"

    def _validate(self, base: int) -> None:
        """Per-user structural checks run by decode(); base = offset for errors."""
        if len(self.w) < INT_H_SIZE // 4:
            raise DecodeError(
                "hsize",
                base,
                f"{user_name(self.user)} needs the 40-byte internal header",
                4 * len(self.w),
            )

    def __repr__(self) -> str:
        try:
            s = self.summary()
        except Exception as e:  # repr must never fail
            s = f"<unprintable: {e}>"
        return f"<{type(self).__name__} {s}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Msg):
            return NotImplemented
        return type(self) is type(other) and self.w == other.w and self.data == other.data

    __hash__ = None  # type: ignore[assignment]


def _jsonable(v: Any) -> Any:
    if v is None or isinstance(v, (int, str)):
        return int(v) if isinstance(v, bool) else v
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, DistrItem):
        return {"type": v.type, "lower": v.lower, "upper": v.upper, "port": v.port, "key": v.key}
    if isinstance(v, GapAckBlocks):
        return {
            "len": v.len,
            "ugack_cnt": v.ugack_cnt,
            "bgack_cnt": v.bgack_cnt,
            "bc": [list(b) for b in v.bc],
            "uc": [list(b) for b in v.uc],
        }
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return str(v)


def _flags(m: Msg, names: tuple[str, ...]) -> str:
    return "".join(f" {n}" for n in names if getattr(m, n))


# ---------------------------------------------------------------- data messages
_DATA_MIN_HSIZE = {1: MCAST_H_SIZE, 2: NAMED_H_SIZE, 5: GROUP_H_SIZE, 6: GROUP_H_SIZE}
_DATA_TYPES = (
    "CONN",
    "MCAST",
    "NAMED",
    "DIRECT",
    "GRP_MEMBER_EVT",
    "GRP_BCAST",
    "GRP_MCAST",
    "GRP_UCAST",
)


class DataMsg(Msg):
    """User 0..3 (importance LOW..CRITICAL): socket payload."""

    __slots__ = ()

    is_rcast = _bits(0, 18, 1, "Multicast copy sent by replicast.")
    ack_required = _bits(0, 18, 1, "Nagle: sender wants a CONN_ACK.")
    nagle_ack = _bits(0, 18, 1, "Nagle ack request.")
    grp_bc_seqno = _bits(10, 16, 0xFFFF, "Group broadcast sequence number.")
    grp_evt = _bits(10, 0, 0x3, "Group member event: 1 published, 2 withdrawn.")
    grp_bc_ack_req = _bits(10, 0, 0x1, "Group broadcast ack request.")

    def _validate(self, base: int) -> None:
        need = _DATA_MIN_HSIZE.get(self.w[1] >> MTYPE_SHIFT)
        if need and len(self.w) * 4 < need:
            raise DecodeError(
                "hsize",
                base,
                f"{_DATA_TYPES[self.mtype]} data needs a {need}-byte header",
                len(self.w) * 4,
            )

    def _field_names(self) -> tuple[str, ...]:
        names = [
            "importance", "errcode", "reroute_cnt", "lookup_scope", "dest_droppable",
            "src_droppable", "syn", "bcast_ack", "ack", "seqno", "prevnode", "origport",
            "destport", "orignode",
        ]  # fmt: skip
        n = len(self.w)
        if n >= 8:
            names.append("destnode")
        mt = self.mtype
        if mt == 2 or mt >= 4:
            names += ["nametype", "nameinst"]
        elif mt == 1:
            names += ["nametype", "lower", "upper"]
        if mt >= 4 and n >= 11:  # group messages reuse w10 (no range upper)
            names += ["grp_bc_seqno", "grp_evt"]
        return tuple(names)

    def summary(self) -> str:
        mt = self.mtype
        parts = ["DATA", _DATA_TYPES[mt]]
        if mt == 2 or mt >= 5:
            parts.append(f"{{{self.nametype},{self.nameinst}}}")
        elif mt == 1:
            parts.append(f"{{{self.nametype},{self.lower},{self.upper}}}")
        # A SHORT (connection) header carries no destnode: the receiver is implied.
        dnode = _hex8(self.destnode) if len(self.w) > 7 else "*"
        parts.append(f"{_hex8(self.orignode)}:{self.origport} -> {dnode}:{self.destport}")
        parts.append(f"len={len(self.data)}")
        if self.user:
            parts.append(f"imp={user_name(self.user)}")
        if self.errcode:
            try:
                parts.append(f"err={ErrCode(self.errcode).name}")
            except ValueError:
                parts.append(f"err={self.errcode}")
        for f in ("syn", "dest_droppable", "src_droppable", "non_seq"):
            if getattr(self, f):
                parts.append(f)
        parts.append(f"ack={self.ack} seq={self.seqno}")
        if self.bcast_ack:
            parts.append(f"bcast_ack={self.bcast_ack}")
        return " ".join(parts)


# ---------------------------------------------------------------- BCAST_PROTOCOL (5)
class BcastProtoMsg(Msg):
    """Broadcast sync/init (sent over the unicast link right after link-up) and the
    legacy broadcast NACK.  On the unicast link w2 carries link ack/seqno; as a NACK
    the same word is bcgap_after/bcgap_to."""

    __slots__ = ()
    USER = 5

    bcgap_after = _bits(2, 16, 0xFFFF)
    bcgap_to = _bits(2, 0, 0xFFFF)
    last_bcast = _bits(4, 16, 0xFFFF, "Sender's broadcast snd_nxt - 1: our bcast rcv_nxt - 1.")
    bc_ack_invalid = _bits(5, 14, 1)

    def _field_names(self) -> tuple[str, ...]:
        return ("ack", "seqno", "bcast_ack", "last_bcast", "bc_ack_invalid", "prevnode", "destnode")

    def summary(self) -> str:
        return (
            f"BCAST_PROTOCOL {mtype_name(5, self.mtype)} last_bcast={self.last_bcast} "
            f"ack={self.ack} seq={self.seqno} bcast_ack={self.bcast_ack}"
            + _flags(self, ("bc_ack_invalid",))
        )


# ---------------------------------------------------------------- MSG_BUNDLER (6)
class BundleMsg(Msg):
    """Several small messages packed at 4-byte aligned offsets (see wire.bundle)."""

    __slots__ = ()
    USER = 6

    msgcnt = _bits(9, MSGCNT_SHIFT, MSGCNT_MASK, "Number of bundled messages.")

    def _field_names(self) -> tuple[str, ...]:
        return (
            "msgcnt",
            "importance",
            "ack",
            "seqno",
            "bcast_ack",
            "prevnode",
            "destnode",
            "mc_netid",
        )

    def summary(self) -> str:
        return (
            f"MSG_BUNDLER msgcnt={self.msgcnt} imp={self.importance} ack={self.ack} "
            f"seq={self.seqno} len={len(self.data)}" + _flags(self, ("non_seq",))
        )


# ---------------------------------------------------------------- LINK_PROTOCOL (7)
class LinkProtoMsg(Msg):
    """STATE / RESET / ACTIVATE link supervision messages (§2.6)."""

    __slots__ = ()
    USER = 7

    is_keepalive = _bits(0, KEEPALIVE_SHIFT, 1, "Probe or probe reply.")
    seq_gap = _bits(1, SEQ_GAP_SHIFT, SEQ_GAP_MASK, "NACK: number of missing packets after ack.")
    dest_session_valid = _bits(1, 16, 1, "ACTIVATE: dest_session is valid.")
    dest_session = _bits(1, 0, 0xFFFF, "ACTIVATE: the peer's session being answered.")
    last_bcast = _bits(4, 16, 0xFFFF, "Own broadcast snd_nxt - 1.")
    next_sent = _bits(4, 0, 0xFFFF, "Own snd_nxt.")
    session = _bits(5, 16, 0xFFFF, "Link session number.")
    bc_ack_invalid = _bits(5, 14, 1)
    peer_stopping = _bits(5, 13, 1)
    redundant_link = _bits(5, 12, 1, "Peer node is up.")
    bearer_id = _bits(5, 9, 0x7)
    priority = _bits(5, LINKPRIO_SHIFT, LINKPRIO_MASK, "New link priority, 0 = unchanged.")
    linkprio = _bits(5, LINKPRIO_SHIFT, LINKPRIO_MASK)
    net_plane = _bits(5, 1, 0x7, "Network plane as a number ('A' + n).")
    probe = _bits(5, 0, 1, "Reply requested.")
    bc_gap = _bits(8, 0, 0x3FF, "Broadcast receive gap.")
    tolerance = _bits(9, 0, TOLERANCE_MASK, "New link tolerance in ms, 0 = unchanged.")
    link_tolerance = _bits(9, 0, TOLERANCE_MASK)

    @property
    def max_pkt(self) -> int:
        """Advertised MTU in bytes (w9[31:16] holds it divided by 4)."""
        try:
            return (self.w[9] >> MAX_PKT_SHIFT) * 4
        except IndexError:
            return 0

    @max_pkt.setter
    def max_pkt(self, n: int) -> None:
        if len(self.w) <= 9:
            raise ValueError("max_pkt needs hsize >= 40")
        self.w[9] = (self.w[9] & TOLERANCE_MASK) | (((int(n) // 4) & MAX_PKT_MASK) << MAX_PKT_SHIFT)

    @property
    def if_name(self) -> str:
        """RESET/ACTIVATE payload: sender's interface name (16 bytes, NUL padded)."""
        return unpack_if_name(self.data)

    @if_name.setter
    def if_name(self, name: str) -> None:
        self.data = pack_if_name(name)

    @property
    def gap_ack(self) -> GapAckBlocks | None:
        """Gap-ACK blocks at the start of a STATE payload, or None when there is no
        payload or it does not parse (the kernel then ignores it too).  Whether the
        payload starts with them depends on the peer's TIPC_GAP_ACK_BLOCK cap, which
        the link knows and the codec does not."""
        if self.mtype != 0 or len(self.data) < 4:
            return None
        try:
            return GapAckBlocks.unpack(self.data)
        except DecodeError:
            return None

    @gap_ack.setter
    def gap_ack(self, g: GapAckBlocks | None) -> None:
        tail = self.domain_data
        self.data = (g.pack() if g is not None else b"") + tail

    @property
    def domain_data(self) -> bytes:
        """STATE payload after the Gap-ACK blocks: the monitor domain record, if any."""
        g = self.gap_ack
        return self.data[g.len :] if g is not None else (self.data if self.mtype == 0 else b"")

    def _field_names(self) -> tuple[str, ...]:
        common = (
            "session", "ack", "seqno", "next_sent", "last_bcast", "bc_ack_invalid",
            "peer_stopping", "redundant_link", "bearer_id", "priority", "net_plane",
            "tolerance", "prevnode", "destnode",
        )  # fmt: skip
        mt = self.mtype
        if mt == 0:
            return common + ("probe", "is_keepalive", "seq_gap", "bcast_ack", "bc_gap", "gap_ack")
        if mt == 2:
            return common + ("dest_session_valid", "dest_session", "max_pkt", "if_name")
        return common + ("max_pkt", "if_name")

    def summary(self) -> str:
        mt = self.mtype
        s = f"LINK_PROTOCOL {mtype_name(7, mt)} sess=0x{self.session:04x} ack={self.ack} seq={self.seqno}"
        s += _flags(self, ("probe",))
        if self.is_keepalive:
            s += " keepalive"
        s += f" next_sent={self.next_sent} last_bcast={self.last_bcast}"
        if mt == 0:
            s += f" bcast_ack={self.bcast_ack}"
            if self.seq_gap:
                s += f" gap={self.seq_gap}"
            if self.bc_gap:
                s += f" bc_gap={self.bc_gap}"
            g = self.gap_ack
            if g is not None:
                s += f" gap_ack={g.ugack_cnt}/{g.bgack_cnt}"
        else:
            if mt == 2 and self.dest_session_valid:
                s += f" dest_sess=0x{self.dest_session:04x}"
            s += f" max_pkt={self.max_pkt} if={self.if_name}"
        if self.tolerance:
            s += f" tol={self.tolerance}"
        if self.priority:
            s += f" prio={self.priority}"
        s += _flags(self, ("bc_ack_invalid", "redundant_link", "peer_stopping"))
        return s


# ---------------------------------------------------------------- CONN_MANAGER (8)
class ConnMgrMsg(Msg):
    """CONN_PROBE / CONN_PROBE_REPLY / CONN_ACK between connected sockets."""

    __slots__ = ()
    USER = 8

    conn_ack = _bits(9, 16, 0xFFFF, "Blocks (1024 B) consumed since the last ack.")
    adv_win = _bits(9, 0, 0xFFFF, "Advertised receive window in blocks.")

    def _field_names(self) -> tuple[str, ...]:
        return (
            "conn_ack", "adv_win", "ack", "seqno", "bcast_ack", "prevnode", "origport",
            "destport", "orignode", "destnode",
        )  # fmt: skip

    def summary(self) -> str:
        s = f"CONN_MANAGER {mtype_name(8, self.mtype)}"
        if self.mtype == 2:
            s += f" conn_ack={self.conn_ack} adv_win={self.adv_win}"
        return s + (
            f" {_hex8(self.orignode)}:{self.origport} -> {_hex8(self.destnode)}:{self.destport}"
            f" ack={self.ack} seq={self.seqno}"
        )


# ---------------------------------------------------------------- GROUP_PROTOCOL (9)
class GroupProtoMsg(Msg):
    """Group membership flow control (JOIN/LEAVE/ADV/ACK/RECLAIM/REMIT)."""

    __slots__ = ()
    USER = 9

    bc_syncpt = _bits(9, 16, 0xFFFF, "JOIN/LEAVE: broadcast sync point.")
    grp_bc_syncpt = _bits(9, 16, 0xFFFF)
    bc_acked = _bits(9, 16, 0xFFFF, "ACK: broadcast acked.")
    grp_bc_acked = _bits(9, 16, 0xFFFF)
    remitted = _bits(9, 16, 0xFFFF, "REMIT: remitted.")
    grp_remitted = _bits(9, 16, 0xFFFF)
    adv_win = _bits(9, 0, 0xFFFF, "Advertised window.")

    def _field_names(self) -> tuple[str, ...]:
        return (
            "bc_syncpt", "adv_win", "ack", "seqno", "prevnode", "origport", "destport",
            "orignode", "destnode", "nametype",
        )  # fmt: skip

    def summary(self) -> str:
        return (
            f"GROUP_PROTOCOL {mtype_name(9, self.mtype)} w9hi={self.bc_syncpt} adv_win={self.adv_win}"
            f" {_hex8(self.orignode)}:{self.origport} -> {_hex8(self.destnode)}:{self.destport}"
        )


# ---------------------------------------------------------------- TUNNEL_PROTOCOL (10)
class TunnelMsg(Msg):
    """SYNCH / FAILOVER: a whole packet of another link tunnelled as the payload
    (or a fragment of one when nof_fragms != 0, enhanced failover)."""

    __slots__ = ()
    USER = 10

    msgcnt = _bits(9, MSGCNT_SHIFT, MSGCNT_MASK, "Number of tunnelled packets (FAILOVER).")
    syncpt = _bits(9, 16, 0xFFFF, "Synch point (SYNCH).")
    bearer_id = _bits(5, 9, 0x7, "Bearer id of the tunnelled link at the peer.")
    session = _bits(5, 16, 0xFFFF)
    fragm_no = _bits(4, 16, 0xFFFF)
    nof_fragms = _bits(4, 0, 0xFFFF)

    @property
    def inner(self) -> Msg | None:
        """Decoded tunnelled packet, None if empty or a fragment; DecodeError if bad."""
        if not self.data or self.nof_fragms:
            return None
        return decode(self.data, base=4 * len(self.w))

    def _field_names(self) -> tuple[str, ...]:
        return (
            "msgcnt",
            "bearer_id",
            "fragm_no",
            "nof_fragms",
            "ack",
            "seqno",
            "prevnode",
            "destnode",
        )

    def summary(self) -> str:
        s = f"TUNNEL_PROTOCOL {mtype_name(10, self.mtype)} msgcnt={self.msgcnt} bearer={self.bearer_id}"
        if self.nof_fragms:
            s += f" frag={self.fragm_no}/{self.nof_fragms}"
        return s + f" ack={self.ack} seq={self.seqno} len={len(self.data)}"


# ---------------------------------------------------------------- NAME_DISTRIBUTOR (11)
class NameDistrMsg(Msg):
    """PUBLICATION / WITHDRAWAL of bindings: payload = N x 20-byte distr items."""

    __slots__ = ()
    USER = 11

    bulk = _bits(1, 28, 1)
    last_bulk = _bits(1, 27, 1)
    non_legacy = _bits(1, 26, 1)
    named_seqno = _bits(4, 0, 0xFFFF)
    bc_ack_invalid = _bits(5, 14, 1)

    @property
    def items(self) -> list[DistrItem]:
        return unpack_items(self.data, 4 * len(self.w))

    @items.setter
    def items(self, items: list[DistrItem]) -> None:
        self.data = pack_items(items)

    def _validate(self, base: int) -> None:
        Msg._validate(self, base)
        if len(self.data) % 20:
            raise DecodeError(
                "items",
                base + 4 * len(self.w),
                "payload is not a multiple of 20 bytes",
                len(self.data),
            )

    def _field_names(self) -> tuple[str, ...]:
        return (
            "bulk", "last_bulk", "non_legacy", "named_seqno", "bc_ack_invalid", "ack", "seqno",
            "bcast_ack", "prevnode", "orignode", "destnode", "mc_netid", "items",
        )  # fmt: skip

    def summary(self) -> str:
        s = f"NAME_DISTRIBUTOR {mtype_name(11, self.mtype)}"
        s += _flags(self, ("bulk", "last_bulk"))
        if not self.non_legacy:
            s += " legacy"
        s += f" seqno={self.named_seqno}"
        items = self.items
        shown = " ".join(f"{{{i.type},{i.lower},{i.upper}}}@{_hex8(i.port)}" for i in items[:4])
        if len(items) > 4:
            shown += f" +{len(items) - 4}"
        s += f" items={shown}" if items else " items=none"
        s += f" node={_hex8(self.orignode)} ack={self.ack} seq={self.seqno}"
        if self.non_seq:
            s += " non_seq"
        return s


# ---------------------------------------------------------------- MSG_FRAGMENTER (12)
class FragmentMsg(Msg):
    """FIRST_FRAGMENT / FRAGMENT / LAST_FRAGMENT of one big message (§2.9)."""

    __slots__ = ()
    USER = 12

    fragm_no = _bits(4, 16, 0xFFFF, "Fragment number, from 1.")
    nof_fragms = _bits(4, 0, 0xFFFF, "Number of fragments (0 on link fragmentation).")

    def _field_names(self) -> tuple[str, ...]:
        return (
            "fragm_no",
            "nof_fragms",
            "importance",
            "ack",
            "seqno",
            "bcast_ack",
            "prevnode",
            "destnode",
        )

    def summary(self) -> str:
        s = (
            f"MSG_FRAGMENTER {mtype_name(12, self.mtype)} no={self.fragm_no} imp={self.importance}"
            f" ack={self.ack} seq={self.seqno} len={len(self.data)}"
        )
        if self.mtype == 0 and len(self.data) >= 4:
            w0 = _U32.unpack_from(self.data, 0)[0]
            s += f" inner={user_name(w0_user(w0))}/{w0 & SIZE_MASK}B"
        return s


# ---------------------------------------------------------------- LINK_CONFIG (13)
class DiscMsg(Msg):
    """Neighbour discovery (REQ/RESP/TRIAL/TRIAL_FAIL), 60-byte header + node id.

    w1 holds capabilities in bits 27:15 and the node signature in 15:0; they
    overlap at bit 15.  The kernel writes the signature first and the caps after,
    so bit 15 is caps bit 0: Msg.build applies ``signature`` before ``caps``.
    """

    __slots__ = ()
    USER = 13
    _BUILD_FIRST = ("signature",)

    caps = _bits(1, 15, 0x1FFF, "Node capabilities (Cap flags).")
    signature = _bits(1, 0, 0xFFFF, "Node signature (random); bit 15 is shared with caps.")
    node_sig = _bits(1, 0, 0xFFFF)
    dest_domain = _word(2, "0 = any; in RESP/TRIAL_FAIL the node answered.")
    net_id = _word(4, "Cluster/network id (4711 by default).")
    bc_netid = _word(4)
    peer_net_hash = _word(13, "Namespace hash mix; the sender's random value between hosts.")
    suggested_addr = _word(14, "TRIAL_FAIL: address the trialling node should use.")
    sugg_node_addr = _word(14)

    @property
    def media_info(self) -> bytes:
        """Raw 32 bytes of w5..w12."""
        return struct.pack(">8I", *self.w[5:13]) if len(self.w) >= 13 else bytes(MEDIA_INFO_SIZE)

    @media_info.setter
    def media_info(self, raw: bytes) -> None:
        if len(raw) != MEDIA_INFO_SIZE:
            raise ValueError("media info is 32 bytes")
        if len(self.w) < 13:
            raise ValueError("media info needs hsize 60")
        self.w[5:13] = struct.unpack(">8I", raw)

    @property
    def media_addr(self) -> MediaAddr:
        """Address the sender wants link traffic sent to (UdpMediaAddr/EthMediaAddr)."""
        return media_addr_from_info(self.media_info, 20)

    @media_addr.setter
    def media_addr(self, addr: MediaAddr) -> None:
        self.media_info = addr.to_media_info()

    @property
    def node_id(self) -> bytes:
        """16-byte node identity (payload); meaningful if caps has NODE_ID128."""
        return bytes(self.data[:NODE_ID_LEN])

    @node_id.setter
    def node_id(self, id16: bytes) -> None:
        if len(id16) != NODE_ID_LEN:
            raise ValueError("node id is 16 bytes")
        self.data = bytes(id16) + self.data[NODE_ID_LEN:]

    @property
    def node_id_str(self) -> str:
        nid = self.node_id
        return node_id_to_str(nid) if len(nid) == NODE_ID_LEN else nid.hex()

    def _validate(self, base: int) -> None:
        if len(self.w) < DSC_H_SIZE // 4:
            raise DecodeError(
                "hsize", base, "LINK_CONFIG needs the 60-byte header", 4 * len(self.w)
            )
        media_addr_from_info(self.media_info, base + 20)
        if self.caps & Cap.NODE_ID128 and len(self.data) < NODE_ID_LEN:
            raise DecodeError(
                "node_id",
                base + 4 * len(self.w),
                "caps has NODE_ID128 but payload is shorter than 16 bytes",
                len(self.data),
            )

    def _field_names(self) -> tuple[str, ...]:
        return (
            "caps", "signature", "dest_domain", "prevnode", "net_id", "media_addr",
            "peer_net_hash", "suggested_addr", "node_id", "node_id_str",
        )  # fmt: skip

    def summary(self) -> str:
        try:
            media = str(self.media_addr)
        except DecodeError:
            media = "?"
        s = (
            f"LINK_CONFIG {mtype_name(13, self.mtype)} caps=0x{self.caps:03x} sig=0x{self.signature:04x}"
            f" net={self.net_id} from={_hex8(self.prevnode)}"
        )
        if self.dest_domain:
            s += f" to={_hex8(self.dest_domain)}"
        s += f" media={media}"
        if len(self.data) >= NODE_ID_LEN:
            s += f" id={self.node_id_str}"
        if self.suggested_addr:
            s += f" sugg={_hex8(self.suggested_addr)}"
        return s


# ---------------------------------------------------------------- MSG_CRYPTO (14)
class CryptoMsg(Msg):
    """KEY_DISTR: a session key (struct tipc_aead_key: alg name[32], be32 keylen, key)."""

    __slots__ = ()
    USER = 14

    key_gen = _bits(4, 16, 0xFFFF)
    key_mode = _bits(4, 0, 0xF)

    @property
    def alg_name(self) -> str:
        raw = bytes(self.data[:TIPC_AEAD_ALG_NAME])
        nul = raw.find(0)
        return (raw if nul < 0 else raw[:nul]).decode("ascii", "replace")

    @property
    def keylen(self) -> int:
        if len(self.data) < AEAD_KEY_HDR_SIZE:
            return 0
        n: int = _U32.unpack_from(self.data, TIPC_AEAD_ALG_NAME)[0]
        return n

    @property
    def key(self) -> bytes:
        return bytes(self.data[AEAD_KEY_HDR_SIZE : AEAD_KEY_HDR_SIZE + self.keylen])

    def set_key(self, alg_name: str, key: bytes) -> None:
        name = alg_name.encode()
        if len(name) >= TIPC_AEAD_ALG_NAME:
            raise ValueError("algorithm name too long")
        self.data = name + bytes(TIPC_AEAD_ALG_NAME - len(name)) + _U32.pack(len(key)) + bytes(key)

    def _validate(self, base: int) -> None:
        Msg._validate(self, base)
        if self.mtype != 0:
            return
        off = base + 4 * len(self.w)
        n = len(self.data)
        if n < AEAD_KEY_HDR_SIZE:
            raise DecodeError("key", off, f"KEY_DISTR payload needs {AEAD_KEY_HDR_SIZE} bytes", n)
        kl = self.keylen
        # Same check as tipc_crypto_key_rcv() (the CVE-2021-43267 fix).
        if kl > TIPC_AEAD_KEY_SIZE_MAX or n != kl + AEAD_KEY_HDR_SIZE:
            raise DecodeError(
                "keylen", off + TIPC_AEAD_ALG_NAME, f"does not match payload of {n} bytes", kl
            )

    def _field_names(self) -> tuple[str, ...]:
        return ("key_gen", "key_mode", "alg_name", "keylen", "ack", "seqno", "prevnode", "destnode")

    def summary(self) -> str:
        return (
            f"MSG_CRYPTO {mtype_name(14, self.mtype)} gen={self.key_gen} mode={self.key_mode}"
            f" alg={self.alg_name} keylen={self.keylen} ack={self.ack} seq={self.seqno}"
        )


# ---------------------------------------------------------------- dispatch
_CLASSES: list[type[Msg] | None] = [
    DataMsg, DataMsg, DataMsg, DataMsg, None,
    BcastProtoMsg, BundleMsg, LinkProtoMsg, ConnMgrMsg, GroupProtoMsg, TunnelMsg,
    NameDistrMsg, FragmentMsg, DiscMsg, CryptoMsg, None,
]  # fmt: skip

_DATA_HSIZE = (SHORT_H_SIZE, MCAST_H_SIZE, NAMED_H_SIZE, BASIC_H_SIZE) + (GROUP_H_SIZE,) * 4


def msg_class(user: int) -> type[Msg]:
    """Subclass for a wire user; ValueError for 4, 15 and out-of-range values."""
    if not 0 <= user <= 15 or _CLASSES[user] is None:
        raise ValueError(f"user {user} is not valid on the wire")
    return _CLASSES[user]  # type: ignore[return-value]


def default_hsize(user: int, mtype: int = 0) -> int:
    """Header size the kernel uses: by data type for users 0..3, 60 for LINK_CONFIG,
    the 40-byte INT header for every other internal user."""
    if user <= 3:
        return _DATA_HSIZE[mtype & 7]
    if user == 13:
        return DSC_H_SIZE
    return INT_H_SIZE


def decode(buf: bytes | bytearray | memoryview, base: int = 0) -> Msg:
    """Parse one message from the start of ``buf``.

    Bytes past the message's size field are ignored (Ethernet padding, or the next
    message of a bundle).  ``base`` is added to error offsets when ``buf`` is part
    of a bigger message.  Raises DecodeError and nothing else for bad input.
    """
    return decode_at(buf, 0, base)


def decode_at(buf: bytes | bytearray | memoryview, off: int, base: int = 0) -> Msg:
    """``decode(buf[off:], base)`` without making the slice: the message that starts
    ``off`` bytes into ``buf`` (the inner messages of a bundle).  Same checks, same
    DecodeErrors (``base`` is the error offset of ``buf[off]``)."""
    n = len(buf) - off
    if n < MIN_H_SIZE:
        raise DecodeError("length", base, f"shorter than the {MIN_H_SIZE}-byte minimum header", n)
    w0 = _U32.unpack_from(buf, off)[0]
    ver = w0 >> VERSION_SHIFT
    if ver != TIPC_VERSION:
        if ver == 7:
            raise DecodeError("version", base, "encrypted (v7 header): no key", ver)
        raise DecodeError("version", base, "must be 2", ver)
    hsize = (w0 >> _HSIZE_BYTES_SHIFT) & _HSIZE_BYTES_MASK
    if hsize < MIN_H_SIZE:
        raise DecodeError("hsize", base, "must be 24..60", hsize)
    size = w0 & SIZE_MASK
    if size < hsize:
        raise DecodeError("size", base, f"smaller than hsize {hsize}", size)
    if size > n:
        raise DecodeError("size", base, f"exceeds the {n} bytes available", size)
    if size - hsize > TIPC_MAX_USER_MSG_SIZE:
        raise DecodeError("size", base, f"data exceeds {TIPC_MAX_USER_MSG_SIZE} bytes", size)
    cls = _CLASSES[(w0 >> USER_SHIFT) & USER_MASK]
    if cls is None:
        raise DecodeError("user", base, "not valid on the wire", w0_user(w0))
    data = buf[off + hsize:off + size]
    if data.__class__ is not bytes:
        data = bytes(data)
    m: Msg = cls(list(_HDR[hsize >> 2].unpack_from(buf, off)), data)
    m._validate(base)
    return m

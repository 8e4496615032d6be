"""MSG_FRAGMENTER: split a message bigger than the link MSS, and join it again.

Kernel behaviour (msg.c ``tipc_msg_build``/``tipc_buf_append``, reference §2.9):
each fragment is a 40-byte INT header + a slice of the whole original message
(its header included); FIRST_FRAGMENT, FRAGMENT..., LAST_FRAGMENT; fragm_no counts
from 1; nof_fragms stays 0; the carried importance goes to w9[2:0].  Every
non-last fragment is exactly ``mss`` bytes.  Kernels built with CONFIG_TIPC_CRYPTO
use mss = MTU - 40 - 32 even without a key (13928 at MTU 14000, 1428 at 1500).
One reassembly is in progress per link and direction.

Speed (a 60 KB message is 5 fragments at MTU 14000, every one of them on the hot
path of both daemons): the fragments' header words are written directly instead of
through ``Msg.build`` and its per-field properties, the inner message is encoded once
and sliced, and :func:`fragment_packets` goes one step further for a caller that wants
wire bytes: one ``bytearray`` per packet, header packed in place and the payload
copied once from the inner message, with seqno/ack left 0 for the link to patch in
place (``struct.pack_into``) without another copy.  The Reassembler reads the header
words it needs straight from ``w``.  ``tests/unit/test_wire_bundle_fragment.py``
proves both fast paths produce exactly what the field-by-field construction does.
"""

from __future__ import annotations

import struct

from tipcpy.wire.consts import INT_H_SIZE, MAX_MSG_SIZE, TIPC_VERSION, FragType
from tipcpy.wire.items import DecodeError
from tipcpy.wire.msg import FragmentMsg, Msg, decode

__all__ = ["fragment", "fragment_packets", "Reassembler", "link_mss"]

_USER_FRAGMENTER = 12
_FIRST = int(FragType.FIRST_FRAGMENT)
_MIDDLE = int(FragType.FRAGMENT)
_LAST = int(FragType.LAST_FRAGMENT)
# w0 of every fragment but its size field: version 2, user 12, hsize 10 words
_W0 = (TIPC_VERSION << 29) | (_USER_FRAGMENTER << 25) | ((INT_H_SIZE // 4) << 21)
_INT_HDR = struct.Struct(">10I")
_INT_HDR_PACK_INTO = _INT_HDR.pack_into
_U32 = struct.Struct(">I")


def link_mss(mtu: int, crypto_overhead: bool = True) -> int:
    """Largest packet the kernel puts on a link of this MTU (see module doc)."""
    return mtu - INT_H_SIZE - (32 if crypto_overhead else 0)


def _inner_raw(
    inner: bytes | bytearray | memoryview | Msg,
    importance: int | None,
    prevnode: int | None,
    destnode: int | None,
) -> tuple[bytes | bytearray | memoryview, int, int, int]:
    """The inner message's wire bytes and the (importance, prevnode, destnode) its
    fragments carry: the caller's values, else the inner message's (as tipc_msg_build)."""
    if isinstance(inner, Msg):
        m = inner
        raw: bytes | bytearray | memoryview = inner.encode()
    else:
        m = decode(inner)
        raw = inner if len(inner) == m.size else inner[: m.size]
    imp = m.importance if importance is None else importance
    pn = m.w[3] if prevnode is None else prevnode
    dn = m.destnode if destnode is None else destnode
    return raw, imp & 7, pn & 0xFFFFFFFF, dn & 0xFFFFFFFF


def _check(total: int, chunk: int, mss: int) -> int:
    """Number of fragments; ValueError where the kernel would not fragment."""
    if chunk < 4:
        raise ValueError(f"mss {mss} leaves no room for data")
    if total <= chunk:
        raise ValueError(f"message of {total} bytes fits in mss {mss}: no fragmentation")
    if total > MAX_MSG_SIZE:
        raise ValueError(f"message of {total} bytes exceeds {MAX_MSG_SIZE}")
    return -(-total // chunk)


def fragment(
    inner: bytes | Msg,
    mss: int,
    importance: int | None = None,
    *,
    prevnode: int | None = None,
    destnode: int | None = None,
) -> list[FragmentMsg]:
    """Split one whole message into FragmentMsgs of at most ``mss`` bytes each.

    ``importance`` defaults to the inner message's (msg_importance); prevnode /
    orignode default to the inner prevnode and destnode to the inner destnode, as
    the kernel's tipc_msg_build does.  Raises ValueError if the message fits in one
    packet (the kernel would not fragment it) or is larger than 66060 bytes.
    """
    raw, imp, pn, dn = _inner_raw(inner, importance, prevnode, destnode)
    chunk = mss - INT_H_SIZE
    total = len(raw)
    nfrags = _check(total, chunk, mss)
    if raw.__class__ is not bytes:
        raw = bytes(raw)
    out: list[FragmentMsg] = []
    append = out.append
    last = nfrags - 1
    for i in range(nfrags):
        off = i * chunk
        part = raw[off : off + chunk]
        mt = _FIRST if i == 0 else (_LAST if i == last else _MIDDLE)
        # w0 size | w1 mtype | w2 ack/seqno | w3 prevnode | w4 fragm_no/nof_fragms |
        # w5 | w6 orignode | w7 destnode | w8 | w9 importance
        append(FragmentMsg(
            [_W0 | (INT_H_SIZE + len(part)), mt << 29, 0, pn, (i + 1) << 16, 0, pn, dn, 0, imp],
            part,
        ))
    return out


def fragment_packets(
    inner: bytes | bytearray | memoryview | Msg,
    mss: int,
    importance: int | None = None,
    *,
    prevnode: int | None = None,
    destnode: int | None = None,
) -> list[bytearray]:
    """The wire bytes of ``fragment(...)``'s FragmentMsgs, one bytearray each.

    For a sender that puts fragments straight on a link: the payload is copied once
    (inner message -> packet, through a memoryview), and the packets are mutable so
    seqno/ack/bcast_ack (w1/w2, left 0 here) can be patched in place.  Same arguments,
    same ValueErrors, same bytes as ``[f.encode() for f in fragment(...)]``.
    """
    if isinstance(inner, Msg):
        # header and payload as they are: no whole-message encode to slice from
        imp = inner.importance if importance is None else importance
        w = inner.w
        pn = w[3] if prevnode is None else prevnode
        dn = inner.destnode if destnode is None else destnode
        imp &= 7
        pn &= 0xFFFFFFFF
        dn &= 0xFFFFFFFF
        n = len(w)
        data = inner.data
        total = 4 * n + len(data)
        if total > 0x1FFFF:
            raise ValueError(f"message size {total} exceeds the 17-bit size field")
        w[0] = (w[0] & ~((0xF << 21) | 0x1FFFF)) | (n << 21) | total  # as encode() does
        head = struct.pack(f">{n}I", *w)
        hlen = 4 * n
        dmv = memoryview(data)
    else:
        raw, imp, pn, dn = _inner_raw(inner, importance, prevnode, destnode)
        head = b""
        hlen = 0
        total = len(raw)
        dmv = memoryview(raw)
    chunk = mss - INT_H_SIZE
    nfrags = _check(total, chunk, mss)
    out: list[bytearray] = []
    last = nfrags - 1
    pack_into = _INT_HDR_PACK_INTO
    for i in range(nfrags):
        off = i * chunk
        plen = chunk if i < last else total - off
        pkt = bytearray(INT_H_SIZE + plen)
        mt = _FIRST if i == 0 else (_LAST if i == last else _MIDDLE)
        pack_into(pkt, 0, _W0 | (INT_H_SIZE + plen), mt << 29, 0, pn, (i + 1) << 16, 0,
                  pn, dn, 0, imp)
        if off < hlen:
            # the first fragment(s) start with the inner header
            k = min(hlen - off, plen)
            pkt[INT_H_SIZE:INT_H_SIZE + k] = head[off:off + k]
            if plen > k:
                pkt[INT_H_SIZE + k:] = dmv[0:plen - k]
        else:
            d = off - hlen
            pkt[INT_H_SIZE:] = dmv[d:d + plen]
        out.append(pkt)
    return out


class Reassembler:
    """Joins the fragments of one link direction, in link order.

    ``feed`` returns the decoded inner message when LAST_FRAGMENT arrives, else
    None.  Like the kernel, any inconsistency (a FIRST while one is in progress, a
    fragment without FIRST, an out-of-order fragm_no, more than 66060 bytes, a bad
    inner message) discards the whole reassembly; we also raise DecodeError so the
    caller can count it (the kernel resets the link for this on unicast links).
    The fragments' payloads are kept as they are (no copy) and joined once.
    """

    __slots__ = ("_parts", "_size", "_next_no")

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self._size = 0
        self._next_no = 0

    @property
    def in_progress(self) -> bool:
        return bool(self._parts)

    def reset(self) -> None:
        self._parts = []
        self._size = 0
        self._next_no = 0

    def _fail(self, field: str, reason: str, value: object = None) -> DecodeError:
        self.reset()
        return DecodeError(field, 0, reason, value)

    def feed(self, frag: FragmentMsg | Msg | bytes) -> Msg | None:
        if frag.__class__ is not FragmentMsg:
            m = frag if isinstance(frag, Msg) else decode(frag)
            if not isinstance(m, FragmentMsg):
                raise self._fail("user", "not a MSG_FRAGMENTER message", m.user)
            frag = m
        w = frag.w
        user = (w[0] >> 25) & 0xF
        if user != _USER_FRAGMENTER:
            raise self._fail("user", "not a MSG_FRAGMENTER message", user)
        mt = w[1] >> 29
        no = (w[4] >> 16) & 0xFFFF if len(w) > 4 else 0
        parts = self._parts
        if mt == _FIRST:
            if parts:
                raise self._fail("mtype", "FIRST_FRAGMENT while a reassembly is in progress")
            size = 0
        elif mt == _MIDDLE or mt == _LAST:
            if not parts:
                raise self._fail("mtype", f"{FragType(mt).name} without FIRST_FRAGMENT")
            if no != self._next_no:
                raise self._fail("fragm_no", f"expected {self._next_no}", no)
            size = self._size
        else:
            raise self._fail("mtype", "unknown fragment type", mt)
        data = frag.data
        size += len(data)
        if size > MAX_MSG_SIZE:
            raise self._fail("size", f"reassembled message exceeds {MAX_MSG_SIZE} bytes", size)
        parts.append(data)
        self._size = size
        self._next_no = (no + 1) & 0xFFFF
        if mt != _LAST:
            return None
        whole = b"".join(parts)
        self.reset()
        return decode(whole)

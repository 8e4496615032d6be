"""MSG_FRAGMENTER: split a message bigger than the link MSS, and join it again.

Kernel behaviour (msg.c ``tipc_msg_build``/``tipc_buf_append``, reference §2.9):
each fragment is a 40-byte INT header + a slice of the whole original message
(its header included); FIRST_FRAGMENT, FRAGMENT..., LAST_FRAGMENT; fragm_no counts
from 1; nof_fragms stays 0; the carried importance goes to w9[2:0].  Every
non-last fragment is exactly ``mss`` bytes.  Kernels built with CONFIG_TIPC_CRYPTO
use mss = MTU - 40 - 32 even without a key (13928 at MTU 14000, 1428 at 1500).
One reassembly is in progress per link and direction.
"""

from __future__ import annotations

from tipcpy.wire.consts import INT_H_SIZE, MAX_MSG_SIZE, FragType
from tipcpy.wire.items import DecodeError
from tipcpy.wire.msg import FragmentMsg, Msg, decode

__all__ = ["fragment", "Reassembler", "link_mss"]


def link_mss(mtu: int, crypto_overhead: bool = True) -> int:
    """Largest packet the kernel puts on a link of this MTU (see module doc)."""
    return mtu - INT_H_SIZE - (32 if crypto_overhead else 0)


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
    if isinstance(inner, Msg):
        m = inner
        raw = inner.encode()
    else:
        m = decode(inner)
        raw = bytes(inner[: m.size])
    chunk = mss - INT_H_SIZE
    if chunk < 4:
        raise ValueError(f"mss {mss} leaves no room for data")
    if len(raw) <= chunk:
        raise ValueError(f"message of {len(raw)} bytes fits in mss {mss}: no fragmentation")
    if len(raw) > MAX_MSG_SIZE:
        raise ValueError(f"message of {len(raw)} bytes exceeds {MAX_MSG_SIZE}")
    if importance is None:
        importance = m.importance
    pn = m.w[3] if prevnode is None else prevnode
    dn = m.destnode if destnode is None else destnode
    nfrags = -(-len(raw) // chunk)
    out: list[FragmentMsg] = []
    for i in range(nfrags):
        mt = (
            FragType.FIRST_FRAGMENT
            if i == 0
            else (FragType.LAST_FRAGMENT if i == nfrags - 1 else FragType.FRAGMENT)
        )
        f = FragmentMsg.build(
            12,
            mt,
            data=raw[i * chunk : (i + 1) * chunk],
            prevnode=pn,
            orignode=pn,
            destnode=dn,
            fragm_no=i + 1,
        )
        f.importance = importance
        out.append(f)  # type: ignore[arg-type]
    return out


class Reassembler:
    """Joins the fragments of one link direction, in link order.

    ``feed`` returns the decoded inner message when LAST_FRAGMENT arrives, else
    None.  Like the kernel, any inconsistency (a FIRST while one is in progress, a
    fragment without FIRST, an out-of-order fragm_no, more than 66060 bytes, a bad
    inner message) discards the whole reassembly; we also raise DecodeError so the
    caller can count it (the kernel resets the link for this on unicast links).
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

    def feed(self, frag: FragmentMsg | bytes) -> Msg | None:
        if not isinstance(frag, FragmentMsg):
            m = frag if isinstance(frag, Msg) else decode(frag)
            if not isinstance(m, FragmentMsg):
                raise self._fail("user", "not a MSG_FRAGMENTER message", m.user)
            frag = m
        if frag.user != 12:
            raise self._fail("user", "not a MSG_FRAGMENTER message", frag.user)
        mt = frag.mtype
        no = frag.fragm_no
        if mt == FragType.FIRST_FRAGMENT:
            if self._parts:
                raise self._fail("mtype", "FIRST_FRAGMENT while a reassembly is in progress")
            self._next_no = no
        elif mt in (FragType.FRAGMENT, FragType.LAST_FRAGMENT):
            if not self._parts:
                raise self._fail("mtype", f"{FragType(mt).name} without FIRST_FRAGMENT")
            if no != self._next_no:
                raise self._fail("fragm_no", f"expected {self._next_no}", no)
        else:
            raise self._fail("mtype", "unknown fragment type", mt)
        self._size += len(frag.data)
        if self._size > MAX_MSG_SIZE:
            raise self._fail(
                "size", f"reassembled message exceeds {MAX_MSG_SIZE} bytes", self._size
            )
        self._parts.append(frag.data)
        self._next_no = (no + 1) & 0xFFFF
        if mt != FragType.LAST_FRAGMENT:
            return None
        whole = b"".join(self._parts)
        self.reset()
        return decode(whole)

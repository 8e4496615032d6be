"""MSG_BUNDLER: pack small messages into one packet, and split them again.

The kernel bundles only when a link's window is full (messages wait in the backlog),
so a receiver must always be able to unbundle; sending bundles is optional for us.
Layout (msg.c ``tipc_msg_bundle``/``tipc_msg_extract``): a 40-byte INT header with
msgcnt in w9[31:16] and the carried importance in w9[2:0], then each inner message
whole (header + data) starting at a 4-byte aligned offset.  The bundle ends right
after the last inner message (padding sits only between messages).
"""

from __future__ import annotations

import struct
from typing import cast

from tipcpy.wire.consts import INT_H_SIZE, MIN_H_SIZE, User
from tipcpy.wire.items import DecodeError
from tipcpy.wire.msg import (
    HSIZE_SHIFT,
    MSGCNT_SHIFT,
    USER_SHIFT,
    VERSION_SHIFT,
    BundleMsg,
    Msg,
    decode,
)

__all__ = ["bundle", "unbundle", "pack_bundle", "NOT_BUNDLED_USERS"]

NOT_BUNDLED_USERS = frozenset({5, 6, 10, 12})
"""BCAST_PROTOCOL, MSG_BUNDLER, TUNNEL_PROTOCOL, MSG_FRAGMENTER are never bundled."""


def _align(n: int) -> int:
    return (n + 3) & ~3


def bundle(msgs: list[bytes | Msg], mss: int, dnode: int | None = None) -> list[BundleMsg]:
    """Pack consecutive messages into as few BundleMsgs as fit in ``mss`` bytes each.

    A new bundle starts when the next message does not fit or has a different
    importance (the kernel only bundles within one importance backlog).  prevnode /
    orignode come from the first inner message, destnode from ``dnode`` or the
    first inner message.  ack/seqno are left 0: the link sets them on transmit.
    Raises ValueError for a message the kernel would never bundle (see
    NOT_BUNDLED_USERS, or ``mss <= 40 + size``).
    """
    out: list[BundleMsg] = []
    cur: BundleMsg | None = None
    parts: list[bytes] = []
    used = 0
    for item in msgs:
        m = item if isinstance(item, Msg) else decode(item)
        raw = m.encode() if isinstance(item, Msg) else bytes(item[: m.size])
        if m.user in NOT_BUNDLED_USERS:
            raise ValueError(f"user {m.user} messages are never bundled")
        if mss <= INT_H_SIZE + len(raw):
            raise ValueError(f"message of {len(raw)} bytes cannot be bundled at mss {mss}")
        imp = m.importance
        off = _align(used)
        if cur is None or imp != cur.importance or INT_H_SIZE + off + len(raw) > mss:
            if cur is not None:
                cur.data = b"".join(parts)
            w3 = m.w[3]
            dest = dnode if dnode is not None else m.destnode
            new = cast(BundleMsg, BundleMsg.build(6, 0, prevnode=w3, orignode=w3, destnode=dest))
            new.importance = imp
            out.append(new)
            cur = new
            parts = []
            used = off = 0
        if off > used:
            parts.append(bytes(off - used))
        parts.append(raw)
        used = off + len(raw)
        cur.msgcnt += 1
    if cur is not None:
        cur.data = b"".join(parts)
    return out


def unbundle(m: BundleMsg) -> list[Msg]:
    """Split a bundle into its decoded inner messages.

    Raises DecodeError (offsets relative to the bundle) when an inner message is
    malformed or runs past the bundle, when bytes are left over after the last
    one, or when the count differs from msgcnt.  The kernel would deliver the good
    ones before the first bad one; we refuse the whole packet so that nothing is
    half-accepted.
    """
    data = memoryview(m.data)
    n = len(data)
    base = m.hsize
    out: list[Msg] = []
    pos = 0
    end = 0
    while pos <= n - MIN_H_SIZE:
        inner = decode(data[pos:], base + pos)
        out.append(inner)
        end = pos + inner.size
        pos = _align(end)
    if end != n:
        raise DecodeError(
            "bundle", base + end, f"{n - end} bytes after the last inner message", n - end
        )
    if len(out) != m.msgcnt:
        raise DecodeError("msgcnt", base - 4, f"bundle holds {len(out)} messages", m.msgcnt)
    return out


_BUNDLE_HDR = struct.Struct(">10I")
_W0_BUNDLE = ((2 << VERSION_SHIFT) | (int(User.MSG_BUNDLER) << USER_SHIFT)
              | ((INT_H_SIZE // 4) << HSIZE_SHIFT))
_PAD = (b"", b"\x00", b"\x00\x00", b"\x00\x00\x00")


def pack_bundle(raws: list[bytes], imp: int, own_addr: int, destnode: int) -> bytes:
    """MSG_BUNDLER packet from already encoded messages, laid out exactly as
    :func:`bundle` (and the kernel) do, without decoding and re-encoding each inner
    message: the unicast link's and the broadcast link's hot path (destnode 0)."""
    parts: list[bytes] = []
    used = 0
    for r in raws:
        pad = -used & 3
        if pad:
            parts.append(_PAD[pad])
            used += pad
        parts.append(r)
        used += len(r)
    return _BUNDLE_HDR.pack(
        _W0_BUNDLE | (INT_H_SIZE + used), 0, 0, own_addr, 0, 0,
        own_addr, destnode, 0, len(raws) << MSGCNT_SHIFT | imp,
    ) + b"".join(parts)

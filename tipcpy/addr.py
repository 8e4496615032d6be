"""TIPC addresses: service/socket address tuples and 128-bit node identities.

A node is identified by a 16-byte id; its 32-bit *address* (what goes into the
prevnode/orignode header words and what ``tipc node list`` prints as "Hash") is
derived from the id with the kernel's ``hash128to32``.  The string form of an id
follows the kernel's ``tipc_nodeid2string`` so our CLI prints what ``tipc`` prints.
"""

from __future__ import annotations

from typing import NamedTuple

NODE_ID_LEN = 16
_ID_CHARS = frozenset(b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz.:_-@")


class ServiceAddr(NamedTuple):
    """{type, instance}: the name a socket is addressed by (anycast)."""

    type: int
    instance: int

    def __str__(self) -> str:
        return f"{{{self.type},{self.instance}}}"


class ServiceRange(NamedTuple):
    """{type, lower, upper}: a binding, a multicast destination or a subscription."""

    type: int
    lower: int
    upper: int

    def __str__(self) -> str:
        return f"{{{self.type},{self.lower},{self.upper}}}"

    def overlaps(self, lower: int, upper: int) -> bool:
        return self.lower <= upper and lower <= self.upper


class SocketAddr(NamedTuple):
    """{port, node}: one socket (struct tipc_socket_addr, whose port field is 'ref')."""

    port: int
    node: int

    @property
    def ref(self) -> int:
        return self.port

    def __str__(self) -> str:
        return f"{self.node:x}:{self.port}"


def hash128to32(id16: bytes) -> int:
    """32-bit node address of a 16-byte node id (kernel core.h ``hash128to32``).

    XOR of the four big-endian words; if that is 0 the OR of them, so that a
    non-zero id never maps to the invalid address 0.
    """
    if len(id16) != NODE_ID_LEN:
        raise ValueError("node id must be 16 bytes")
    a = int.from_bytes(id16[0:4], "big")
    b = int.from_bytes(id16[4:8], "big")
    c = int.from_bytes(id16[8:12], "big")
    d = int.from_bytes(id16[12:16], "big")
    return (a ^ b ^ c ^ d) or (a | b | c | d)


def node_id_is_string(id16: bytes) -> bool:
    """True if the kernel prints this id as text: every byte in [0-9A-Za-z.:_-@] or NUL."""
    return all(c in _ID_CHARS or c == 0 for c in id16)


def node_id_to_str(id16: bytes) -> str:
    """Printable form of a node id, exactly as ``tipc_nodeid2string`` makes it.

    Text ids (NUL padded) print as the text up to the first NUL; others as 32 hex
    digits with trailing '0' characters stripped (``fedcba98..3210`` -> ``..321``).
    """
    if len(id16) != NODE_ID_LEN:
        raise ValueError("node id must be 16 bytes")
    if node_id_is_string(id16):
        raw = bytes(id16)
        nul = raw.find(0)
        return (raw if nul < 0 else raw[:nul]).decode("ascii")
    return bytes(id16).hex().rstrip("0")


def node_id_from_str(s: str) -> bytes:
    """16-byte node id from its text: up to 16 characters are taken as a string id
    (NUL padded), longer text as up to 32 hex digits (right-padded with zeros, which
    undoes the stripping of node_id_to_str).  A ``0x`` prefix forces hex, which is
    needed for short hex ids such as ``0xc0a80101`` (an IPv4-derived id)."""
    if s.startswith(("0x", "0X")):
        return _hex_id(s[2:], s)
    if len(s) <= NODE_ID_LEN:
        raw = s.encode("ascii", "strict") if s.isascii() else None
        if raw is None or not all(c in _ID_CHARS for c in raw):
            raise ValueError(f"node id {s!r}: characters must be in [0-9A-Za-z.:_-@]")
        return raw + bytes(NODE_ID_LEN - len(raw))
    return _hex_id(s, s)


def _hex_id(digits: str, orig: str) -> bytes:
    if not digits or len(digits) > 2 * NODE_ID_LEN:
        raise ValueError(f"node id {orig!r}: hex form takes 1..32 hex digits")
    try:
        return bytes.fromhex(digits.ljust(2 * NODE_ID_LEN, "0"))
    except ValueError:
        raise ValueError(f"node id {orig!r}: not a string id and not hex") from None


def node_id_from_addr(addr: int) -> bytes:
    """Id the kernel assumes for a peer without TIPC_NODE_ID128: sprintf("%x", addr)."""
    s = f"{addr:x}".encode()
    return s + bytes(NODE_ID_LEN - len(s))


def addr_to_zcn(addr: int) -> str:
    """Legacy Z.C.N form (zone 8 bits, cluster 12, node 12)."""
    return f"{addr >> 24}.{(addr >> 12) & 0xFFF}.{addr & 0xFFF}"


def addr_from_zcn(s: str) -> int:
    """Parse legacy Z.C.N into a 32-bit address."""
    parts = s.split(".")
    if len(parts) != 3:
        raise ValueError(f"address {s!r}: expected Z.C.N")
    z, c, n = (int(p) for p in parts)
    if not (0 <= z <= 255 and 0 <= c <= 4095 and 0 <= n <= 4095):
        raise ValueError(f"address {s!r}: zone 0..255, cluster and node 0..4095")
    return (z << 24) | (c << 12) | n

"""Drop-in AF_TIPC sockets: ``from tipcpy import socket`` and keep CPython's TIPC code.

Why: applications written for kernel TIPC use ``socket.socket(socket.AF_TIPC, ...)`` with
CPython's address tuples and constants. This module has every TIPC name of CPython's
``socket`` module (plus the newer uapi names), re-exports the rest of the stdlib module,
and ``socket(AF_TIPC, ...)`` gives a socket served by the local ``tipcd`` (found through
``$TIPCPY_RUN_DIR``, default ``/run/tipcpy``) -- any other family gives a real stdlib
socket. Addresses are CPython's tuples:

* ``(TIPC_ADDR_NAMESEQ, type, lower, upper[, scope])`` -- a service range (bind, multicast);
* ``(TIPC_ADDR_NAME, type, instance, domain[, scope])`` -- a service address (anycast);
* ``(TIPC_ADDR_ID, node, ref, 0[, scope])`` -- a socket address; what ``getsockname``,
  ``recvfrom`` and ``accept`` return (scope 0), exactly as CPython builds it.

Errors carry the kernel's errno with a sentence saying what was wrong. ``fileno()`` is the
connection to tipcd: readable means a message (or a connection event) is waiting, so
``select``, ``selectors`` and asyncio work. A non-blocking ``connect`` completes when the
fd becomes *readable* (check ``getsockopt(SOL_SOCKET, SO_ERROR)``), not writable.
"""

from __future__ import annotations

import errno as _errno
import io as _io
import os as _os
import socket as _std
import struct as _struct
import time as _time
from collections.abc import Iterable
from typing import Any

from tipcpy import _uds as P
from tipcpy._client import CREDIT_BYTES_CONNLESS, Channel, DaemonGone, connect_daemon

# ------------------------------------------------------------------ stdlib re-export
_OWN = {"socket", "socketpair", "SocketType", "fromfd"}
globals().update({k: getattr(_std, k) for k in dir(_std)
                  if not k.startswith("__") and k not in _OWN and not k.startswith("_")})
error = _std.error
timeout = _std.timeout
getdefaulttimeout = _std.getdefaulttimeout
setdefaulttimeout = _std.setdefaulttimeout
SOCK_STREAM = _std.SOCK_STREAM
SOCK_DGRAM = _std.SOCK_DGRAM
SOCK_RDM = getattr(_std, "SOCK_RDM", 4)
SOCK_SEQPACKET = getattr(_std, "SOCK_SEQPACKET", 5)
SOCK_NONBLOCK = getattr(_std, "SOCK_NONBLOCK", 0o4000)
SOCK_CLOEXEC = getattr(_std, "SOCK_CLOEXEC", 0o2000000)
SOL_SOCKET = _std.SOL_SOCKET
SO_RCVBUF = _std.SO_RCVBUF
SO_SNDBUF = _std.SO_SNDBUF
SO_ERROR = _std.SO_ERROR
SO_TYPE = _std.SO_TYPE
MSG_PEEK = _std.MSG_PEEK
MSG_DONTWAIT = _std.MSG_DONTWAIT
MSG_TRUNC = _std.MSG_TRUNC
MSG_CTRUNC = _std.MSG_CTRUNC
MSG_WAITALL = _std.MSG_WAITALL
MSG_EOR = _std.MSG_EOR
MSG_OOB = _std.MSG_OOB
SHUT_RD, SHUT_WR, SHUT_RDWR = _std.SHUT_RD, _std.SHUT_WR, _std.SHUT_RDWR

# ------------------------------------------------------------------ TIPC constants
AF_TIPC = 30
PF_TIPC = AF_TIPC
SOL_TIPC = 271
# address types (old and new names)
TIPC_ADDR_MCAST = 1
TIPC_ADDR_NAMESEQ = 1
TIPC_SERVICE_RANGE = 1
TIPC_ADDR_NAME = 2
TIPC_SERVICE_ADDR = 2
TIPC_ADDR_ID = 3
TIPC_SOCKET_ADDR = 3
# scopes
TIPC_ZONE_SCOPE = 1
TIPC_CLUSTER_SCOPE = 2
TIPC_NODE_SCOPE = 3
# reserved service types
TIPC_NODE_STATE = 0
TIPC_CFG_SRV = 0
TIPC_TOP_SRV = 1
TIPC_LINK_STATE = 2
TIPC_ZM_SRV = 3
TIPC_RESERVED_TYPES = 64
# limits
TIPC_MAX_USER_MSG_SIZE = 66000
TIPC_NODEID_LEN = 16
TIPC_MAX_MEDIA_NAME = 16
TIPC_MAX_IF_NAME = 16
TIPC_MAX_BEARER_NAME = 32
TIPC_MAX_LINK_NAME = 68
# importance
TIPC_LOW_IMPORTANCE = 0
TIPC_MEDIUM_IMPORTANCE = 1
TIPC_HIGH_IMPORTANCE = 2
TIPC_CRITICAL_IMPORTANCE = 3
# error codes of returned messages
TIPC_OK = 0
TIPC_ERR_NO_NAME = 1
TIPC_ERR_NO_PORT = 2
TIPC_ERR_NO_NODE = 3
TIPC_ERR_OVERLOAD = 4
TIPC_CONN_SHUTDOWN = 5
# ancillary data (level SOL_TIPC)
TIPC_ERRINFO = 1
TIPC_RETDATA = 2
TIPC_DESTNAME = 3
# socket options (level SOL_TIPC)
from tipcpy.wire.consts import (  # noqa: E402 - SOL_TIPC option numbers, one definition
    TIPC_CONN_TIMEOUT,
    TIPC_DEST_DROPPABLE,
    TIPC_GROUP_JOIN,
    TIPC_GROUP_LEAVE,
    TIPC_IMPORTANCE,
    TIPC_MCAST_BROADCAST,
    TIPC_MCAST_REPLICAST,
    TIPC_NODE_RECVQ_DEPTH,
    TIPC_NODELAY,
    TIPC_SOCK_RECVQ_DEPTH,
    TIPC_SOCK_RECVQ_USED,
    TIPC_SRC_DROPPABLE,
)

TIPC_GROUP_LOOPBACK = 0x1
TIPC_GROUP_MEMBER_EVTS = 0x2
# topology service
TIPC_SUB_PORTS = 0x01
TIPC_SUB_SERVICE = 0x02
TIPC_SUB_CANCEL = 0x04
TIPC_WAIT_FOREVER = -1       # as CPython (the kernel: ~0U); mask with 0xFFFFFFFF to pack
TIPC_PUBLISHED = 1
TIPC_WITHDRAWN = 2
TIPC_SUBSCR_TIMEOUT = 3
# ioctls
SIOCGETLINKNAME = 0x89E0
SIOCGETNODEID = 0x89E1

_TIPC_TYPES = {SOCK_STREAM: "SOCK_STREAM", SOCK_DGRAM: "SOCK_DGRAM", SOCK_RDM: "SOCK_RDM",
               SOCK_SEQPACKET: "SOCK_SEQPACKET"}
_CONN_TYPES = (SOCK_STREAM, SOCK_SEQPACKET)
_SOCK_MAX = 11
_ERRINFO = _struct.Struct("=II")
_GROUP_REQ = _struct.Struct("=IIII")  # struct tipc_group_req, host byte order
_DESTNAME = _struct.Struct("=III")
_SOL_TIPC_OPTS = {TIPC_IMPORTANCE, TIPC_SRC_DROPPABLE, TIPC_DEST_DROPPABLE, TIPC_CONN_TIMEOUT,
                  TIPC_NODE_RECVQ_DEPTH, TIPC_SOCK_RECVQ_DEPTH, TIPC_MCAST_BROADCAST,
                  TIPC_MCAST_REPLICAST, TIPC_GROUP_JOIN, TIPC_GROUP_LEAVE,
                  TIPC_SOCK_RECVQ_USED, TIPC_NODELAY}
_SEND_HEAD = _struct.Struct("<IBB14s")
_SEND_HEAD_PACK = _SEND_HEAD.pack
_ADDR_PACK = P.ADDR.pack
_P_SEND = P.SEND
_P_SEND_SYNC = P.SEND_SYNC
_NO_ADDR = P.NO_ADDR
# MSG_* are IntFlag members: ``flags & MSG_PEEK`` runs enum.Flag.__and__ in Python on
# every call. The hot paths test plain ints.
_F_DONTWAIT = int(MSG_DONTWAIT)
_F_PEEK = int(MSG_PEEK)
_F_WAITALL = int(MSG_WAITALL)
_I_STREAM = int(SOCK_STREAM)
_I_SEQPACKET = int(SOCK_SEQPACKET)
_MAX_MSG = 66000


def _oserror(err: int, message: str) -> OSError:
    """OSError(errno, message) of the right subclass (BlockingIOError, ...)."""
    return OSError(err, message)


# ------------------------------------------------------------------ addresses
def parse_addr(addr: Any, caller: str = "bind") -> tuple[int, int, int, int, int]:
    """CPython AF_TIPC tuple -> (addrtype, scope, w1, w2, w3) in sockaddr_tipc order.

    Same checks and exception types as CPython's getsockaddrarg: not a tuple -> TypeError;
    not 4 or 5 unsigned ints -> TypeError; unknown addrtype -> TypeError.
    """
    if type(addr) is tuple:
        # fast path: items of exactly type int (bool, int subclasses etc. take the full
        # path, which gives the same result or the same TypeError)
        n = len(addr)
        if n == 4:
            atype, v1, v2, v3 = addr
            scope = TIPC_CLUSTER_SCOPE
            ok = type(v3) is int
        elif n == 5:
            atype, v1, v2, v3, scope = addr
            ok = type(v3) is int and type(scope) is int
            if ok:
                scope &= 0xFF
                if scope > 127:
                    scope -= 256
        else:
            ok = False
        if ok and type(atype) is int and type(v1) is int and type(v2) is int \
                and 0 < atype < 4:
            if atype == TIPC_ADDR_ID:
                return atype, scope, v2 & 0xFFFFFFFF, v1 & 0xFFFFFFFF, 0
            return atype, scope, v1 & 0xFFFFFFFF, v2 & 0xFFFFFFFF, v3 & 0xFFFFFFFF
    return _parse_addr_full(addr, caller)


def _parse_addr_full(addr: Any, caller: str) -> tuple[int, int, int, int, int]:
    if not isinstance(addr, tuple):
        raise TypeError(f"{caller}(): AF_TIPC address must be tuple, not "
                        f"{type(addr).__name__}")
    if len(addr) not in (4, 5):
        raise TypeError(f"AF_TIPC address must be a tuple (addr_type, v1, v2, v3[, scope]), "
                        f"got {len(addr)} items")
    vals = []
    for v in addr:
        if not isinstance(v, int):
            raise TypeError(f"AF_TIPC address items must be integers, not "
                            f"{type(v).__name__}")
        vals.append(int(v) & 0xFFFFFFFF)        # CPython 'I': no range check
    atype, v1, v2, v3 = vals[:4]
    scope = vals[4] if len(vals) == 5 else TIPC_CLUSTER_SCOPE
    scope &= 0xFF
    if scope > 127:
        scope -= 256                             # struct sockaddr_tipc: s8 scope
    if atype == TIPC_ADDR_NAMESEQ:
        return atype, scope, v1, v2, v3
    if atype == TIPC_ADDR_NAME:
        return atype, scope, v1, v2, v3
    if atype == TIPC_ADDR_ID:
        return atype, scope, v2, v1, 0           # tuple (node, ref) -> struct (ref, node)
    raise TypeError(f"{caller}(): invalid AF_TIPC address type {atype}")


def _addr_bytes(a: tuple[int, int, int, int, int]) -> bytes:
    return P.ADDR.pack(*a)


def _addr_tuple(raw: bytes) -> tuple[int, ...] | None:
    """14 wire bytes -> CPython's 5-tuple (as makesockaddr builds it)."""
    atype, scope, a, b, c = P.ADDR.unpack_from(raw)
    if atype == TIPC_ADDR_ID:
        return (TIPC_ADDR_ID, b, a, 0, scope & 0xFF)
    if atype == TIPC_ADDR_NAME:
        return (TIPC_ADDR_NAME, a, b, b, scope & 0xFF)
    if atype == TIPC_ADDR_NAMESEQ:
        return (TIPC_ADDR_NAMESEQ, a, b, c, scope & 0xFF)
    return None


def _sock_addr(node: int, port: int) -> tuple[int, int, int, int, int]:
    return (TIPC_ADDR_ID, node, port, 0, 0)


class GroupCongested(BlockingIOError):
    """EAGAIN from tipcd for a non-blocking group send: a destination member's window
    is full (nothing to wait for on the file descriptor; retry later)."""


class MemberAddr(tuple):  # type: ignore[type-arg]
    """The address recvfrom()/recvmsg() return on a group socket: the sending member's
    socket address ``(TIPC_ADDR_ID, node, ref, 0, 0)`` as CPython builds it, carrying
    the second address of the kernel's recvmsg (``struct tipc_group_req`` members'
    ``{type, instance}``, which CPython's own AF_TIPC parser drops) as ``.member`` =
    ``(TIPC_ADDR_NAME, type, instance, 0, 0)``."""

    member: tuple[int, int, int, int, int]

    def __new__(cls, node: int, port: int, mtype: int, instance: int) -> MemberAddr:
        t = super().__new__(cls, (TIPC_ADDR_ID, node, port, 0, 0))
        t.member = (TIPC_ADDR_NAME, mtype, instance, 0, 0)
        return t

    def __reduce__(self) -> Any:
        return (MemberAddr, (self[1], self[2], self.member[1], self.member[2]))


class _Msg:
    """One received message (or connection event) waiting to be read."""

    __slots__ = ("data", "off", "src", "errcode", "dest", "returned", "member", "evt")

    def __init__(self, data: bytes, src: tuple[int, int], errcode: int,
                 dest: tuple[int, int, int] | None, returned: bool,
                 member: tuple[int, int] | None = None, evt: int = 0) -> None:
        self.data = data
        self.off = 0
        self.src = src
        self.errcode = errcode
        self.dest = dest
        self.returned = returned
        self.member = member  # group socket: the sender's (type, instance)
        self.evt = evt  # group member event: 1 joined, 2 left


class socket:  # noqa: N801 - the stdlib's name
    """An AF_TIPC socket served by tipcd; other families get a real stdlib socket."""

    def __new__(cls, family: int = -1, type: int = -1, proto: int = -1,
                fileno: int | None = None, **kw: Any) -> Any:
        if cls is socket and family != AF_TIPC:
            if family == -1 and fileno is None:
                family = _std.AF_INET
            return _std.socket(family, type, proto, fileno)
        return object.__new__(cls)

    def __init__(self, family: int = AF_TIPC, type: int = SOCK_RDM, proto: int = -1,
                 fileno: int | None = None, *, run_dir: str | None = None,
                 _claim: tuple[Channel, int, int, int, int] | None = None) -> None:
        self._chan: Channel | None = None
        self._closed = True
        if fileno is not None:
            raise OSError(_errno.EINVAL, "AF_TIPC sockets cannot be made from a file "
                          "descriptor (tipcd serves each socket on its own connection)")
        if type == -1:
            type = SOCK_STREAM
        flags = type & (SOCK_NONBLOCK | SOCK_CLOEXEC)
        base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
        if base < 0 or base >= _SOCK_MAX:
            raise OSError(_errno.EINVAL, f"invalid socket type {type}")
        if base not in _TIPC_TYPES:
            raise OSError(_errno.EPROTOTYPE, f"AF_TIPC supports SOCK_RDM, SOCK_DGRAM, "
                          f"SOCK_SEQPACKET and SOCK_STREAM, not type {base}")
        if proto not in (-1, 0):
            raise OSError(_errno.EPROTONOSUPPORT, f"AF_TIPC has no protocol {proto}; use 0")
        self._family = AF_TIPC
        self._type = base
        self._proto = 0
        self._timeout: float | None = 0.0 if flags & SOCK_NONBLOCK else getdefaulttimeout()
        self._run_dir = run_dir
        self._node = 0
        self._port = 0
        self._connected = False
        self._connecting = False
        self._listening = False
        self._peer: tuple[int, int] | None = None
        self._eof = False
        self._conn_err = 0            # ECONNRESET etc. to raise once from recv
        self._so_error = 0
        self._shut_wr = False
        self._shut_rd = False
        self._msgs: list[_Msg] = []   # at most one partially read message (STREAM/peek)
        self._accepts: list[tuple[int, int, int]] = []
        self._good_dests: set[bytes] = set()
        self._has_default = False     # RDM/DGRAM connect(): a default destination
        self._async_sends = 0
        self._local_opts: dict[tuple[int, int], int] = {}
        self._last_dest: Any = None   # sendto's last address object, parsed and packed
        self._last_parsed: Any = None
        self._last_raw = b""
        self._group: tuple[int, int, int, int] | None = None  # joined: the tipc_group_req
        self._group_pipelined = False  # tipcpy.aio: non-blocking group sends pipelined
        if _claim is not None:
            chan, port, node, pport, pnode = _claim
            self._chan = chan
            self._port, self._node = port, node
            self._peer = (pport, pnode)
            self._connected = True
            self._closed = False
            return
        chan = Channel(connect_daemon(run_dir))
        try:
            _k, body = chan.request(P.frame(P.OPEN, P.U8.pack(base)))
        except BaseException:
            chan.close()
            raise
        self._port, self._node = P.II.unpack(body)
        if base not in _CONN_TYPES:
            # connectionless credit only frees receive buffer (see tipcpy._client)
            chan.credit_bytes = CREDIT_BYTES_CONNLESS
        self._chan = chan
        self._closed = False

    # ------------------------------------------------------------------ basics
    @property
    def family(self) -> int:
        return AF_TIPC

    @property
    def type(self) -> int:
        return self._type

    @property
    def proto(self) -> int:
        return 0

    def fileno(self) -> int:
        """The connection to tipcd (-1 once closed): readable = a message is waiting."""
        return -1 if self._closed or self._chan is None else self._chan.fd

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"port={self._port:#x} node={self._node:#x}"
        return (f"<tipcpy.socket.socket fd={self.fileno()}, family=AF_TIPC, "
                f"type={_TIPC_TYPES.get(self._type, self._type)}, {state}>")

    def __enter__(self) -> socket:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __del__(self) -> None:
        if not getattr(self, "_closed", True):
            try:
                self.close()
            except Exception:
                pass

    def close(self) -> None:
        """Close: tipcd closes the port (FIN to a connected peer, bindings withdrawn)."""
        if self._closed:
            return
        self._closed = True
        chan, self._chan = self._chan, None
        if chan is not None:
            chan.close()

    def detach(self) -> int:
        raise OSError(_errno.EOPNOTSUPP, "an AF_TIPC socket cannot be detached from tipcd")

    def settimeout(self, value: float | None) -> None:
        if value is not None:
            value = float(value)
            if value < 0:
                raise ValueError("Timeout value out of range")
        self._timeout = value

    def gettimeout(self) -> float | None:
        return self._timeout

    def setblocking(self, flag: bool) -> None:
        self._timeout = None if flag else 0.0

    def getblocking(self) -> bool:
        return self._timeout != 0.0

    def _chk(self) -> Channel:
        if self._closed or self._chan is None:
            raise OSError(_errno.EBADF, "Bad file descriptor (the socket is closed)")
        return self._chan

    def _deadline(self, flags: int = 0) -> float | None:
        if flags & _F_DONTWAIT or self._timeout == 0.0:
            return 0.0
        if self._timeout is None:
            return None
        return _time.monotonic() + self._timeout

    def _request(self, kind: int, body: bytes = b"") -> bytes:
        chan = self._chk()
        try:
            return chan.request(P.frame(kind, body))[1]
        except DaemonGone:
            raise OSError(_errno.ECONNRESET, "tipcd went away (daemon stopped?)") from None

    # ------------------------------------------------------------------ naming
    def bind(self, address: tuple[int, ...]) -> None:
        """Bind a service range/address (any number of times); negative scope = unbind."""
        a = parse_addr(address, "bind")
        self._chk()
        atype, scope = a[0], a[1]
        if atype == TIPC_ADDR_ID:
            raise OSError(_errno.EAFNOSUPPORT, "cannot bind to a socket address "
                          "(TIPC_ADDR_ID); bind a service type/instance range")
        if scope >= 0:
            if a[2] < TIPC_RESERVED_TYPES:
                raise OSError(_errno.EACCES, f"service types below {TIPC_RESERVED_TYPES} "
                              f"are reserved (got {a[2]})")
            if atype == TIPC_ADDR_NAMESEQ and a[3] > a[4]:
                raise OSError(_errno.EINVAL, f"lower {a[3]} > upper {a[4]}")
        if atype == TIPC_ADDR_NAME:
            a = (TIPC_ADDR_NAMESEQ, scope, a[2], a[3], a[3])
        self._request(P.BIND, _addr_bytes(a))

    def getsockname(self) -> tuple[int, ...]:
        self._chk()
        if not self._node:
            raw = self._request(P.SOCKNAME)
            t = _addr_tuple(raw)
            if t is not None and t[0] == TIPC_ADDR_ID:
                self._node = t[1]
        return _sock_addr(self._node, self._port)

    def getpeername(self) -> tuple[int, ...]:
        self._chk()
        self._poll_events()
        if self._type not in _CONN_TYPES or self._peer is None or not self._connected:
            raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
        return _sock_addr(self._peer[1], self._peer[0])

    # ------------------------------------------------------------------ connections
    def connect(self, address: tuple[int, ...]) -> None:
        """RDM/DGRAM: set the default destination. SEQPACKET/STREAM: connect (SYN)."""
        err = self._connect(address, raise_=True)
        if err:
            raise _oserror(err, _os.strerror(err))

    def connect_ex(self, address: tuple[int, ...]) -> int:
        try:
            return self._connect(address, raise_=False)
        except OSError as e:             # a bad tuple still raises TypeError, as CPython
            return e.errno or _errno.EIO

    def _connect(self, address: tuple[int, ...], raise_: bool) -> int:
        a = parse_addr(address, "connect")
        self._chk()
        if self._type in _CONN_TYPES:
            if self._connected:
                raise OSError(_errno.EISCONN, "already connected")
            if self._listening:
                raise OSError(_errno.EINVAL, "a listening socket cannot connect")
            if a[0] == TIPC_ADDR_NAMESEQ:
                raise OSError(_errno.EINVAL, "connect to a service address or socket "
                              "address, not a range")
            if self._connecting:
                if self._timeout == 0.0:
                    raise OSError(_errno.EALREADY, "connect already in progress")
                return self._wait_connected()
        self._request(P.CONNECT, _addr_bytes(a))
        if self._type not in _CONN_TYPES:
            self._has_default = True
            return 0
        self._connecting = True
        if self._timeout == 0.0:
            if raise_:
                raise BlockingIOError(_errno.EINPROGRESS, "Operation now in progress")
            return _errno.EINPROGRESS
        return self._wait_connected()

    def _wait_connected(self) -> int:
        deadline = self._deadline()
        while self._connecting:
            if not self._pull(deadline):
                if deadline == 0.0:
                    return _errno.EINPROGRESS
                raise TimeoutError(_errno.ETIMEDOUT, "timed out")
        if self._connected:
            return 0
        err, self._so_error = self._so_error or _errno.ECONNREFUSED, 0
        raise _oserror(err, _os.strerror(err) + " (connect)")

    def listen(self, backlog: int = 128) -> None:
        self._chk()
        if self._type not in _CONN_TYPES:
            raise OSError(_errno.EOPNOTSUPP, f"{_TIPC_TYPES[self._type]} sockets do not "
                          "listen; use SOCK_SEQPACKET or SOCK_STREAM")
        self._request(P.LISTEN, P.I32.pack(int(backlog)))
        self._listening = True

    def accept(self) -> tuple[socket, tuple[int, ...]]:
        """Wait for a connection; the new socket gets its own connection to tipcd."""
        self._chk()
        if self._type not in _CONN_TYPES:
            raise OSError(_errno.EOPNOTSUPP, f"{_TIPC_TYPES[self._type]} sockets do not "
                          "accept connections")
        if not self._listening:
            raise OSError(_errno.EINVAL, "accept() on a socket that is not listening")
        deadline = self._deadline()
        while not self._accepts:
            if not self._pull(deadline):
                if deadline == 0.0:
                    raise BlockingIOError(_errno.EAGAIN, "no connection waiting")
                raise TimeoutError(_errno.ETIMEDOUT, "timed out")
        token, pport, pnode = self._accepts.pop(0)
        chan = Channel(connect_daemon(self._run_dir))
        try:
            body = chan.request(P.frame(P.CLAIM, P.U64.pack(token)))[1]
        except BaseException:
            chan.close()
            raise
        port, node, pport, pnode = P.IIII.unpack(body)
        new = socket(AF_TIPC, self._type, 0, run_dir=self._run_dir,
                     _claim=(chan, port, node, pport, pnode))
        new._timeout = getdefaulttimeout()
        return new, _sock_addr(pnode, pport)

    def shutdown(self, how: int) -> None:
        self._chk()
        if how not in (SHUT_RD, SHUT_WR, SHUT_RDWR):
            raise OSError(_errno.EINVAL, "shutdown how must be SHUT_RD, SHUT_WR or SHUT_RDWR")
        self._request(P.SHUTDOWN, P.I32.pack(how))
        if how in (SHUT_WR, SHUT_RDWR):
            self._shut_wr = True
        if how in (SHUT_RD, SHUT_RDWR):
            self._shut_rd = True

    # ------------------------------------------------------------------ options
    def setsockopt(self, level: int, optname: int, value: Any, optlen: int | None = None
                   ) -> None:
        self._chk()
        if level == SOL_TIPC and optname == TIPC_GROUP_JOIN:
            self._join(value)
            return
        if level == SOL_TIPC and optname == TIPC_GROUP_LEAVE:
            self._request(P.GROUPLEAVE)
            self._group = None
            return
        if isinstance(value, bytes | bytearray | memoryview):
            raw = bytes(value)
            if len(raw) < 4:
                raise OSError(_errno.EINVAL, "option value must be at least 4 bytes")
            v = _struct.unpack_from("=I", raw)[0]
        elif value is None:
            raise OSError(_errno.EINVAL, "option value missing")
        else:
            v = int(value)
        if level == SOL_TIPC:
            if optname not in _SOL_TIPC_OPTS:
                raise OSError(_errno.ENOPROTOOPT, f"unknown SOL_TIPC option {optname}")
            if optname == TIPC_IMPORTANCE and not 0 <= v <= TIPC_CRITICAL_IMPORTANCE:
                raise OSError(_errno.EINVAL, "importance must be TIPC_LOW_IMPORTANCE.."
                              "TIPC_CRITICAL_IMPORTANCE (0..3)")
            self._request(P.SETOPT, P.IQ.pack(optname, v))
            return
        if level == SOL_SOCKET:
            if optname == SO_RCVBUF:
                try:
                    self._request(P.SETOPT, P.IQ.pack(optname, v))
                except OSError as e:
                    if e.errno != _errno.ENOPROTOOPT:
                        raise
            self._local_opts[(level, optname)] = v
            return
        if level == _std.IPPROTO_TCP and self._type == SOCK_STREAM:
            return                                      # the kernel ignores these too
        raise OSError(_errno.ENOPROTOOPT, f"AF_TIPC has no option level {level}")

    def _join(self, value: Any) -> None:
        """TIPC_GROUP_JOIN: ``value`` is the kernel's 16-byte ``struct tipc_group_req``
        {u32 type, instance, scope, flags} in host byte order (as C code and
        ``struct.pack("=IIII", ...)`` build it); shorter -> EINVAL as the kernel."""
        if not isinstance(value, bytes | bytearray | memoryview):
            raise OSError(_errno.EINVAL, "TIPC_GROUP_JOIN takes a struct tipc_group_req "
                          "(16 bytes: struct.pack('=IIII', type, instance, scope, flags))")
        raw = bytes(value)
        if len(raw) < _GROUP_REQ.size:
            raise OSError(_errno.EINVAL, f"struct tipc_group_req is {_GROUP_REQ.size} bytes, "
                          f"got {len(raw)}")
        req = _GROUP_REQ.unpack_from(raw)
        self._request(P.GROUPJOIN, P.IIII_GROUP.pack(*req))
        self._group = req

    def getsockopt(self, level: int, optname: int, buflen: int | None = None) -> Any:
        self._chk()
        v: int
        if level == SOL_TIPC:
            if optname not in _SOL_TIPC_OPTS:
                raise OSError(_errno.ENOPROTOOPT, f"unknown SOL_TIPC option {optname}")
            if optname in (TIPC_SOCK_RECVQ_DEPTH, TIPC_SOCK_RECVQ_USED) and self._chan:
                # tipcd counts what it delivered and we have not yet said we consumed:
                # return the batched credit first so messages already handed to the
                # application are not counted as queued.
                self._chan.send_credit()
            v = P.Q64.unpack(self._request(P.GETOPT, P.U32.pack(optname)))[0]
        elif level == SOL_SOCKET:
            if optname == SO_TYPE:
                v = self._type
            elif optname == SO_ERROR:
                self._poll_events()
                v, self._so_error = self._so_error, 0
                chan = self._chan
                if not v and chan is not None and chan.asyncerr is not None:
                    v = chan.asyncerr[0]
                    chan.asyncerr = None
                    self._good_dests.clear()
            elif optname == getattr(_std, "SO_DOMAIN", 39):
                v = AF_TIPC
            elif optname == getattr(_std, "SO_PROTOCOL", 38):
                v = 0
            elif optname == getattr(_std, "SO_ACCEPTCONN", 30):
                v = int(self._listening)
            elif optname == SO_RCVBUF:
                try:
                    v = P.Q64.unpack(self._request(P.GETOPT, P.U32.pack(optname)))[0]
                except OSError:
                    v = self._local_opts.get((level, optname), 2 * 1024 * 1024)
            else:
                v = self._local_opts.get((level, optname), 0)
        else:
            raise OSError(_errno.ENOPROTOOPT, f"AF_TIPC has no option level {level}")
        if buflen is None:
            return int(v)
        return _struct.pack("=I", v & 0xFFFFFFFF)[:buflen]

    # ------------------------------------------------------------------ sending
    def send(self, data: Any, flags: int = 0) -> int:
        return self._send(data, None, flags)

    def sendto(self, data: Any, flags_or_addr: Any, address: Any = None) -> int:
        if address is None:
            flags, address = 0, flags_or_addr
        else:
            flags = flags_or_addr
        if address is self._last_dest:
            # the same tuple object as last time (tuples are immutable; we hold it)
            return self._send(data, self._last_parsed, flags, self._last_raw)
        a = parse_addr(address, "sendto")
        raw = _ADDR_PACK(*a)
        self._last_dest, self._last_parsed, self._last_raw = address, a, raw
        return self._send(data, a, flags, raw)

    def sendall(self, data: Any, flags: int = 0) -> None:
        mv = memoryview(data).cast("B")
        if self._type != SOCK_STREAM:
            self._send(mv, None, flags)
            return
        off = 0
        while off < len(mv):
            off += self._send(mv[off:], None, flags)

    def sendmsg(self, buffers: Iterable[Any], ancdata: Iterable[Any] = (), flags: int = 0,
                address: Any = None) -> int:
        data = b"".join(bytes(b) for b in buffers)
        if list(ancdata):
            raise OSError(_errno.EINVAL, "AF_TIPC takes no ancillary data on send")
        a = parse_addr(address, "sendmsg") if address is not None else None
        return self._send(data, a, flags)

    def _send(self, data: Any, addr: tuple[int, int, int, int, int] | None, flags: int,
              raw: bytes | None = None) -> int:
        chan = self._chan
        if self._closed or chan is None:
            raise OSError(_errno.EBADF, "Bad file descriptor (the socket is closed)")
        if not isinstance(data, bytes):
            data = memoryview(data).cast("B")
        n = len(data)
        st = self._type
        if chan.asyncerr is None and self._async_sends >= 256:
            self._async_sends = 0
            found = chan.scan_asyncerr()
            if found is not None:
                chan.asyncerr = found
        if chan.asyncerr is not None:
            self._raise_asyncerr()
        if n > _MAX_MSG:
            if st == _I_STREAM and addr is None:
                data, n = data[:_MAX_MSG], _MAX_MSG
            else:
                raise OSError(_errno.EMSGSIZE, f"message of {n} bytes; TIPC carries at most "
                              f"{TIPC_MAX_USER_MSG_SIZE}")
        conn = st == _I_STREAM or st == _I_SEQPACKET
        if conn:
            if self._listening:
                raise OSError(_errno.EPIPE, "cannot send on a listening socket")
            if not self._async_sends & 63:
                self._poll_events()        # notice a peer's close without a syscall per send
            if self._shut_wr or (self._connected is False and (self._eof or self._conn_err)):
                raise OSError(_errno.EPIPE, "Broken pipe (the connection is closed)")
            if addr is not None and self._connected:
                raise OSError(_errno.EISCONN, "sendto with an address on a connected socket")
            if addr is None and not self._connected:
                if self._connecting:
                    self._wait_connected()
                else:
                    raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
            if addr is not None and addr[0] == TIPC_ADDR_NAMESEQ:
                raise OSError(_errno.EINVAL, "a connection cannot be opened to a range")
        elif self._group is not None:
            return self._send_group(chan, data, n, addr, flags, raw)
        elif addr is None and not self._has_default:
            raise OSError(_errno.EDESTADDRREQ, "no destination: use sendto() or connect() "
                          "first")
        if addr is not None:
            if raw is None:
                raw = _ADDR_PACK(*addr)
            sync = raw not in self._good_dests
            implicit = conn
        else:
            raw = _NO_ADDR
            sync = implicit = False
        head = _SEND_HEAD_PACK(n + 16, _P_SEND, _P_SEND_SYNC if sync else 0, raw)
        timeout = self._timeout
        try:
            if flags & _F_DONTWAIT or timeout == 0.0:
                chan.write(head, data, None, True)
            elif timeout is None:
                chan.write(head, data, None, False)
            else:
                chan.write(head, data, _time.monotonic() + timeout, False)
        except DaemonGone:
            raise OSError(_errno.ECONNRESET, "tipcd went away (daemon stopped?)") from None
        if sync:
            chan.wait_reply(None)
            if not implicit:
                if len(self._good_dests) > 256:
                    self._good_dests.clear()
                self._good_dests.add(raw)
        else:
            self._async_sends += 1
        if implicit:
            self._connecting = True
            if n and self._timeout != 0.0:
                self._wait_connected()
        return n

    def _send_group(self, chan: Channel, data: Any, n: int,
                    addr: tuple[int, int, int, int, int] | None, flags: int,
                    raw: bytes | None) -> int:
        """A group member's send: no address = broadcast, TIPC_ADDR_NAME = anycast,
        TIPC_ADDR_ID = unicast, TIPC_ADDR_NAMESEQ = multicast (tipcd's Group decides).
        Blocking: waits while a destination's window is full (tipcd stops reading us).
        Non-blocking: asked synchronously, EAGAIN when tipcd cannot take it now."""
        if raw is None:
            raw = _ADDR_PACK(*addr) if addr is not None else _NO_ADDR
        nowait = bool(flags & _F_DONTWAIT) or self._timeout == 0.0
        known = raw in self._good_dests
        pipelined = False
        if nowait and known and self._group_pipelined:
            # tipcpy.aio: pipelined like RDM; when the window is full tipcd stops
            # reading us and the write itself gets EAGAIN (the loop waits for POLLOUT)
            nowait, pipelined = False, True
        sync = nowait or not known
        sflags = (_P_SEND_SYNC if sync else 0) | (P.SEND_NOWAIT if nowait else 0)
        head = _SEND_HEAD_PACK(n + 16, _P_SEND, sflags, raw)
        timeout = self._timeout
        try:
            if nowait or pipelined:
                chan.write(head, data, None, True)
            elif timeout is None:
                chan.write(head, data, None, False)
            else:
                chan.write(head, data, _time.monotonic() + timeout, False)
            if sync:
                try:
                    chan.wait_reply(None)
                except OSError as e:
                    if e.errno == _errno.EAGAIN:
                        raise GroupCongested(_errno.EAGAIN, str(e.strerror or e)) from None
                    raise
                if not nowait or self._group_pipelined:
                    if len(self._good_dests) > 256:
                        self._good_dests.clear()
                    self._good_dests.add(raw)
            else:
                self._async_sends += 1
        except DaemonGone:
            raise OSError(_errno.ECONNRESET, "tipcd went away (daemon stopped?)") from None
        return n

    # ------------------------------------------------------------------ receiving
    def _on_frame(self, kind: int, body: bytes) -> None:
        if kind == P.E_DATA:
            sp, sn, err, dt, dl, du, fl = P.DATA_HDR.unpack_from(body)
            if fl & P.DATA_GROUP:
                self._msgs.append(_Msg(body[P.DATA_HDR.size:], (sp, sn), 0, None, False,
                                       (dt, dl), du))
                return
            dest = (dt, dl, du) if fl & P.DATA_HAS_DEST else None
            self._msgs.append(_Msg(body[P.DATA_HDR.size:], (sp, sn), err, dest,
                                   bool(fl & P.DATA_RETURNED)))
        elif kind == P.E_CONNECTED:
            pport, pnode = P.II.unpack(body)
            self._peer = (pport, pnode)
            self._connected = True
            self._connecting = False
        elif kind == P.E_CONNERR:
            err = P.I32.unpack(body)[0]
            was_connected = self._connected
            self._connected = False
            if self._connecting:
                self._connecting = False
                self._so_error = err or _errno.ECONNREFUSED
            elif err and was_connected:
                self._conn_err = err
                self._so_error = err
            else:
                self._eof = True
            if not err:
                self._eof = True
        elif kind == P.E_ACCEPTED:
            self._accepts.append(P.QII.unpack(body))
        elif kind == P.E_ASYNCERR:
            assert self._chan is not None
            self._chan.asyncerr = (P.I32.unpack_from(body)[0],
                                   body[4:].decode("utf-8", "replace"))
        elif kind == P.R_ERR:
            pass

    def _pull(self, deadline: float | None) -> bool:
        """Take one frame from tipcd and apply it; False if none before the deadline."""
        chan = self._chk()
        try:
            fr = chan.next_event(deadline)
        except DaemonGone:
            self._daemon_gone()
            return True
        if fr is None:
            return False
        self._on_frame(*fr)
        return True

    def _daemon_gone(self) -> None:
        if self._type in _CONN_TYPES and (self._connected or self._connecting):
            self._connected = self._connecting = False
            self._conn_err = _errno.ECONNRESET
            self._so_error = _errno.ECONNRESET
        elif not self._conn_err:
            raise OSError(_errno.ECONNRESET, "tipcd went away (daemon stopped?)")

    def _poll_events(self) -> None:
        """Apply connection events that are already waiting (never blocks)."""
        chan = self._chan
        if chan is None:
            return
        while not self._msgs and chan.readable_now():
            if not self._pull(0.0):
                break
            if self._msgs:
                break

    def _next_msg(self, flags: int) -> _Msg | None:
        """The message to read from (None = orderly EOF); raises on errors/timeouts."""
        self._chk()
        if self._shut_rd and self._type in _CONN_TYPES and not self._msgs:
            return None
        deadline = self._deadline(flags)
        while not self._msgs:
            if self._conn_err:
                err, self._conn_err = self._conn_err, 0
                self._eof = True
                raise _oserror(err, _os.strerror(err))
            if self._eof and self._type in _CONN_TYPES:
                return None
            if self._listening:
                raise OSError(_errno.ENOTCONN, "recv on a listening socket")
            if (self._type in _CONN_TYPES and not self._connected and not self._connecting):
                raise OSError(_errno.ENOTCONN, "Transport endpoint is not connected")
            if not self._pull(deadline):
                if deadline == 0.0:
                    raise BlockingIOError(_errno.EAGAIN, "Resource temporarily unavailable")
                raise TimeoutError(_errno.ETIMEDOUT, "timed out")
            self._raise_asyncerr()
        return self._msgs[0]

    def _raise_asyncerr(self) -> None:
        """A pipelined send failed in tipcd: raise it now (like a pending SO_ERROR)."""
        chan = self._chan
        if chan is not None and chan.asyncerr is not None:
            err, msg = chan.asyncerr
            chan.asyncerr = None
            self._good_dests.clear()
            raise OSError(err, msg + " (an earlier send failed)")

    def _recv_impl(self, bufsize: int, flags: int, anc: bool
                   ) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[int, ...] | None]:
        if bufsize < 0:
            raise ValueError("negative buffersize in recv")
        m = self._next_msg(flags)
        if m is None:
            return b"", [], 0, None
        peek = bool(flags & _F_PEEK)
        if m.member is not None:
            return self._recv_group(m, bufsize, peek)
        addr = _sock_addr(m.src[1], m.src[0])
        msg_flags = 0
        ancdata: list[tuple[int, int, bytes]] = []
        if m.errcode:
            if self._type in _CONN_TYPES:
                if m.errcode == TIPC_CONN_SHUTDOWN and not anc:
                    if not peek:
                        self._msgs.pop(0)
                        self._eof = True
                        self._connected = False
                    return b"", [], 0, addr
                if not anc:
                    if not peek:
                        self._msgs.pop(0)
                        self._eof = True
                        self._connected = False
                    raise OSError(_errno.ECONNRESET, "Connection reset by peer")
            ancdata.append((SOL_TIPC, TIPC_ERRINFO, _ERRINFO.pack(m.errcode, len(m.data))))
            if m.data:
                ancdata.append((SOL_TIPC, TIPC_RETDATA, m.data))
            if m.dest is not None:
                ancdata.append((SOL_TIPC, TIPC_DESTNAME, _DESTNAME.pack(*m.dest)))
            if not peek:
                self._msgs.pop(0)
                assert self._chan is not None
                self._chan.credit(len(m.data))
                if self._type in _CONN_TYPES:
                    self._eof = True
                    self._connected = False
            return b"", ancdata, msg_flags, addr
        if m.dest is not None and anc:
            ancdata.append((SOL_TIPC, TIPC_DESTNAME, _DESTNAME.pack(*m.dest)))
        avail = len(m.data) - m.off
        if self._type == SOCK_STREAM:
            data = m.data[m.off:m.off + bufsize]
            if not peek:
                m.off += len(data)
                assert self._chan is not None
                if m.off >= len(m.data):
                    self._msgs.pop(0)
                    self._chan.credit(len(m.data))
            return data, ancdata, msg_flags, addr
        data = m.data[:bufsize]
        if avail > bufsize:
            msg_flags |= MSG_TRUNC
        if not peek:
            self._msgs.pop(0)
            assert self._chan is not None
            self._chan.credit(len(m.data))
        return data, ancdata, msg_flags, addr

    def _recv_group(self, m: _Msg, bufsize: int, peek: bool
                    ) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[int, ...]]:
        """A group message or member event (kernel recvmsg on a group socket): events
        are empty with MSG_OOB, plus MSG_EOR when the member left; the address carries
        the member's {type, instance} (MemberAddr.member)."""
        assert m.member is not None
        addr = MemberAddr(m.src[1], m.src[0], m.member[0], m.member[1])
        mflags = 0
        if m.evt:
            data = b""
            mflags = int(MSG_OOB) | (int(MSG_EOR) if m.evt == 2 else 0)
        else:
            data = m.data[:bufsize]
            if len(m.data) > bufsize:
                mflags |= int(MSG_TRUNC)
        if not peek:
            self._msgs.pop(0)
            assert self._chan is not None
            self._chan.credit(len(m.data) if not m.evt else 0)
        return data, [], mflags, addr

    def _recv_fast(self, bufsize: int) -> tuple[bytes, int, int] | None:
        """recv/recvfrom without flags on RDM/DGRAM when the next frame is a plain data
        message already in the channel's peek window: ``(data, src_node, src_port)``,
        exactly what _recv_impl would return for it; None = take the general path
        (nothing is consumed then). Skips _Msg, the pending list and the frame dispatch."""
        chan = self._chan
        if (chan is None or self._closed or self._msgs or chan.asyncerr is not None
                or bufsize < 0 or self._type in _CONN_TYPES or self._group is not None):
            return None
        fr = chan.take_data()
        if fr is None:
            return None
        data = fr[0]
        chan.credit(len(data))
        return data[:bufsize], fr[2], fr[1]

    def recv(self, bufsize: int, flags: int = 0) -> bytes:
        if not flags:
            fast = self._recv_fast(bufsize)
            if fast is not None:
                return fast[0]
        data = self._recv_impl(bufsize, flags, False)[0]
        if flags & _F_WAITALL and self._type == SOCK_STREAM:
            parts = [data]
            got = len(data)
            while got < bufsize and data:
                data = self._recv_impl(bufsize - got, flags & ~_F_PEEK, False)[0]
                parts.append(data)
                got += len(data)
            data = b"".join(parts)
        return data

    def recvfrom(self, bufsize: int, flags: int = 0) -> tuple[bytes, tuple[int, ...] | None]:
        if not flags:
            fast = self._recv_fast(bufsize)
            if fast is not None:
                return fast[0], (TIPC_ADDR_ID, fast[1], fast[2], 0, 0)
        data, _a, _f, addr = self._recv_impl(bufsize, flags, False)
        return data, addr

    def recv_into(self, buffer: Any, nbytes: int = 0, flags: int = 0) -> int:
        mv = memoryview(buffer).cast("B")
        n = nbytes or len(mv)
        data = self._recv_impl(n, flags, False)[0]
        mv[:len(data)] = data
        return len(data)

    def recvfrom_into(self, buffer: Any, nbytes: int = 0, flags: int = 0
                      ) -> tuple[int, tuple[int, ...] | None]:
        mv = memoryview(buffer).cast("B")
        n = nbytes or len(mv)
        data, _a, _f, addr = self._recv_impl(n, flags, False)
        mv[:len(data)] = data
        return len(data), addr

    def recvmsg(self, bufsize: int, ancbufsize: int = 0, flags: int = 0
                ) -> tuple[bytes, list[tuple[int, int, bytes]], int, tuple[int, ...] | None]:
        """As CPython: (data, [(SOL_TIPC, TIPC_ERRINFO|TIPC_RETDATA|TIPC_DESTNAME, bytes)],
        msg_flags, address). Ancillary items that do not fit ``ancbufsize`` are dropped and
        MSG_CTRUNC is set, as the kernel does."""
        data, anc, mflags, addr = self._recv_impl(bufsize, flags, ancbufsize > 0)
        out: list[tuple[int, int, bytes]] = []
        room = ancbufsize
        for item in anc:
            need = _std.CMSG_SPACE(len(item[2]))
            if need > room:
                mflags |= MSG_CTRUNC
                break
            out.append(item)
            room -= need
        return data, out, mflags, addr

    # ------------------------------------------------------------------ misc
    def pending(self) -> bool:
        """Messages/events already read from tipcd and waiting here (fd may not show it)."""
        chan = self._chan
        return bool(self._msgs or self._accepts or (chan is not None and chan.pending()))

    def makefile(self, mode: str = "r", buffering: int | None = None, *,
                 encoding: str | None = None, errors: str | None = None,
                 newline: str | None = None) -> Any:
        """A file object over a STREAM socket (as socket.makefile)."""
        if self._type != SOCK_STREAM:
            raise OSError(_errno.EOPNOTSUPP, "makefile() needs a SOCK_STREAM socket")
        if not set(mode) <= {"r", "w", "b"}:
            raise ValueError(f"invalid mode {mode!r} (only r, w, b allowed)")
        reading = "r" in mode
        writing = "w" in mode
        binary = "b" in mode
        raw = _SocketIO(self, ("r" if reading else "") + ("w" if writing else ""))
        if buffering is None:
            buffering = -1
        if buffering < 0:
            buffering = _io.DEFAULT_BUFFER_SIZE
        if buffering == 0:
            if not binary:
                raise ValueError("unbuffered streams must be binary")
            return raw
        buf: Any
        if reading and writing:
            buf = _io.BufferedRWPair(raw, raw, buffering)
        elif reading:
            buf = _io.BufferedReader(raw, buffering)
        else:
            buf = _io.BufferedWriter(raw, buffering)
        if binary:
            return buf
        text = _io.TextIOWrapper(buf, encoding, errors, newline)
        text.mode = mode  # type: ignore[misc]
        return text


class _SocketIO(_io.RawIOBase):
    """Raw I/O over a tipcpy STREAM socket (for makefile)."""

    def __init__(self, sock: socket, mode: str) -> None:
        super().__init__()
        self._sock = sock
        self._mode = mode

    def readinto(self, b: Any) -> int:
        return self._sock.recv_into(b)

    def write(self, b: Any) -> int:
        self._sock.sendall(b)
        return len(memoryview(b).cast("B"))

    def readable(self) -> bool:
        return "r" in self._mode

    def writable(self) -> bool:
        return "w" in self._mode

    def fileno(self) -> int:
        return self._sock.fileno()


SocketType = socket


def socketpair(family: int | None = None, type: int = SOCK_STREAM, proto: int = 0, *,
               run_dir: str | None = None) -> tuple[Any, Any]:
    """AF_TIPC: two sockets of ``type`` connected to each other on this node (as the
    kernel's tipc_socketpair); any other family: the stdlib's socketpair."""
    if family != AF_TIPC:
        if family is None:
            return _std.socketpair()
        return _std.socketpair(family, type, proto)
    base = type & ~(SOCK_NONBLOCK | SOCK_CLOEXEC)
    if base in _CONN_TYPES:
        lst = socket(AF_TIPC, base, run_dir=run_dir)
        try:
            lst.listen(1)
            a = socket(AF_TIPC, base, run_dir=run_dir)
            try:
                a.connect(lst.getsockname())
                b, _ = lst.accept()
            except BaseException:
                a.close()
                raise
        finally:
            lst.close()
    else:
        a = socket(AF_TIPC, base, run_dir=run_dir)
        b = socket(AF_TIPC, base, run_dir=run_dir)
        a.connect(b.getsockname())
        b.connect(a.getsockname())
    if type & SOCK_NONBLOCK:
        a.setblocking(False)
        b.setblocking(False)
    return a, b


def fromfd(fd: int, family: int, type: int, proto: int = 0) -> Any:
    if family == AF_TIPC:
        raise OSError(_errno.EINVAL, "AF_TIPC sockets cannot be made from a file descriptor")
    return _std.fromfd(fd, family, type, proto)

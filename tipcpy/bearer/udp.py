"""UDP bearer (media ``udp``) for the asyncio runtime — kernel ``udp_media.c`` semantics.

* One UDP socket per bearer; every datagram is exactly one TIPC packet (no encapsulation).
* Unicast/"replicast" mode (a ``remoteip`` was given): bound to ``localip:localport``;
  a "broadcast" packet (destination ``None``) is sent as one copy per known remote, and a
  LINK_CONFIG from an unknown source adds that source to the remotes — so only one side of
  a pair has to be told about the other, like the kernel's ``tipc_udp_rcast_disc``.
* Multicast mode (no ``remoteip``): bound to ``INADDR_ANY:localport`` (``[::]`` for IPv6),
  joined to ``228.0.(netid>>8).(netid&255)`` / ``ff02::<netid>`` on the interface that owns
  ``localip``; broadcasts go to the group. Only used inside network namespaces in tests.
* MTU: 14000 for IPv4 (relying on IP fragmentation, as the kernel does), 1280 for IPv6.

Reading: Python has no ``recvmmsg``; the reader callback drains every datagram available
on the socket (up to a bound) and hands them to the runtime as one batch, so the Stack's
transmits are flushed once per wakeup instead of once per packet.
Sending never awaits: ``sendto`` on a non-blocking socket; if the kernel buffer is full the
packet waits in a short queue flushed when the socket becomes writable, and beyond that it
is dropped and counted (the TIPC link retransmits).
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import os
import socket
import struct
import sys
from typing import Any

from tipcpy.wire.consts import TIPC_MEDIA_TYPE_UDP, User
from tipcpy.wire.msg import USER_MASK, USER_SHIFT, VERSION_MASK, VERSION_SHIFT

from .base import (
    LINK_CONFIG_BYTE0,
    MEDIA_TYPE_OFFSET,
    USER_BYTE0_MASK,
    Bearer,
    BearerError,
    QueuedSender,
    einval,
)

_LINK_CONFIG = int(User.LINK_CONFIG)
_AF_INET = socket.AF_INET

UDP_PORT_DEFAULT = 6118
MTU_IPV4 = 14000
MTU_IPV6 = 1280
_READ_BATCH = 512          # datagrams drained per wakeup before yielding to the loop
_SOCKBUF = 4 * 1024 * 1024
# not in Python 3.11's socket module; these are Linux's generic numbers
_LINUX = sys.platform.startswith("linux")
_SO_RCVBUFFORCE: int | None = getattr(socket, "SO_RCVBUFFORCE", 33 if _LINUX else None)
_SO_SNDBUFFORCE: int | None = getattr(socket, "SO_SNDBUFFORCE", 32 if _LINUX else None)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def parse_ip(text: str, what: str = "IP address") -> IPAddress:
    """Parse an IP literal, or raise a BearerError that says which argument was wrong."""
    try:
        return ipaddress.ip_address(str(text).split("%", 1)[0])
    except ValueError:
        raise einval(f"invalid {what} '{text}': expected an IPv4 or IPv6 address") from None


def parse_port(value: Any, what: str = "port") -> int:
    try:
        port = int(value)
    except (TypeError, ValueError):
        raise einval(f"invalid {what} '{value}': expected a number 1-65535") from None
    if not 0 < port < 65536:
        raise einval(f"invalid {what} {port}: expected 1-65535")
    return port


def multicast_group(netid: int, v6: bool) -> IPAddress:
    """The group iproute2 derives from the network id (``generate_multicast``)."""
    if v6:
        return ipaddress.IPv6Address(f"ff02::{netid}")
    return ipaddress.IPv4Address(f"228.0.{(netid >> 8) & 0xFF}.{netid & 0xFF}")


def _ifindex_for_ip(ip: IPAddress) -> int:
    """Interface index owning ``ip`` (needed to join a link-local IPv6 group); 0 if unknown."""
    try:
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            for msg in ipr.get_addr(family=socket.AF_INET6 if ip.version == 6 else socket.AF_INET):
                if msg.get_attr("IFA_ADDRESS") == str(ip):
                    return int(msg["index"])
    except Exception:  # pyroute2 missing or netlink refused: fall back to the default iface
        return 0
    return 0


def _size_buffers(sock: socket.socket) -> None:
    """4 MB socket buffers each way: a link window of 50 packets of 14000 bytes is
    700 KB in flight, far more than the usual 208 KB default, a UDP receive buffer
    that overflows drops packets the link must then retransmit after a gap, and a
    cluster's start-up burst (every peer's discovery, RESET, ACTIVATE and name bulk
    within a few ms) lost set-up packets at the default with 64 daemons. The plain
    options are capped by net.core.[rw]mem_max (often 208 KB); the FORCE variants pass
    that cap where we may (CAP_NET_ADMIN, e.g. tipcd as root), else the plain ones."""
    for force, plain in ((_SO_RCVBUFFORCE, socket.SO_RCVBUF),
                         (_SO_SNDBUFFORCE, socket.SO_SNDBUF)):
        for opt in (force, plain):
            if opt is None:
                continue
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, _SOCKBUF)
                break
            except OSError:
                continue


def _looks_like_link_config(data: bytes) -> bool:
    """Just enough decoding to recognise a discovery packet from an unknown source.

    w0: version in bits 31..29 (must be 2), user in bits 28..25 (LINK_CONFIG = 13).
    The full decode (and its validation) is the Stack's job.
    """
    if len(data) < 40:
        return False
    w0: int = struct.unpack_from("!I", data)[0]
    return ((w0 >> VERSION_SHIFT) & VERSION_MASK == 2
            and (w0 >> USER_SHIFT) & USER_MASK == _LINK_CONFIG)


def socket_drops(sock: socket.socket | None) -> int | None:
    """Datagrams the kernel dropped on this socket's receive queue (the ``drops``
    column of /proc/net/udp[6] in the socket's namespace), None if unknown."""
    if sock is None:
        return None
    try:
        ino = str(os.fstat(sock.fileno()).st_ino)
        name = "udp6" if sock.family == socket.AF_INET6 else "udp"
        with open(f"/proc/self/net/{name}") as f:
            next(f)
            for line in f:
                cols = line.split()
                if len(cols) > 12 and cols[9] == ino:
                    return int(cols[-1])
    except (OSError, ValueError, StopIteration):
        return None
    return None


class UdpBearer(QueuedSender, Bearer):
    """A TIPC bearer on one UDP socket (see the module docstring for the two modes)."""

    MEDIA_NAME = "udp"
    MEDIA_TYPE = TIPC_MEDIA_TYPE_UDP

    def __init__(self, name: str, localip: str, localport: Any = UDP_PORT_DEFAULT,
                 remoteip: str | None = None, remoteport: Any = UDP_PORT_DEFAULT,
                 netid: int = 4711, mtu: int | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        prefix = f"{self.MEDIA_NAME}:"
        bname = name if name.startswith(prefix) else prefix + name
        if not bname[len(prefix):]:
            raise einval("missing bearer name")
        self.localip = parse_ip(localip, "localip")
        self.localport = parse_port(localport, "localport")
        self.remoteport = parse_port(remoteport, "remoteport")
        self.netid = netid
        if remoteip is None:
            self.remoteip = multicast_group(netid, self.localip.version == 6)
        else:
            self.remoteip = parse_ip(remoteip, "remoteip")
        if self.remoteip.version != self.localip.version:
            raise einval(f"local IP {self.localip} and remote IP {self.remoteip} are of "
                         "different address families; use both IPv4 or both IPv6")
        self.multicast = self.remoteip.is_multicast
        if self.localip.is_multicast or self.localip.is_unspecified:
            raise einval(f"localip {self.localip} must be a unicast address of this host")
        v6 = self.localip.version == 6
        super().__init__(name=bname, media=self.MEDIA_NAME, mtu=mtu or (MTU_IPV6 if v6 else MTU_IPV4))
        self.family = socket.AF_INET6 if v6 else socket.AF_INET
        self.remotes: list[tuple[str, int]] = []
        if not self.multicast:
            self.remotes.append((str(self.remoteip), self.remoteport))
        self._loop = loop
        self._sock: socket.socket | None = None
        self._init_sendq()
        self._ifindex = 0

    # -- setup --------------------------------------------------------------------------
    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Create, configure and bind the socket; register the reader on the loop.

        Raises BearerError with a precise errno/message (busy port, address not on this
        host, permission) and leaves nothing behind on failure.
        """
        self._loop = loop or self._loop or asyncio.get_event_loop()
        sock = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            sock.setblocking(False)
            _size_buffers(sock)
            if self.multicast:
                self._setup_multicast(sock)
            else:
                self._bind(sock, (self._sockaddr(self.localip, self.localport)))
        except BaseException:
            sock.close()
            raise
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def _sockaddr(self, ip: IPAddress | str, port: int) -> tuple[Any, ...]:
        if self.family == socket.AF_INET6:
            return (str(ip), port, 0, self._ifindex)
        return (str(ip), port)

    def _bind(self, sock: socket.socket, addr: tuple[Any, ...]) -> None:
        try:
            sock.bind(addr)
        except OSError as e:
            where = f"{addr[0]}:{addr[1]}" if self.family == socket.AF_INET else f"[{addr[0]}]:{addr[1]}"
            if e.errno == errno.EADDRINUSE:
                raise BearerError(errno.EADDRINUSE, f"UDP {where} is already in use (another "
                                  "bearer or program has it); choose another localport") from None
            if e.errno == errno.EADDRNOTAVAIL:
                raise BearerError(errno.EADDRNOTAVAIL, f"localip {addr[0]} is not an address "
                                  "of this host") from None
            if e.errno == errno.EACCES:
                raise BearerError(errno.EACCES, f"not permitted to bind UDP {where}") from None
            raise BearerError(e.errno or errno.EIO, f"cannot bind UDP {where}: {e.strerror}") from None

    def _check_local(self) -> None:
        """Multicast mode binds the wildcard address, so prove ``localip`` is ours first
        (otherwise the join fails later with a baffling ENODEV)."""
        probe = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            probe.bind((str(self.localip), 0))
        except OSError as e:
            if e.errno == errno.EADDRNOTAVAIL:
                raise BearerError(errno.EADDRNOTAVAIL, f"localip {self.localip} is not an "
                                  "address of this host") from None
        finally:
            probe.close()

    def _setup_multicast(self, sock: socket.socket) -> None:
        self._check_local()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        group = self.remoteip
        if self.family == socket.AF_INET:
            self._bind(sock, ("0.0.0.0", self.localport))
            local = socket.inet_aton(str(self.localip))
            mreq = socket.inet_aton(str(group)) + local
            try:
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            except OSError as e:
                raise BearerError(e.errno or errno.EIO, f"cannot join multicast group {group} "
                                  f"on {self.localip}: {e.strerror}") from None
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, local)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        else:
            self._ifindex = _ifindex_for_ip(self.localip)
            self._bind(sock, ("::", self.localport, 0, 0))
            mreq = group.packed + struct.pack("@I", self._ifindex)
            try:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
            except OSError as e:
                raise BearerError(e.errno or errno.EIO, f"cannot join multicast group {group} "
                                  f"on {self.localip}: {e.strerror}") from None
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, self._ifindex)
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)

    # -- peers --------------------------------------------------------------------------
    def add_remote(self, ip: str, port: Any = UDP_PORT_DEFAULT) -> None:
        """Add a replicast destination (``tipc bearer add ... remoteip``)."""
        if self.multicast:
            raise einval(f"bearer {self.name} is in multicast mode; remote IPs can only be "
                         "added to a bearer enabled with a unicast remoteip")
        addr = parse_ip(ip, "remoteip")
        if addr.version != self.localip.version:
            raise einval(f"remote IP {addr} is not of the bearer's address family "
                         f"(localip {self.localip})")
        if addr.is_multicast:
            raise einval(f"remoteip {addr} is a multicast address; give a unicast peer")
        peer = (str(addr), parse_port(port, "remoteport"))
        if peer not in self.remotes:
            self.remotes.append(peer)

    def media_addr(self) -> tuple[str, int]:
        """What we advertise in discovery: our reachable local ip:port."""
        return (str(self.localip), self.localport)

    # -- I/O ----------------------------------------------------------------------------
    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        batch: list[tuple[bytes, Any]] = []
        append = batch.append
        recvfrom = sock.recvfrom
        multicast = self.multicast
        v4 = self.family == socket.AF_INET
        own = (str(self.localip), self.localport) if multicast else None
        remotes = self.remotes
        nbytes = 0
        for _ in range(_READ_BATCH):
            try:
                data, src = recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                # ICMP errors surface here as ECONNREFUSED etc.; they say nothing useful
                self.counters.rx_errors += 1
                continue
            if (len(data) > MEDIA_TYPE_OFFSET and data[0] & USER_BYTE0_MASK == LINK_CONFIG_BYTE0
                    and data[MEDIA_TYPE_OFFSET] != TIPC_MEDIA_TYPE_UDP):
                # discovery advertising an eth/ib/unknown address: unusable here (the
                # kernel's tipc_udp_msg2addr refuses it too); base.foreign_media inlined
                self.counters.rx_bad_media += 1
                continue
            # IPv4 sources already are (ip, port); IPv6 ones carry flowinfo/scope
            peer = src if v4 else (src[0].split("%", 1)[0], src[1])
            if multicast:
                if peer == own:
                    continue        # our own multicast looped back
            elif peer not in remotes and _looks_like_link_config(data):
                remotes.append(peer)
                self.counters.learned_peers += 1
            nbytes += len(data)
            append((data, peer))
        if batch:
            # Bearer._deliver, without a second pass over the batch for the counters
            self.counters.rx_packets += len(batch)
            self.counters.rx_bytes += nbytes
            self._hand_over(batch)

    def send(self, dest: tuple[str, int] | None, data: bytes) -> None:
        """Send one packet to ``dest`` (ip, port), or "broadcast" it if ``dest`` is None."""
        sock = self._sock
        if sock is None:
            return
        if dest is not None:
            if self._sendq:
                self._queue(data, self._sockaddr(dest[0], dest[1]))
                return
            # the common case: straight to the socket (IPv4 sockaddr = the (ip, port) tuple)
            try:
                sock.sendto(data, dest if self.family == _AF_INET
                            else self._sockaddr(dest[0], dest[1]))
            except (BlockingIOError, InterruptedError):
                self._queue(data, self._sockaddr(dest[0], dest[1]))
                return
            except OSError:
                self.counters.tx_errors += 1
                return
            except TypeError:      # not a plain (str, int): let _sockaddr normalise it
                self._sendto(data, self._sockaddr(dest[0], dest[1]))
                return
            c = self.counters
            c.tx_packets += 1
            c.tx_bytes += len(data)
            return
        if self.multicast:
            self._sendto(data, self._sockaddr(self.remoteip, self.remoteport))
        else:
            for ip, port in self.remotes:
                self._sendto(data, self._sockaddr(ip, port))

    def close(self) -> None:
        self._close_socket()

    @property
    def bound_port(self) -> int:
        """The actual local port (useful when 0 was asked for in tests)."""
        return self._sock.getsockname()[1] if self._sock is not None else self.localport

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(localip=str(self.localip), localport=self.localport,
                 remoteip=str(self.remoteip), remoteport=self.remoteport,
                 multicast=self.multicast, rx_drops=socket_drops(self._sock),
                 remotes=[f"{ip}:{port}" for ip, port in self.remotes])
        return d

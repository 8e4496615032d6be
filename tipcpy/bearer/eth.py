"""Ethernet bearer (media ``eth``): raw frames with ethertype 0x88CA via AF_PACKET.

Kernel ``eth_media.c``/``bearer.c`` semantics: bearer name ``eth:<device>``, MTU = the
device MTU, "broadcast" packets (destination ``None``) go to ff:ff:ff:ff:ff:ff, the media
address advertised in discovery is the device MAC, and the loopback device is refused
(an L2 loopback would make a node discover itself).

We use a ``SOCK_DGRAM`` packet socket so the kernel builds and strips the Ethernet header;
the socket is bound to one ifindex and to ETH_P_TIPC, so it only ever sees TIPC frames of
that device. Frames we sent ourselves (``PACKET_OUTGOING``) are ignored defensively.
Needs CAP_NET_RAW (root): without it the error says so instead of a bare EPERM.
"""

from __future__ import annotations

import asyncio
import errno
import os
import socket
from typing import Any

from .base import Bearer, BearerError, QueuedSender, einval

ETH_P_TIPC = 0x88CA
BROADCAST_MAC = b"\xff" * 6
_PACKET_OUTGOING = 4
_ARPHRD_LOOPBACK = 772
_IFF_LOOPBACK = 0x8
_READ_BATCH = 512


def mac_to_str(mac: bytes) -> str:
    return ":".join(f"{b:02x}" for b in mac)


def _sysfs(dev: str, attr: str) -> str | None:
    try:
        with open(f"/sys/class/net/{dev}/{attr}") as f:
            return f.read().strip()
    except OSError:
        return None


class EthBearer(QueuedSender, Bearer):
    """A TIPC bearer on one Ethernet device."""

    def __init__(self, device: str, mtu: int | None = None,
                 loop: asyncio.AbstractEventLoop | None = None) -> None:
        if not device:
            raise einval("missing device name")
        if "/" in device or len(device) > 15:
            raise einval(f"invalid device name '{device}'")
        super().__init__(name=f"{self.MEDIA_NAME}:{device}", media=self.MEDIA_NAME,
                         mtu=mtu or 1500)
        self.device = device
        self.mac = b"\0" * 6
        self._mtu_override = mtu
        self._loop = loop
        self._sock: socket.socket | None = None
        self._ifindex = 0
        self._init_sendq()

    def open(self, loop: asyncio.AbstractEventLoop | None = None) -> None:
        """Validate the device, open and bind the packet socket, register the reader."""
        self._loop = loop or self._loop or asyncio.get_event_loop()
        try:
            self._ifindex = socket.if_nametoindex(self.device)
        except OSError:
            raise BearerError(errno.ENODEV, f"device '{self.device}' does not exist") from None
        if _sysfs(self.device, "type") == str(_ARPHRD_LOOPBACK):
            raise einval(f"device '{self.device}' is a loopback device; TIPC does not run "
                         "an eth bearer on L2 loopback")
        flags = _sysfs(self.device, "flags")
        if flags is not None and int(flags, 16) & _IFF_LOOPBACK:
            raise einval(f"device '{self.device}' is a loopback device")
        try:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_TIPC))
        except PermissionError:
            raise BearerError(errno.EPERM, "an eth bearer needs a raw packet socket: run "
                              "tipcd as root (or with CAP_NET_RAW)") from None
        try:
            sock.setblocking(False)
            sock.bind((self.device, ETH_P_TIPC))
            self.mac = bytes(sock.getsockname()[4][:6])
        except OSError as e:
            sock.close()
            raise BearerError(e.errno or errno.EIO,
                              f"cannot bind to device '{self.device}': {e.strerror}") from None
        if self._mtu_override is None:
            dev_mtu = _sysfs(self.device, "mtu")
            self.mtu = int(dev_mtu) if dev_mtu else 1500
        self._sock = sock
        self._loop.add_reader(sock.fileno(), self._on_readable)

    def media_addr(self) -> bytes:
        return self.mac

    def _on_readable(self) -> None:
        sock = self._sock
        if sock is None:
            return
        batch: list[tuple[bytes, Any]] = []
        for _ in range(_READ_BATCH):
            try:
                data, addr = sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                self.counters.rx_errors += 1
                continue
            if addr[2] == _PACKET_OUTGOING:
                continue
            batch.append((data, bytes(addr[4][:6])))   # foreign media: _deliver drops
        self._deliver(batch)

    def send(self, dest: bytes | None, data: bytes) -> None:
        """Send one frame to MAC ``dest`` (6 bytes), or to the broadcast MAC if None."""
        if self._sock is None:
            return
        mac = BROADCAST_MAC if dest is None else bytes(dest)
        self._sendto(data, (self.device, ETH_P_TIPC, 0, 0, mac))

    def close(self) -> None:
        self._close_socket()

    def info(self) -> dict[str, Any]:
        d = super().info()
        d.update(device=self.device, mac=mac_to_str(self.mac), ifindex=self._ifindex)
        return d


def is_root() -> bool:
    return os.geteuid() == 0

"""Encryption's price: RDM throughput between two tipcd with a cluster key, as a ratio
to the same two-tipcd run without a key, measured alternately in the same run.

Beside each ratio, the AES-GCM cost per packet measured in this process: the bare
``AESGCM.encrypt + decrypt`` of one packet of the size the link carries, and the whole
``TipcCrypto.encrypt + decrypt`` path the node runs per packet (header, nonce, replay
window, key choice).  Packets per message: a 1024 B message is one packet; a 60 KB one
is five fragments on the UDP bearer's 14000-byte MTU.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from bench.common import Daemon, Procs, Row, Target, free_udp_port, socket_api_missing, workspace
from bench.socket_cases import Nodes, _try, oneway

KEY = "0x" + "b3" * 32 + "c0ffee00"
UDP_MTU = 14000
HDR = 40 + 8  # data header + a little room: what a message of `size` bytes becomes


class _KeyedNodes(Nodes):
    """Two tipcd on loopback, both given KEY with --key-file before their bearer."""

    def __init__(self, procs: Procs, tmp: Path) -> None:
        kf = tmp / "cluster.key"
        kf.write_text(KEY + "\n")
        kf.chmod(0o600)
        pa, pb = free_udp_port(), free_udp_port()
        extra = ["--key-file", str(kf)]
        self.a = Daemon(procs, tmp, "enc-a", "bench-ea", pa, pb, extra=extra)
        self.b = Daemon(procs, tmp, "enc-b", "bench-eb", pb, pa, extra=extra)
        self.a.wait_link_up()
        self.b.wait_link_up()
        self.type = 18988


def _packets(size: int) -> list[int]:
    """Sizes of the packets one message of ``size`` bytes makes on the link."""
    whole = size + 24 + 16
    if whole <= UDP_MTU:
        return [whole]
    chunk = UDP_MTU - 40
    n, rest = divmod(size + 40, chunk)
    return [UDP_MTU] * n + ([rest + 40] if rest else [])


def aead_cost_us(size: int, rounds: int = 2000) -> dict[str, float]:
    """Per-packet microseconds: bare AESGCM enc+dec, and TipcCrypto's whole path."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    from tipcpy.core.crypto import TipcCrypto, parse_key

    key = parse_key(KEY)
    gcm = AESGCM(key.aes_key)
    out: dict[str, float] = {}
    pkts = _packets(size)
    nonce = bytes(12)
    aad = bytes(16)
    t0 = time.perf_counter()
    for _ in range(rounds):
        for n in pkts:
            gcm.decrypt(nonce, gcm.encrypt(nonce, bytes(n), aad), aad)
    per_msg = (time.perf_counter() - t0) / rounds
    out["aesgcm_us_per_packet"] = 1e6 * per_msg / len(pkts)
    a = TipcCrypto(0x1001, b"a" * 16, os.urandom)
    b = TipcCrypto(0x1002, b"b" * 16, os.urandom)
    a.set_key(key, 0.0)
    b.set_key(key, 0.0)
    plains = []
    for n in pkts:
        w = bytearray(n)
        w[0:4] = ((2 << 29) | (0 << 25) | (10 << 21) | n).to_bytes(4, "big")
        w[12:16] = (0x1001).to_bytes(4, "big")
        w[28:32] = (0x1002).to_bytes(4, "big")
        plains.append(bytes(w))
    t0 = time.perf_counter()
    for _ in range(rounds):
        for p in plains:
            for e in a.encrypt(p, 0x1002, 1.0):
                b.decrypt(e, None, 1.0)
    per_msg = (time.perf_counter() - t0) / rounds
    out["tipc_crypto_us_per_packet"] = 1e6 * per_msg / len(pkts)
    out["packets_per_message"] = len(pkts)
    return out


def case_crypto(args: Any) -> list[Row]:
    sizes = [s for s in args.sizes if s >= 1024] or [1024, 61440]
    dur = args.duration
    rows: list[Row] = []
    missing = socket_api_missing()
    with workspace("crypto") as (tmp, procs):
        plain = enc = None
        if not missing:
            try:
                plain = Nodes(procs, tmp, two=True)
                enc = _KeyedNodes(procs, tmp)
            except Exception as exc:
                missing = f"failed to start tipcd: {exc}"[:300]
        for size in sizes:
            cost = aead_cost_us(size, rounds=200 if args.quick else 2000)
            p = e = None
            why = missing or ""
            if plain is not None and enc is not None:
                # alternate plain / encrypted so that both see the same machine load
                best_p: dict[str, Any] | None = None
                best_e: dict[str, Any] | None = None
                for _ in range(1 if args.quick else 2):
                    p, pw = _try(oneway, procs, "tipc", size, dur, **plain.setup(True))
                    e, ew = _try(oneway, procs, "tipc", size, dur, **enc.setup(True))
                    why = why or pw or ew
                    if p and (best_p is None or (p["rate"] or 0) > (best_p["rate"] or 0)):
                        best_p = p
                    if e and (best_e is None or (e["rate"] or 0) > (best_e["rate"] or 0)):
                        best_e = e
                p, e = best_p, best_e
            note = why or (f"AESGCM enc+dec {cost['aesgcm_us_per_packet']:.1f} us/packet, "
                           f"TipcCrypto enc+dec {cost['tipc_crypto_us_per_packet']:.1f} "
                           f"us/packet, {cost['packets_per_message']} packet(s)/msg")
            rows.append(Row("crypto", f"RDM {size} B one-way, cluster key", "msg/s",
                            e["rate"] if e else None, "same two tipcd runs without a key",
                            p["rate"] if p else None, Target("ratio", ">=", 0.8, ">= 0.8x"),
                            note, {"encrypted": e, "plain": p, "cost": cost}))
    return rows

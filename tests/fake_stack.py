"""A stand-in for the core Stack with the real result shapes, for driving the control
ops and the Runtime in-process (unit tests) and over a real socket (integration)."""

from __future__ import annotations

import random
from typing import Any


class FakeEncryption:
    """Records the key ops (StackCrypto's control surface) without encrypting."""

    def __init__(self) -> None:
        self.keys: list[tuple[Any, bool, bytes | None]] = []
        self.rekeying: list[int | None] = []
        self.refuse_clear = False
        self.stats: dict[tuple[int, int], dict[str, int]] = {}

    def set_key(self, key: Any, now: float, *, master: bool = False,
                node_id: bytes | None = None) -> int:
        self.keys.append((key, master, node_id))
        return 0 if master else 1

    def set_rekeying(self, now: float, minutes: int | None) -> None:
        self.rekeying.append(minutes)

    def flush(self) -> None:
        self.keys.clear()

    def set_refuse_clear(self, on: bool) -> None:
        self.refuse_clear = on

    def key_info(self) -> dict[str, Any]:
        return {"working": bool(self.keys), "refuse_clear": self.refuse_clear}

    def link_counters(self, peer: int, bearer_id: int) -> dict[str, int]:
        return {}


class FakeStack:
    """Just enough of the Stack contract (its real result shapes) to drive the runtime
    and the ops."""

    def __init__(self, node_id: bytes | None, net_id: int, rng: random.Random) -> None:
        self.node_id = node_id
        self.net_id = net_id
        self.own_addr = 0
        self.trial_addr = 0
        self.peers: dict[int, Any] = {}
        self.link_rtt: dict[Any, Any] = {}
        self.props: dict[str, dict[str, int]] = {}
        self.bearers: dict[int, str] = {}
        self.rx: list[tuple[int, bytes]] = []
        self.tx: list[tuple[int, Any, bytes]] = []
        self.deadline: float | None = None
        self.ticks = 0
        self.encryption = FakeEncryption()
        self.monitors: dict[int, Any] = {}  # no Monitor objects: summary/list default rows
        self.mon_threshold = 32

    def set_mon_threshold(self, value: int) -> None:
        self.mon_threshold = value

    def set_identity(self, node_id: bytes) -> None:
        self.node_id = node_id

    def set_netid(self, net_id: int) -> None:
        self.net_id = net_id

    def enable_bearer(self, name: str, media: str, media_addr: Any, mtu: int, now: float,
                      **kw: Any) -> int:
        bid = len(self.bearers)
        self.props[name] = {"priority": 10, "tolerance": 1500, "window": 50, "mtu": mtu,
                            **kw}
        self.bearers[bid] = name
        self.tx.append((bid, None, b"discovery-from-" + name.encode()))
        self.deadline = now + 0.05
        return bid

    def disable_bearer(self, name: str, now: float) -> None:
        for bid, n in list(self.bearers.items()):
            if n == name:
                self.tx.append((bid, None, b"reset-peer-stopping"))
                del self.bearers[bid]

    def receive(self, bearer_id: int, data: bytes, now: float) -> None:
        if data == b"crash":
            raise RuntimeError("bug")
        self.rx.append((bearer_id, data))

    def tick(self, now: float) -> None:
        self.ticks += 1
        self.deadline = None

    def next_deadline(self) -> float | None:
        return self.deadline

    def take_transmits(self) -> list[tuple[int, Any, bytes]]:
        out, self.tx = self.tx, []
        return out

    def take_events(self) -> list[Any]:
        return []

    def node_info(self) -> dict[str, Any]:
        return {"address": self.own_addr, "netid": self.net_id}

    def node_list(self) -> list[dict[str, Any]]:
        return [{"identity": "peer-b", "addr": 0x195D0765, "up": True}]

    def link_list(self) -> list[dict[str, Any]]:
        return [{"name": "broadcast-link", "up": True}, {"name": "a:b0-peer-b:b0", "up": True}]

    def link_stats(self) -> list[dict[str, Any]]:
        return [{"name": "broadcast-link", "up": True, "window": 50},
                {"name": "a:b0-peer-b:b0", "up": True, "active": True, "mtu": 14000,
                 "priority": 10, "tolerance": 1500, "window": 50,
                 "stats": {"recv_pkts": 21, "recv_fragments": 6, "recv_fragmented": 2,
                           "sent_pkts": 18, "sent_fragments": 6, "sent_fragmented": 2,
                           "msg_length_counts": 5, "msg_lengths_total": 35190,
                           "msg_length_profile": [3, 0, 0, 0, 1, 1, 0], "recv_states": 214,
                           "recv_probes": 104, "sent_states": 218, "sent_probes": 104,
                           "sent_acks": 1}}]

    def bearer_list(self) -> list[dict[str, Any]]:
        return [{"name": n, **self.props[n]} for n in self.bearers.values()]

    def set_bearer_prop(self, name: str, now: float, **kw: int) -> None:
        self.props[name].update(kw)

    def stats(self) -> dict[str, Any]:
        return {"counters": {}}

    @property
    def name_table(self) -> list[Any]:
        from types import SimpleNamespace as P

        return [P(type=0, lower=425526373, upper=425526373, scope=2, port=0, node=0x195D0465),
                P(type=1, lower=1, upper=1, scope=3, port=133953688, node=0x195D0465)]

"""Control-request validation by schema, driven in-process (no daemon, no socket): every
op's every argument fed junk of every JSON type must give a validation error (EINVAL,
naming the field), never "internal error", and must leave the node unchanged."""

from __future__ import annotations

import asyncio
import copy
import errno
import json
import random
from typing import Any

import pytest

from tests.fake_stack import FakeStack
from tipcpy.addr import node_id_from_str
from tipcpy.runtime.config import DaemonConfig
from tipcpy.runtime.control import MAX_DEPTH, ControlServer, json_depth
from tipcpy.runtime.ops import OPS, NodeOps
from tipcpy.runtime.ops.validate import Bool, Int, IntOr
from tipcpy.runtime.runtime import Runtime

#: one of every JSON type, and the numbers Python's json turns into trouble: written as
#: raw JSON text so 1e400, Infinity and NaN reach the server exactly as a client sends them
JUNK: list[str] = [
    "[]", "[1]", "{}", '{"a":1}', "null", "true", "false", "1.5", "0.0", "-0.5", "1e400",
    "-1e400", "Infinity", "-Infinity", "NaN", str(2 ** 64), str(-2 ** 64), str(10 ** 400),
    '""', json.dumps("x" * 5000), json.dumps("\u00e9" * 40), json.dumps("a\u0000b"),
]


class Harness:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        stack = FakeStack(node_id_from_str("kpeer-a"), 4711, random.Random(1))
        self.stack = stack
        self.ops = NodeOps(DaemonConfig(), Runtime(stack, self.loop))  # type: ignore[arg-type]
        self.server = ControlServer("/nonexistent/ctl.sock", self.ops.dispatch)

    def ask(self, line: bytes) -> dict[str, Any]:
        ans = self.loop.run_until_complete(self.server.answer(line))
        assert ans is not None
        return ans

    def request(self, op: str, raw_args: str) -> dict[str, Any]:
        return self.ask(f'{{"op":"{op}","args":{raw_args}}}'.encode())

    def state(self) -> Any:
        o, s = self.ops, self.stack
        return copy.deepcopy((o.media, o.bcast, o.bc_window, o.monitor_threshold, o.keys,
                              dict(o.runtime.by_name), s.node_id, s.net_id, s.trial_addr,
                              s.props, s.bearers))

    def close(self) -> None:
        self.ops.runtime.close()
        self.loop.close()


@pytest.fixture
def h() -> Any:
    harness = Harness()
    yield harness
    harness.close()


def _accepts(field: Any, raw: str) -> bool:
    """Is this junk in fact valid for the field? (only booleans for a Bool field)"""
    return isinstance(field, Bool) and raw in ("true", "false")


def test_every_op_every_argument_refuses_typed_junk(h: Harness) -> None:
    checked = 0
    for op, entry in sorted(OPS.items()):
        for name, field in entry.schema.items():
            extra = list(JUNK)
            if isinstance(field, Int | IntOr):
                num = field.num if isinstance(field, IntOr) else field
                extra += [str(num.lo - 1), str(num.hi + 1), json.dumps(str(num.hi + 1))]
                if not num.text:
                    extra.append(json.dumps(str(num.lo)))     # digits in a string
            for raw in extra:
                if _accepts(field, raw):
                    continue
                before = h.state()
                ans = h.request(op, f'{{"{name}":{raw}}}')
                where = (op, name, raw[:40], ans)
                assert ans["ok"] is False, where
                assert ans["errno"] == errno.EINVAL, where
                assert "internal error" not in ans["error"], where
                assert name in ans["error"], where
                assert h.state() == before, where
                checked += 1
        # an argument the op does not take
        ans = h.request(op, '{"bogus":1}')
        assert ans["ok"] is False and ans["errno"] == errno.EINVAL
        assert "bogus" in ans["error"] and "unknown argument" in ans["error"]
    assert checked > 1500          # the loops really ran over every op and field


@pytest.mark.parametrize("op,args,field", [
    ("bearer.enable", '{"media":"udp","name":"b0","localip":"127.0.0.1","localport":1.5}',
     "localport"),
    ("bearer.enable", '{"media":"udp","name":"b0","localip":"127.0.0.1","localport":true}',
     "localport"),
    ("bearer.enable", '{"media":"udp","name":"b0","localip":"127.0.0.1","priority":1e400}',
     "priority"),
    ("bearer.enable", '{"media":"udp","name":["b0"],"localip":"127.0.0.1"}', "name"),
    ("bearer.enable", '{"media":"udp","name":"b0123456789abcdef","localip":"127.0.0.1"}',
     "name"),
    ("node.key.set", '{"key":18446744073709551616}', "key"),
    ("node.key.set", '{"key":"0123456789abcdef0123","algname":null}', "algname"),
    ("node.key.set", '{"key":"0123456789abcdef0123","algname":"cbc(aes)"}', "algname"),
    ("node.key.set", '{"rekeying":2147483648}', "rekeying"),
    ("node.key.set", '{"rekeying":"2147483648"}', "rekeying"),
    ("media.get", '{"media":{"udp":1}}', "media"),
    ("link.monitor.list", '{"bearer":["udp:b0"]}', "bearer"),
    ("link.stat.show", '{"link":7}', "link"),
    ("link.set", '{"link":"x","tolerance":Infinity}', "tolerance"),
    ("link.broadcast.set", '{"method":"broadcast"}', "method"),
    ("events", '{"type":"1"}', "type"),
])
def test_named_junk_is_refused_and_not_applied(h: Harness, op: str, args: str,
                                               field: str) -> None:
    before = h.state()
    ans = h.request(op, args)
    assert ans["ok"] is False and ans["errno"] == errno.EINVAL, ans
    assert f"invalid {field}" in ans["error"], ans
    assert h.state() == before
    assert h.ops.runtime.bearers == {}


def test_valid_requests_still_apply(h: Harness) -> None:
    """The twin of the junk tests: the same ops with good values do change the node."""
    assert h.request("node.key.set", '{"rekeying":2147483647}')["ok"]
    assert h.ops.keys["rekeying"] == 2147483647
    assert h.request("node.key.set", '{"rekeying":"now"}')["ok"]
    assert h.ops.stack.encryption.rekeying == [2147483647, None]
    if h.ops.stack.node_id is None:
        assert h.request("node.set", '{"identity":"n1"}')["ok"]
    assert h.request("node.key.set", '{"key":"0x' + "ab" * 20 + '","master":true}')["ok"]
    ((key, master, nid),) = h.ops.stack.encryption.keys
    assert key.material == b"\xab" * 20 and master and nid is None
    assert h.request("media.set", '{"media":"udp","tolerance":"3000"}')["ok"]
    assert h.ops.media["udp"]["tolerance"] == 3000
    assert h.request("link.monitor.set", '{"threshold":0}')["ok"]
    assert h.ops.monitor_threshold == 0
    assert h.request("node.set", '{"netid":1234}')["ok"] and h.stack.net_id == 1234


def test_deep_and_huge_json_gives_an_answer(h: Harness) -> None:
    for line in (b"[" * 100_000, b"{\"op\":" * 50_000, b'{"op":"node.get","args":'
                 + b"[" * 100_000 + b"]" * 100_000 + b"}"):
        ans = h.ask(line)
        assert ans["ok"] is False and ans["errno"] == errno.EINVAL
        assert "nested deeper" in ans["error"]
    # brackets inside strings are not nesting
    ans = h.request("node.set", json.dumps({"identity": "[" * 30}))
    assert "nested" not in ans["error"] and "identity" in ans["error"]
    assert json_depth(b'{"a":"[[[[[[[[[[[[[[[[[[[["}') == 1
    assert json_depth(b"[" * (MAX_DEPTH + 5)) > MAX_DEPTH
    ok = h.ask(b'{"op":"node.get"}')
    assert ok["ok"] is True and ok["result"]["identity"] == "kpeer-a"
    ans = h.ask(b'{"op":"node.get","args":{},"extra":1}')
    assert ans["ok"] is False and "extra" in ans["error"]

"""Argument checking of control ops: one declarative schema per op, checked in full
before the op runs.

A control request is JSON from a local client that may be buggy or hostile. Checking
types and ranges in the handlers, one by one, let junk through (a float port became an
int, ``1e400`` raised OverflowError, a list as a name reached the bearer code). Here
every op declares each argument it takes; anything else, of any other type, or out of
range, is refused with EINVAL and a sentence naming the field and what it accepts, and
nothing runs. Handlers keep only the checks that need the node's state.

Lengths are the kernel's (include/uapi/linux/tipc.h): a bearer name fits
``TIPC_MAX_BEARER_NAME`` (32, NUL included), a link name ``TIPC_MAX_LINK_NAME`` (68), an
interface name ``TIPC_MAX_IF_NAME`` (16); the udp bearer's own name is its interface
name (``udp:NAME``).
"""

from __future__ import annotations

import errno
import ipaddress
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tipcpy.addr import addr_from_zcn, node_id_from_str
from tipcpy.bearer.media import MEDIA_NAMES

from ..control import ControlError

TIPC_MAX_BEARER_NAME = 32
TIPC_MAX_LINK_NAME = 68
TIPC_MAX_IF_NAME = 16
TIPC_MAX_MEDIA_NAME = 16
TIPC_AEAD_ALG_NAME = 32
U32_MAX = 0xFFFFFFFF
INT_MAX = 0x7FFFFFFF        # iproute2 reads `rekeying` with atoi()

NETID_MIN, NETID_MAX = 1, 9999
#: (low, high) of every settable link property - kernel TIPC_{MIN,MAX}_LINK_*.
RANGES: dict[str, tuple[int, int]] = {
    "priority": (0, 31),
    "tolerance": (50, 30000),
    "window": (16, 8191),
    "mtu": (256, 65507),        # the link refuses < 256; a UDP datagram holds <= 65507
}
MONITOR_THRESHOLD_MAX = 4095    # kernel TIPC_CLUSTER_SIZE
BCAST_METHODS = ("BROADCAST", "REPLICAST", "AUTOSELECT")
KEY_ALGS = ("gcm(aes)",)
KEY_LENGTHS = (16 + 4, 24 + 4, 32 + 4)     # [KEY 16|24|32 octets][SALT 4 octets]

_INT_TEXT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]{1,16}|[0-9]{1,20})")


def bad(msg: str, code: int = errno.EINVAL) -> ControlError:
    return ControlError(code, msg)


# -- field types ------------------------------------------------------------------------

class Field:
    """One argument's type; ``check`` returns the value or raises ControlError."""

    def describe(self) -> str:
        raise NotImplementedError

    def check(self, name: str, value: Any) -> Any:
        raise NotImplementedError

    def refuse(self, name: str, value: Any) -> ControlError:
        shown = repr(value) if not isinstance(value, str) else f"'{value[:80]}'"
        if len(shown) > 90:
            shown = shown[:80] + "..."
        return bad(f"invalid {name} {shown}: expected {self.describe()}")


@dataclass(frozen=True)
class Int(Field):
    """An integer in ``lo..hi``. JSON floats and booleans are refused (``1.5`` is not a
    port, ``true`` is not 1). ``text``: also a decimal/0x string, for the arguments the
    CLI passes on as the user typed them."""

    lo: int
    hi: int
    text: bool = False

    def describe(self) -> str:
        return f"{self.lo}-{self.hi} (an integer)"

    def check(self, name: str, value: Any) -> int:
        if isinstance(value, bool):
            raise self.refuse(name, value)
        if isinstance(value, int):
            n = value
        elif self.text and isinstance(value, str) and _INT_TEXT.fullmatch(value):
            n = int(value, 0)
        else:
            raise self.refuse(name, value)
        if not self.lo <= n <= self.hi:
            shown = str(n) if abs(n) < 10 ** 30 else f"{str(n)[:20]}..."
            raise bad(f"invalid {name} {shown}: expected {self.lo}-{self.hi}")
        return n


@dataclass(frozen=True)
class Str(Field):
    """A string of ``lo..hi`` characters, no NUL (it becomes a C string in the kernel)."""

    hi: int
    lo: int = 1

    def describe(self) -> str:
        return f"a string of {self.lo}-{self.hi} characters"

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or "\0" in value:
            raise self.refuse(name, value)
        n = len(value.encode("utf-8", "surrogatepass"))
        if not self.lo <= n <= self.hi:
            raise self.refuse(name, value)
        return value


@dataclass(frozen=True)
class Enum(Field):
    choices: tuple[str, ...]

    def describe(self) -> str:
        return "one of " + ", ".join(self.choices)

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or value not in self.choices:
            raise self.refuse(name, value)
        return value


@dataclass(frozen=True)
class Bool(Field):
    def describe(self) -> str:
        return "true or false"

    def check(self, name: str, value: Any) -> bool:
        if not isinstance(value, bool):
            raise self.refuse(name, value)
        return value


@dataclass(frozen=True)
class IP(Field):
    def describe(self) -> str:
        return "an IPv4 or IPv6 address"

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= 64:
            raise self.refuse(name, value)
        try:
            ipaddress.ip_address(value.split("%", 1)[0])
        except ValueError:
            raise self.refuse(name, value) from None
        return value


@dataclass(frozen=True)
class Parsed(Field):
    """A string checked by one of the parsers below (identity, address, key)."""

    parser: str
    hi: int

    def describe(self) -> str:
        return {"identity": "a node identity of up to 16 characters, or up to 32 hex digits",
                "address": "Z.C.N or a node hash of up to 8 hex digits",
                "key": "a key of 20, 28 or 36 ASCII characters or 0x + hex digits"
                }[self.parser]

    def check(self, name: str, value: Any) -> str:
        if not isinstance(value, str) or not 1 <= len(value) <= self.hi:
            raise self.refuse(name, value)
        PARSERS[self.parser](value, name)
        return value


@dataclass(frozen=True)
class IntOr(Field):
    """An integer field that also takes one keyword (``rekeying now``)."""

    word: str
    num: Int
    what: str = "an integer"

    def describe(self) -> str:
        return f"{self.what} {self.num.lo}-{self.num.hi} or '{self.word}'"

    def check(self, name: str, value: Any) -> int | str:
        if value == self.word and isinstance(value, str):
            return value
        try:
            return self.num.check(name, value)
        except ControlError:
            raise self.refuse(name, value) from None


Schema = Mapping[str, Field]


def check_args(op: str, schema: Schema, args: Mapping[str, Any]) -> None:
    """Refuse unknown arguments and any value its field does not accept."""
    for key in args:
        if key not in schema:
            allowed = ", ".join(sorted(schema)) or "no arguments"
            raise bad(f"{op}: unknown argument '{str(key)[:40]}' (allowed: {allowed})")
    for key, value in args.items():
        schema[key].check(key, value)


# -- parsers (also used on the config file) -----------------------------------------------

def parse_identity(text: Any, what: str = "node identity") -> bytes:
    """Node identity text -> 16 bytes, with an error that says what a valid one is."""
    if not isinstance(text, str) or not text:
        raise bad(f"missing {what}")
    try:
        raw = node_id_from_str(text)
    except (ValueError, UnicodeError):
        raise bad(f"invalid {what} '{text[:80]}': expected up to 16 characters of "
                  "[0-9A-Za-z.:_-@], or up to 32 hex digits (0x... for fewer)") from None
    if not any(raw):
        raise bad(f"invalid {what}: it must not be all zeros")
    return raw


def parse_netid(value: Any) -> int:
    n = Int(NETID_MIN, NETID_MAX, text=True).check("network id", value)
    return n


def parse_int(key: str, value: Any, lo: int, hi: int) -> int:
    """An integer property in ``lo..hi`` (an int, or its text); the error names the range."""
    return Int(lo, hi, text=True).check(key, value)


def parse_prop(key: str, value: Any) -> int:
    if key not in RANGES:
        raise bad(f"invalid property '{key}': expected one of {', '.join(RANGES)}")
    return parse_int(key, value, *RANGES[key])


def parse_address(text: Any, what: str = "network address") -> int:
    """A node address: ``Z.C.N`` (iproute2's syntax) or its 32-bit hash in hex."""
    s = text if isinstance(text, str) else ""
    try:
        if s.count(".") == 2:
            parts = s.split(".")
            if not all(p.isdecimal() and len(p) <= 4 for p in parts):
                raise ValueError
            z, c, n = (int(p) for p in parts)
            if not (0 <= z <= 255 and 0 <= c <= 4095 and 0 <= n <= 4095):
                raise ValueError
            return addr_from_zcn(s)
        if not re.fullmatch(r"(0[xX])?[0-9a-fA-F]{1,8}", s):
            raise ValueError
        return int(s, 16)
    except ValueError:
        raise bad(f"invalid {what} '{s[:80]}': expected Z.C.N (Z 0-255, C and N "
                  "0-4095) or a node hash of up to 8 hex digits") from None


def parse_key(text: Any, what: str = "key") -> bytes:
    """iproute2's KEY: ASCII, or ``0x`` + hex, of [16|24|32 key octets][4 salt octets]."""
    s = text if isinstance(text, str) else ""
    if s[:2] in ("0x", "0X"):
        if not re.fullmatch(r"[0-9a-fA-F]*", s[2:]):
            raise bad(f"invalid {what}: 0x... must be followed by hex digits only")
        try:
            raw = bytes.fromhex(s[2:])
        except ValueError:
            raise bad(f"invalid {what}: 0x... must be followed by an even number of hex "
                      "digits") from None
    else:
        try:
            raw = s.encode("ascii")
        except UnicodeEncodeError:
            raise bad(f"invalid {what}: use ASCII characters or 0x + hex digits") from None
    if len(raw) not in KEY_LENGTHS:
        raise bad(f"invalid {what} length {len(raw)} octets: expected 20, 28 or 36 "
                  "(16, 24 or 32 key octets + 4 salt octets)")
    return raw


PARSERS: dict[str, Callable[[Any, str], object]] = {
    "identity": parse_identity, "address": parse_address, "key": parse_key}

# -- the fields the ops share --------------------------------------------------------------

BEARER = Str(TIPC_MAX_BEARER_NAME - 1)
IF_NAME = Str(TIPC_MAX_IF_NAME - 1)             # udp bearer name, device
LINK = Str(TIPC_MAX_LINK_NAME - 1)
MEDIA = Enum(MEDIA_NAMES)
MEDIA_NAME = Str(TIPC_MAX_MEDIA_NAME - 1)
PORT = Int(1, 65535)
IDENTITY = Parsed("identity", 80)
ADDRESS = Parsed("address", 40)
U32 = Int(0, U32_MAX)


def props(text: bool, keys: tuple[str, ...] = tuple(RANGES)) -> dict[str, Field]:
    """The link properties ``keys``; ``text``: as the CLI sends them (the user's word)."""
    return {k: Int(*RANGES[k], text=text) for k in keys}


#: the arguments that name a bearer: ``bearer``, or ``media`` + ``name``/``device``
BEARER_REF: dict[str, Field] = {"bearer": BEARER, "media": MEDIA, "name": IF_NAME,
                                "device": IF_NAME}

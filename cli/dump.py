"""`tipc dump FILE` - read TIPC traffic from a packet capture, like tshark would.

Why: the quickest way to understand (or debug) a TIPC cluster is to look at what is on
the wire, and Wireshark's TIPC dissector predates most of the fields Linux 6.1 uses.
`tipc dump` decodes every TIPC message in a pcap/pcapng capture with tipcpy's own codec
- including the messages inside bundles and the message rebuilt from fragments, which
is where names and payloads live - and `--check` turns the same walk into a codec
self-test: decode, re-encode, compare bytes.

Output modes: one summary line per message (default), every field (`-v`), or one JSON
object per line (`-j`).  Exit status: 0; 1 if `--check` found errors; 2 if the file
is missing or not a capture.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from cli.common import CONTEXT_SETTINGS, fail, json_options, state
from tipcpy.wire.bundle import unbundle
from tipcpy.wire.fragment import Reassembler
from tipcpy.wire.pcap import TIPC_UDP_PORT, PcapError, PcapRecord, parse_pcap

USER_BUNDLER = 6
USER_FRAGMENTER = 12


@dataclass
class Item:
    """One line of the dump: a message (outer or inner) or a failure to read one."""

    rec: PcapRecord
    depth: int  # 0 = packet on the wire, 1 = inside a bundle / rebuilt from fragments
    via: str  # "" | "bundle i/n" | "reassembled"
    msg: Any = None  # tipcpy.wire Msg, when decoded
    raw: bytes = b""
    error: str | None = None
    problems: list[str] = field(default_factory=list)  # --check findings


def _first_diff(a: bytes, b: bytes) -> str:
    """Where two encodings part: byte offset, header word, both values."""
    n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
    if n >= min(len(a), len(b)):
        return f"length {len(a)} != {len(b)}"
    w = n // 4
    wa, wb = a[w * 4:w * 4 + 4].hex(), b[w * 4:w * 4 + 4].hex()
    return f"first difference at byte {n} (word w{w}: re-encoded {wa}, captured {wb})"


def _split_bundle(data: bytes) -> list[bytes]:
    """The inner messages of a MSG_BUNDLER payload, cut by their own size fields.

    Done here, not with the codec's unbundle(), so --check compares the codec against an
    independent reading of the same bytes.  Each inner message starts 4-byte aligned.
    """
    out = []
    pos = 0
    while pos + 4 <= len(data):
        size = int.from_bytes(data[pos:pos + 4], "big") & 0x1FFFF
        if size < 24 or pos + size > len(data):
            raise ValueError(f"inner message at offset {pos} has bad size {size}")
        out.append(data[pos:pos + size])
        pos += (size + 3) & ~3
    return out


class Walker:
    """Walk decoded messages of a capture: outer packets, bundle contents, reassemblies."""

    def __init__(self, check: bool, decryptor: Any = None) -> None:
        from tipcpy.wire import DecodeError, decode

        self._decryptor = decryptor  # tipcpy.core.crypto.CaptureDecryptor with --key

        self._decode = decode
        self._decode_error = DecodeError
        # bundle/fragment helpers are optional: without them the dump still shows the
        # inner messages from its own reading of the bytes, and --check skips comparing.
        self._unbundle = unbundle
        self._reassembler_cls = Reassembler
        self.check = check
        self._reasm: dict[tuple[str, str], Any] = {}
        self._frag_bytes: dict[tuple[str, str], bytearray] = {}

    def _decode_checked(self, raw: bytes, item: Item) -> Any:
        try:
            m = self._decode(raw)
        except (self._decode_error, ValueError) as exc:
            item.error = f"decode error: {exc}"
            return None
        if self.check:
            try:
                again = m.encode()
            except Exception as exc:  # noqa: BLE001 - report, never crash the dump
                item.problems.append(f"encode failed: {type(exc).__name__}: {exc}")
            else:
                if again != raw:
                    item.problems.append("re-encoding differs: " + _first_diff(again, raw))
        return m

    def walk(self, rec: PcapRecord) -> Iterator[Item]:
        if rec.error is not None:
            yield Item(rec, 0, "", error=f"malformed frame: {rec.error}")
            return
        payload = rec.payload
        via = ""
        if self._decryptor is not None and payload[:1] and payload[0] >> 5 == 7:
            res = self._decryptor.decrypt(payload)
            if res.__class__.__name__ == "Dropped":
                yield Item(rec, 0, "", error=f"not decrypted: {res.reason}: {res.detail}")
                return
            payload, via = res.msg, f"decrypted, key {res.tx_key}"
        top = Item(rec, 0, via, raw=payload)
        top.msg = self._decode_checked(payload, top)
        yield top
        m = top.msg
        if m is None:
            return
        user = int(m.user)
        if user == USER_BUNDLER:
            inner = list(self._bundle(rec, m))
            yield from inner
            if self._decryptor is not None:  # a session key may travel in a bundle
                for it in inner:
                    if it.raw:
                        self._decryptor.note_inner(it.raw)
        elif user == USER_FRAGMENTER:
            yield from self._fragment(rec, m)

    def _bundle(self, rec: PcapRecord, m: Any) -> Iterator[Item]:
        try:
            parts = _split_bundle(bytes(m.data))
        except ValueError as exc:
            yield Item(rec, 1, "bundle", error=f"bundle: {exc}")
            return
        n = len(parts)
        for i, raw in enumerate(parts, 1):
            item = Item(rec, 1, f"bundle {i}/{n}", raw=raw)
            item.msg = self._decode_checked(raw, item)
            yield item
        if self.check and self._unbundle is not None:
            try:
                via_codec = [x.encode() for x in self._unbundle(m)]
            except Exception as exc:  # noqa: BLE001
                yield Item(rec, 1, "bundle", error=f"unbundle() failed: {type(exc).__name__}: "
                                                   f"{exc}")
                return
            if via_codec != parts:
                yield Item(rec, 1, "bundle", error=f"unbundle() gives {len(via_codec)} messages "
                                                   f"that differ from the {n} in the bundle")

    def _fragment(self, rec: PcapRecord, m: Any) -> Iterator[Item]:
        """Collect fragments per direction (one reassembly per link, like the kernel)."""
        key = (rec.src, rec.dst)
        mtype = int(m.mtype)
        if mtype == 0:  # FIRST_FRAGMENT starts a new message
            self._frag_bytes[key] = bytearray()
        buf = self._frag_bytes.get(key)
        if buf is None:
            yield Item(rec, 1, "reassembled", error="fragment without a FIRST_FRAGMENT before it")
            return
        buf += bytes(m.data)
        whole = None
        if self._reassembler_cls is not None:
            reasm = self._reasm.setdefault(key, self._reassembler_cls())
            try:
                whole = reasm.feed(m)
            except (self._decode_error, ValueError) as exc:
                self._frag_bytes.pop(key, None)
                yield Item(rec, 1, "reassembled", error=f"reassembly failed: {exc}")
                return
        if mtype != 2:  # not LAST_FRAGMENT: nothing complete yet
            if whole is not None:
                yield Item(rec, 1, "reassembled",
                           error="Reassembler completed a message before LAST_FRAGMENT")
            return
        ours = bytes(self._frag_bytes.pop(key))
        if whole is None and self._reassembler_cls is not None:
            yield Item(rec, 1, "reassembled",
                       error="LAST_FRAGMENT did not complete a message in Reassembler")
            return
        try:
            raw = whole.encode() if whole is not None else ours
        except Exception as exc:  # noqa: BLE001
            yield Item(rec, 1, "reassembled", error=f"reassembled message does not encode: {exc}")
            return
        item = Item(rec, 1, "reassembled", raw=raw)
        item.msg = self._decode_checked(raw, item)
        if self.check and raw != ours:
            item.problems.append("Reassembler result differs from the fragments' bytes: "
                                 + _first_diff(raw, ours))
        yield item


# --------------------------------------------------------------------------------------
# Presentation
# --------------------------------------------------------------------------------------


def _enum_name(user: int, mtype: int) -> tuple[str, str]:
    try:
        from tipcpy.wire.consts import MTYPE_ENUMS, User
        uname = User(user).name
        mt = MTYPE_ENUMS.get(user)
        mname = mt(mtype).name if mt is not None else str(mtype)
    except (ImportError, ValueError):
        return str(user), str(mtype)
    return uname, mname


def _summary(m: Any) -> str:
    s = getattr(m, "summary", None)
    if callable(s):
        try:
            return str(s())
        except Exception as exc:  # noqa: BLE001 - a dump shows what it can
            return f"<summary() failed: {type(exc).__name__}: {exc}>"
    uname, mname = _enum_name(int(m.user), int(m.mtype))
    return f"{uname} {mname} size {m.size}"


def _fields(m: Any) -> dict[str, Any]:
    try:
        f = m.fields()
    except Exception as exc:  # noqa: BLE001
        return {"fields_error": f"{type(exc).__name__}: {exc}"}
    return dict(f)


def jsonable(v: Any) -> Any:
    """Turn codec values (enums, named tuples, dataclasses, bytes) into JSON values."""
    if isinstance(v, bool) or v is None or isinstance(v, str):
        return v
    if isinstance(v, enum.Enum):
        return v.name
    if isinstance(v, int | float):
        return v
    if isinstance(v, bytes | bytearray | memoryview):
        return bytes(v).hex()
    if hasattr(v, "_asdict"):
        return {k: jsonable(x) for k, x in v._asdict().items()}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: jsonable(getattr(v, f.name)) for f in dataclasses.fields(v)}
    if isinstance(v, dict):
        return {str(k): jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple | set | frozenset):
        return [jsonable(x) for x in v]
    return str(v)


def _fmt_value(v: Any) -> str:
    if isinstance(v, enum.Enum):
        return f"{v.name} ({int(v.value)})" if isinstance(v.value, int) else v.name
    if isinstance(v, bool):
        return str(int(v))
    if isinstance(v, int):
        return f"{v} (0x{v:x})" if v > 9 else str(v)
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        return b.hex() if len(b) <= 32 else f"{b[:32].hex()}... ({len(b)} bytes)"
    if isinstance(v, list | tuple) and v and not hasattr(v, "_asdict"):
        return "[" + ", ".join(str(x) for x in v) + "]"
    return str(v)


def _line_prefix(item: Item, t0: float) -> str:
    r = item.rec
    if item.depth == 0:
        enc = f"[{item.via}] " if item.via else ""
        return f"{r.frame:>6} {r.ts - t0:>11.6f} {r.src} -> {r.dst} {enc}"
    return " " * 19 + f"  \\_ {item.via}: "


def _print_text(item: Item, t0: float, verbose: bool) -> None:
    head = _line_prefix(item, t0)
    if item.error is not None:
        click.echo(f"{head}[{item.error}]")
        return
    m = item.msg
    click.echo(head + _summary(m))
    if verbose:
        pad = " " * (8 + 6 * item.depth)
        for k, v in _fields(m).items():
            click.echo(f"{pad}{k}: {_fmt_value(v)}")


def _json_obj(item: Item, t0: float) -> dict[str, Any]:
    r = item.rec
    obj: dict[str, Any] = {"frame": r.frame, "time": round(r.ts - t0, 9), "src": r.src,
                           "dst": r.dst, "transport": r.transport, "depth": item.depth}
    if item.via:
        obj["via"] = item.via
    if item.error is not None:
        obj["error"] = item.error
        return obj
    m = item.msg
    user, mtype = int(m.user), int(m.mtype)
    uname, mname = _enum_name(user, mtype)
    obj.update({"user": user, "user_name": uname, "mtype": mtype, "mtype_name": mname,
                "size": len(item.raw), "summary": _summary(m)})
    for k, v in _fields(m).items():
        if k in ("user", "mtype"):
            continue
        obj.setdefault(k, jsonable(v))
    return obj


@click.command("dump", context_settings=CONTEXT_SETTINGS)
@click.argument("file", metavar="FILE")
@click.option("-v", "--verbose", is_flag=True, help="Print every header field of each message.")
@click.option("--check", is_flag=True,
              help="Decode and re-encode every message; report differences; exit 1 if any.")
@click.option("--port", "ports", type=click.IntRange(1, 65535), multiple=True,
              help=f"Another UDP port carrying TIPC (besides {TIPC_UDP_PORT}); repeatable.")
@click.option("--key", "key", metavar="KEY",
              help="Decrypt v7 (encrypted) packets with this key, given as to `tipc node set "
                   "key` (0x + hex of key and salt, or ASCII).")
@json_options
def cmd(file: str, verbose: bool, check: bool, ports: tuple[int, ...], key: str | None
        ) -> None:
    """Print the TIPC messages in a pcap/pcapng capture FILE.

    One line per message: frame number, time since the first TIPC packet, source ->
    destination, and the decoded header.  Messages carried inside a bundle, and a message
    rebuilt from its fragments, follow on indented lines.  -v adds every field, -j prints
    one JSON object per message, --check verifies that every message re-encodes to the
    captured bytes and ends with the line "N messages, E errors".  --key decrypts
    encrypted (v7) packets first (KEY: the cluster or master key; the keys sent in the
    capture's KEY_DISTR messages are learnt); a packet no key opens counts as an error.
    """
    decryptor = None
    if key is not None:
        from tipcpy.core.crypto import CaptureDecryptor, CryptoError, parse_key
        try:
            decryptor = CaptureDecryptor(parse_key(key))
        except CryptoError as exc:
            fail(f"bad key: {exc}", 2)
    try:
        data = Path(file).read_bytes()
    except OSError as exc:
        fail(f"cannot read {file}: {exc.strerror or exc}", 2)
    records: Iterable[PcapRecord]
    try:
        records = parse_pcap(data, (TIPC_UDP_PORT, *ports))
    except PcapError as exc:
        fail(f"{file}: {exc}", 2)

    if decryptor is not None:
        records = list(records)
        decryptor.learn([r.payload for r in records if r.error is None])
    walker = Walker(check, decryptor)
    as_json = state().json
    pretty = state().pretty
    t0: float | None = None
    total = errors = 0
    for rec in records:
        if t0 is None:
            t0 = rec.ts
        for item in walker.walk(rec):
            if item.raw or item.depth == 0:
                total += 1
            bad = item.error is not None or bool(item.problems)
            if check:
                if bad:
                    errors += 1
                    reasons = [item.error] if item.error else item.problems
                    where = f"frame {rec.frame}" + (f" ({item.via})" if item.via else "")
                    for reason in reasons:
                        click.echo(f"{where}: {rec.src} -> {rec.dst}: {reason}")
                continue
            if as_json:
                click.echo(json.dumps(_json_obj(item, t0), indent=4 if pretty else None))
            else:
                _print_text(item, t0, verbose)
    if check:
        click.echo(f"{total} messages, {errors} errors")
        if errors:
            click.get_current_context().exit(1)

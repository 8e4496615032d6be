"""tipcpy.core.crypto: the kernel's TIPC AEAD, checked against section 2.12 of the
reference, against packets two real Linux 6.1 kernels encrypted (tests/data/crypt-*),
and against itself (two TipcCrypto nodes talking through a lossless wire)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from cli.tipc import main
from tipcpy.core.crypto import (
    CLUSTER_KEY,
    EHDR_CFG_SIZE,
    EHDR_SIZE,
    PER_NODE_KEY,
    REASONS,
    RX_PASSIVE_LIM,
    TX_LASTING,
    AeadKey,
    CaptureDecryptor,
    CryptoError,
    Decrypted,
    Dropped,
    EHdr,
    KeyDistr,
    TipcCrypto,
    build_key_distr,
    decrypt_with,
    encrypt_with,
    parse_key,
    parse_key_distr,
)
from tipcpy.wire.pcap import read_pcap

DATA = Path(__file__).resolve().parents[1] / "data"
CLUSTER_PCAP = DATA / "crypt-cluster-aes256.pcap"
MASTER_PCAP = DATA / "crypt-master-aes256.pcap"
MASTER_SETKEY_PCAP = DATA / "crypt-master-setkey.pcap"
# the keys the kernels were given (KP_KEY) when those captures were made
CLUSTER_KEY_TEXT = "0x000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f71727374"
MASTER_KEY_TEXT = "0x4d41535445524b45595f7468697369735f615f6d61737465725f6b65795f3332736c7431"
SECOND_KEY_TEXT = "0x202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f51525354"

A_ADDR, B_ADDR = 0x195D0465, 0x195D0765
A_ID, B_ID = b"node-a", b"node-b"


def seeded(seed: int):  # noqa: ANN201 - a Callable[[int], bytes]
    r = random.Random(seed)
    return lambda n: r.randbytes(n)


def v2(user: int, mtype: int, prev: int, dest: int, data: bytes = b"", hsize: int = 40,
       keepalive: bool = False, word2: int = 0) -> bytes:
    """A v2 message made by hand (no codec), enough for the crypto layer."""
    size = hsize + len(data)
    w = [0] * (hsize // 4)
    w[0] = 2 << 29 | user << 25 | (hsize // 4) << 21 | int(keepalive) << 19 | size
    w[1] = mtype << 29
    w[2] = word2
    w[3] = prev
    if hsize >= 32:
        w[6], w[7] = prev, dest
    return struct.pack(f">{len(w)}I", *w) + data


def state(prev: int, dest: int, n: int = 0, keepalive: bool = True) -> bytes:
    return v2(7, 0, prev, dest, b"\0\4\0\0", keepalive=keepalive, word2=n)


def data_msg(prev: int, dest: int, payload: bytes) -> bytes:
    return v2(0, 0, prev, dest, payload)


def config(prev: int, node_id: bytes) -> bytes:
    return v2(13, 0, prev, 0, b"", hsize=60)[:60 - 16] + node_id.ljust(16, b"\0")


def pair(key: AeadKey | None = None, master: bool = False, seed: int = 1
         ) -> tuple[TipcCrypto, TipcCrypto]:
    a = TipcCrypto(A_ADDR, A_ID, seeded(seed), 0.0)
    b = TipcCrypto(B_ADDR, B_ID, seeded(seed + 1), 0.0)
    for x, addr, nid in ((a, B_ADDR, B_ID), (b, A_ADDR, A_ID)):
        x.learn_peer(addr, nid)
    if key is not None:
        a.set_key(key, 0.0, master=master)
        b.set_key(key, 0.0, master=master)
        a.take_outgoing()
        b.take_outgoing()
    return a, b


KEYS = {bits: AeadKey(bytes(range(bits // 8)) + b"salt") for bits in (128, 192, 256)}


# ------------------------------------------------------------------------ keys


def test_parse_key_hex_and_ascii() -> None:
    k = parse_key(CLUSTER_KEY_TEXT)
    assert k.aes_key == bytes(range(32)) and k.salt == b"qrst" and k.bits == 256
    assert parse_key("this_is_a_key16_salt").aes_key == b"this_is_a_key16_"
    assert parse_key("this_is_a_key16_salt").salt == b"salt"
    assert parse_key("0X" + "11" * 28).bits == 192
    for bad in ("short", "0x" + "11" * 21, "0x123", "0xzz" + "11" * 19, "x" * 37, "é" * 20):
        with pytest.raises(CryptoError):
            parse_key(bad)
    with pytest.raises(CryptoError):
        AeadKey(b"k" * 20, "ccm(aes)")


# ------------------------------------------------------------------------ header


def test_ehdr_bits_match_reference_layout() -> None:
    """Section 2.12: byte 0 = ver(3) user(4) D; byte 1 = TX(2) RX(2) K M N rsvd."""
    h = EHdr(user=7, destined=True, tx_key=1, rx_key_active=1, keepalive=True,
             master_key=False, seqno=0x0102030405060708, addr=0x195D0765)
    raw = h.pack()
    assert len(raw) == EHDR_SIZE
    assert raw[0] == (7 << 5 | 7 << 1 | 1) == 0xEF
    assert raw[1] == (1 << 6 | 1 << 4 | 1 << 3) == 0x58
    assert raw[2:4] == b"\0\0"
    assert raw[4:12] == bytes.fromhex("0102030405060708")
    assert raw[12:16] == bytes.fromhex("195d0765")
    cfg = EHdr(user=13, tx_key=0, master_key=True, seqno=1, node_id=b"kpeer-a").pack()
    assert len(cfg) == EHDR_CFG_SIZE
    assert cfg[0] == 7 << 5 | 13 << 1 and cfg[1] == 1 << 2
    assert cfg[12:28] == b"kpeer-a".ljust(16, b"\0")
    # every flag combination survives pack/unpack
    for bits in range(1 << 9):
        h = EHdr(user=(0, 7)[bits & 1], destined=bool(bits & 2), tx_key=bits >> 2 & 3,
                 rx_key_active=bits >> 4 & 3, keepalive=bool(bits & 64),
                 master_key=bool(bits & 128), rx_nokey=bool(bits & 256), seqno=bits, addr=bits)
        got = EHdr.unpack(h.pack() + bytes(20))
        assert got == h


@pytest.mark.parametrize("user, node_id", [(7, b""), (13, b"kpeer-b")])
def test_nonce_and_aad_follow_reference(user: int, node_id: bytes) -> None:
    """Nonce = salt[i] ^ hdr[15 - i] for i < 4, then the seqno bytes; AAD = header."""
    key = KEYS[256]
    plain = config(B_ADDR, node_id) if user == 13 else state(B_ADDR, A_ADDR)
    plain = plain + b"xy"  # not a multiple of 4: padded
    h = EHdr(user=user, destined=user != 13, tx_key=1, seqno=77, addr=B_ADDR, node_id=node_id)
    pkt = encrypt_with(key, CLUSTER_KEY, h, plain)
    ehsz = EHDR_CFG_SIZE if user == 13 else EHDR_SIZE
    assert len(pkt) == ehsz + len(plain) + 2 + 16
    hdr = pkt[:ehsz]
    nonce = bytes(key.salt[i] ^ hdr[15 - i] for i in range(4)) + hdr[4:12]
    body = AESGCM(key.aes_key).decrypt(nonce, pkt[ehsz:], hdr)
    assert body == plain + b"\0\0"
    assert decrypt_with(key, CLUSTER_KEY, pkt) == plain + b"\0\0"


def test_per_node_nonce_uses_destination_address() -> None:
    key = KEYS[128]
    h = EHdr(destined=True, tx_key=2, seqno=5, addr=A_ADDR)
    pkt = encrypt_with(key, PER_NODE_KEY, h, data_msg(A_ADDR, B_ADDR, b"hi"), dest_addr=B_ADDR)
    nonce = bytes(key.salt[i] ^ B_ADDR.to_bytes(4, "big")[3 - i] for i in range(4)) + pkt[4:12]
    assert AESGCM(key.aes_key).decrypt(nonce, pkt[16:], pkt[:16])[:42] == data_msg(
        A_ADDR, B_ADDR, b"hi")
    assert decrypt_with(key, PER_NODE_KEY, pkt, own_addr=B_ADDR)[:42] == data_msg(
        A_ADDR, B_ADDR, b"hi")
    with pytest.raises(CryptoError):
        decrypt_with(key, PER_NODE_KEY, pkt, own_addr=A_ADDR)


# ------------------------------------------------------------------------ kernel packets


def _v7(path: Path) -> list[bytes]:
    return [r.payload for r in read_pcap(path) if r.payload[:1] and r.payload[0] >> 5 == 7]


@pytest.mark.parametrize("path, text, master", [
    (CLUSTER_PCAP, CLUSTER_KEY_TEXT, False),
    (MASTER_PCAP, MASTER_KEY_TEXT, True),
    (MASTER_SETKEY_PCAP, MASTER_KEY_TEXT, True),
])
def test_kernel_packets_decrypt(path: Path, text: str, master: bool) -> None:
    pkts = _v7(path)
    assert len(pkts) > 100
    d = CaptureDecryptor(parse_key(text))
    for p in pkts:
        res = d.decrypt(p)
        assert isinstance(res, Decrypted), res
        h = EHdr.unpack(p)
        # section 2.12 overhead: 32 (+0..3 pad) bytes, 44 for LINK_CONFIG
        assert len(p) - len(res.msg) - (EHDR_CFG_SIZE if h.user == 13 else EHDR_SIZE) - 16 in (
            0, 1, 2, 3)
        assert h.master_key == master
    assert d.counters["ok"] == len(pkts)


def test_kernel_cluster_packets_through_a_node() -> None:
    """A TipcCrypto holding the kernel's cluster key takes every packet of kpeer-a as
    kpeer-b would (its own address), with no drop."""
    key = parse_key(CLUSTER_KEY_TEXT)
    node = TipcCrypto(0x195D0765, b"kpeer-b", seeded(3))
    node.set_key(key, 0.0)
    n = 0
    for r in read_pcap(CLUSTER_PCAP):
        if r.src.startswith("10.77.1.2") and r.payload[0] >> 5 == 7:
            res = node.decrypt(r.payload, None, 0.0)
            assert isinstance(res, Decrypted), res
            n += 1
    assert n > 50 and node.counters[0x195D0465]["ok"] == n


def test_kernel_session_key_from_key_distr() -> None:
    """kpeer-a set a second key while up: the kernel sent it in a KEY_DISTR under the
    master key, then switched to it; the decryptor learnt it from the capture."""
    d = CaptureDecryptor(parse_key(MASTER_KEY_TEXT))
    tx_keys = set()
    for p in _v7(MASTER_SETKEY_PCAP):
        assert isinstance(d.decrypt(p), Decrypted)
        tx_keys.add(EHdr.unpack(p).tx_key)
    assert (parse_key(SECOND_KEY_TEXT), CLUSTER_KEY) in [k for ks in d.session.values()
                                                         for k in ks]
    assert tx_keys - {0}, "traffic never moved off the master key"


# ------------------------------------------------------------------------ node round trips


@pytest.mark.parametrize("bits", [128, 192, 256])
def test_round_trip_every_key_size(bits: int) -> None:
    a, b = pair(KEYS[bits])
    for msg in (state(A_ADDR, B_ADDR, 3), data_msg(A_ADDR, B_ADDR, b"x" * 1001),
                config(A_ADDR, A_ID)):
        peer = None if msg[0] >> 1 & 0xF == 13 else B_ADDR
        (pkt,) = a.encrypt(msg, peer, 1.0)
        assert pkt != msg and pkt[0] >> 5 == 7
        res = b.decrypt(pkt, None, 1.0)
        assert isinstance(res, Decrypted) and res.msg == msg and res.peer == A_ADDR
    assert b.counters[A_ADDR]["ok"] == 3


def test_no_key_sends_clear_and_refuse_clear_drops_clear() -> None:
    a, b = pair()
    msg = data_msg(A_ADDR, B_ADDR, b"hello")
    assert a.encrypt(msg, B_ADDR, 0.0) == [msg]
    assert b.decrypt(msg, None, 0.0) == Decrypted(msg, A_ADDR, 0, True)
    b.refuse_clear = True
    b.set_key(KEYS[128], 0.0)
    res = b.decrypt(msg, A_ADDR, 0.0)
    assert isinstance(res, Dropped) and res.reason == "clear_dropped"
    assert b.counters[A_ADDR]["clear_dropped"] == 1


def _deliver(src: TipcCrypto, dst: TipcCrypto, msg: bytes, peer: int | None, now: float
             ) -> list[Decrypted | Dropped]:
    out = []
    for pkt in src.encrypt(msg, peer, now):
        res = dst.decrypt(pkt, None, now)
        out.append(res)
        if isinstance(res, Decrypted) and res.msg[0] >> 1 & 0xF == 14:
            dst.receive_crypto_msg(res.msg, now)
    return out


def _exchange_outgoing(x: TipcCrypto, y: TipcCrypto, y_addr: int, now: float) -> int:
    n = 0
    for o in x.take_outgoing():
        assert o.dnode in (0, y_addr)
        _deliver(x, y, o.msg, y_addr, now)
        n += 1
    return n


def _run(a: TipcCrypto, b: TipcCrypto, t0: float, t1: float, step: float = 0.25
         ) -> tuple[list[bytes], list[bytes]]:
    """Both nodes send a STATE and a data message to each other every step; returns the
    data payloads each side got."""
    got: tuple[list[bytes], list[bytes]] = ([], [])
    t = t0
    i = 0
    while t < t1:
        for src, dst, s_addr, d_addr, sink in ((a, b, A_ADDR, B_ADDR, got[1]),
                                               (b, a, B_ADDR, A_ADDR, got[0])):
            _deliver(src, dst, state(s_addr, d_addr, i), d_addr, t)
            payload = f"{s_addr:x}-{i}".encode()
            for res in _deliver(src, dst, data_msg(s_addr, d_addr, payload), d_addr, t):
                if isinstance(res, Decrypted):
                    sink.append(res.msg[40:])
        _exchange_outgoing(a, b, B_ADDR, t)
        _exchange_outgoing(b, a, A_ADDR, t)
        a.tick(t)
        b.tick(t)
        t += step
        i += 1
    return got


def _sent(addr: int, n: int) -> list[bytes]:
    return [f"{addr:x}-{i}".encode() for i in range(n)]


def test_cluster_keys_settle_to_active() -> None:
    a, b = pair(KEYS[256])
    got = _run(a, b, 0.0, 20.0)
    assert got[1] == _sent(A_ADDR, 80) and got[0] == _sent(B_ADDR, 80)
    assert a.tx.active == 1 and a.tx.pending == 0
    assert b.rx[A_ADDR].active == 1


def test_cluster_key_change_while_traffic_flows_loses_nothing() -> None:
    a, b = pair(KEYS[256])
    _run(a, b, 0.0, 20.0)
    new = KEYS[128]
    a.set_key(new, 20.0)
    got1 = _run(a, b, 20.0, 22.0)
    b.set_key(new, 22.0)
    got2 = _run(a, b, 22.0, 60.0)
    n1, n2 = 8, 152
    assert got1[1] == _sent(A_ADDR, n1) and got2[1] == _sent(A_ADDR, n2)
    assert got1[0] == _sent(B_ADDR, n1) and got2[0] == _sent(B_ADDR, n2)
    # both moved to the new key: a's packets now use slot 2, which b knows as active
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"z"), B_ADDR, 60.0)
    assert EHdr.unpack(pkt).tx_key == a.tx.active == 2
    assert b.rx[A_ADDR].active == 2


def test_master_key_session_exchange_and_rekey() -> None:
    a, b = pair(KEYS[256], master=True, seed=5)
    got = _run(a, b, 0.0, 5.0)
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"m"), B_ADDR, 5.0)
    h = EHdr.unpack(pkt)
    assert h.tx_key == 0 and h.master_key
    # rekeying now on a: a session key goes to b (KEY_DISTR under the master key)
    a.set_rekeying(5.0, None)
    got2 = _run(a, b, 5.0, 40.0)
    assert got2[1] == _sent(A_ADDR, 140) and got2[0] == _sent(B_ADDR, 140)
    assert got[1] == _sent(A_ADDR, 20)
    assert a.tx.active == 1 and b.rx[A_ADDR].active == 1
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"s"), B_ADDR, 40.0)
    h = EHdr.unpack(pkt)
    assert h.tx_key == 1 and h.master_key and h.destined
    # the session key is per-node: its nonce uses b's address, and it is not the master key
    assert a.tx.aead[1] is not None and a.tx.aead[1].mode == PER_NODE_KEY
    assert a.tx.aead[1].key != KEYS[256]
    kinds = {e.kind for e in a.take_events()}
    assert {"rekey", "distributed", "activated"} <= kinds
    # the rekey is rescheduled at the default interval (1 day)
    assert a.tx.rekey_at == pytest.approx(5.0 + 24 * 3600)


def test_capture_decryptor_learns_session_keys() -> None:
    """Record every packet of a master-key exchange; the decryptor with only the master
    key opens all of them, session-key ones included."""
    a, b = pair(KEYS[192], master=True, seed=9)
    wire: list[bytes] = []
    real_a, real_b = a.encrypt, b.encrypt

    def rec_a(msg: bytes, peer: int | None, now: float) -> list[bytes]:
        out = real_a(msg, peer, now)
        wire.extend(out)
        return out

    def rec_b(msg: bytes, peer: int | None, now: float) -> list[bytes]:
        out = real_b(msg, peer, now)
        wire.extend(out)
        return out

    a.encrypt = rec_a  # type: ignore[method-assign]
    b.encrypt = rec_b  # type: ignore[method-assign]
    a.set_rekeying(1.0, None)
    b.set_rekeying(2.0, None)
    _run(a, b, 0.0, 30.0)
    assert {EHdr.unpack(p).tx_key for p in wire} >= {0, 1}
    d = CaptureDecryptor(KEYS[192])
    one_pass = [d.decrypt(p) for p in wire]
    # the probes sent under a session key before its KEY_DISTR: b could not open them
    # either; a first pass over the capture learns the keys so they open too
    assert 0 < sum(isinstance(r, Dropped) for r in one_pass) <= 4
    d = CaptureDecryptor(KEYS[192])
    d.learn(wire)
    assert all(isinstance(d.decrypt(p), Decrypted) for p in wire)
    assert len(d.session) == 2
    wrong = CaptureDecryptor(KEYS[256])
    res = [wrong.decrypt(p) for p in wire]
    assert all(isinstance(r, Dropped) for r in res)
    assert wrong.counters["bad_tag"] + wrong.counters["no_key"] == len(wire)


# ------------------------------------------------------------------------ bad input


def _keyed_pair() -> tuple[TipcCrypto, TipcCrypto, bytes]:
    a, b = pair(KEYS[256])
    _run(a, b, 0.0, 15.0)
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"payload"), B_ADDR, 15.0)
    return a, b, pkt


def _assert_drop(b: TipcCrypto, pkt: bytes, reason: str, peer: int = A_ADDR) -> None:
    before = dict(b.counters.get(peer, dict.fromkeys(REASONS, 0)))
    res = b.decrypt(pkt, None, 15.0)
    assert isinstance(res, Dropped) and res.reason == reason, res
    after = b.counters[peer]
    assert after[reason] == before[reason] + 1
    assert after["ok"] == before["ok"]


def test_forged_tag_dropped() -> None:
    _a, b, pkt = _keyed_pair()
    _assert_drop(b, pkt[:-1] + bytes([pkt[-1] ^ 1]), "bad_tag")
    _assert_drop(b, pkt[:20] + bytes([pkt[20] ^ 0x80]) + pkt[21:], "bad_tag")
    assert isinstance(b.decrypt(pkt, None, 15.0), Decrypted)  # the real one still passes


def test_truncated_header_dropped() -> None:
    _a, b, pkt = _keyed_pair()
    for n in (1, 4, 15, 16, 32):
        _assert_drop(b, pkt[:n], "malformed", peer=0)
    cfg = EHdr(user=13, tx_key=1, seqno=1, node_id=A_ID).pack()
    _assert_drop(b, cfg[:20], "malformed", peer=0)
    _assert_drop(b, cfg + bytes(16), "malformed", peer=0)


def test_replayed_packet_dropped() -> None:
    _a, b, pkt = _keyed_pair()
    assert isinstance(b.decrypt(pkt, None, 15.0), Decrypted)
    _assert_drop(b, pkt, "replay")
    _assert_drop(b, pkt, "replay")


def test_unknown_key_id_dropped() -> None:
    a, b, _pkt = _keyed_pair()
    h = EHdr(destined=True, tx_key=3, seqno=999, addr=A_ADDR)
    # a key id b has no RX key in: b falls back on its own cluster key (as the kernel,
    # for a rejoined peer), which does not open a packet made with another key
    pkt = encrypt_with(KEYS[128], CLUSTER_KEY, h, data_msg(A_ADDR, B_ADDR, b"x"))
    _assert_drop(b, pkt, "unknown_key_id")
    # the same key id under the shared cluster key is taken and the slot realigned
    pkt = encrypt_with(KEYS[256], CLUSTER_KEY, h, data_msg(A_ADDR, B_ADDR, b"x"))
    assert isinstance(b.decrypt(pkt, None, 15.0), Decrypted)
    assert b.rx[A_ADDR].aead[3] is not None


def test_old_key_after_grace_dropped() -> None:
    a, b = pair(KEYS[256])
    _run(a, b, 0.0, 15.0)
    (old,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"old"), B_ADDR, 15.0)
    a.set_key(KEYS[128], 15.0)
    b.set_key(KEYS[128], 15.0)
    _run(a, b, 15.0, 15.0 + 2 * TX_LASTING + RX_PASSIVE_LIM + 5)
    assert b.rx[A_ADDR].passive == 0 and 1 in b.rx[A_ADDR].freed
    _assert_drop(b, old, "too_old")


def test_key_distr_absurd_length_dropped() -> None:
    """CVE-2021-43267: a KEY_DISTR whose key length exceeds the message."""
    _a, b, _pkt = _keyed_pair()
    good = build_key_distr(A_ADDR, B_ADDR, KEYS[256], 7, PER_NODE_KEY)
    assert isinstance(parse_key_distr(good), KeyDistr)
    for keylen in (0xFFFFFFFF, 1000, 37, 36 + 1, 19, 0):
        bad = bytearray(good)
        struct.pack_into(">I", bad, 40 + 32, keylen)
        before = b.counters[A_ADDR]["malformed"]
        res = b.receive_crypto_msg(bytes(bad), 15.0)
        assert isinstance(res, Dropped) and res.reason == "malformed"
        assert b.counters[A_ADDR]["malformed"] == before + 1
    # a keylen that matches a longer-than-36 payload, and a 21-byte key
    big = build_key_distr(A_ADDR, B_ADDR, KEYS[256], 7, PER_NODE_KEY)
    big = big + b"\0" * 964
    big = struct.pack(">I", (struct.unpack_from(">I", big)[0] & ~0x1FFFF) | len(big)) + big[4:]
    struct_bad = bytearray(big)
    struct.pack_into(">I", struct_bad, 72, 1000)
    assert isinstance(b.receive_crypto_msg(bytes(struct_bad), 15.0), Dropped)
    assert b.rx[A_ADDR].skey is None
    # the good one is taken, and a second copy of the same generation is not
    assert isinstance(b.receive_crypto_msg(good, 15.0), KeyDistr)
    assert isinstance(b.receive_crypto_msg(good, 15.0), Dropped)


def test_fuzz_decrypt_path_raises_nothing() -> None:
    """100,000 seeded inputs: random bytes, and valid packets with flipped bits, cut
    ends, changed key ids; every one is Decrypted or a counted Dropped."""
    a, b = pair(KEYS[256])
    _run(a, b, 0.0, 15.0)
    seeds = [p for m in (state(A_ADDR, B_ADDR), data_msg(A_ADDR, B_ADDR, b"q" * 300),
                         config(A_ADDR, A_ID))
             for p in a.encrypt(m, None if m[0] >> 1 & 0xF == 13 else B_ADDR, 15.0)]
    rnd = random.Random(20261205)
    outcomes = {"ok": 0, "drop": 0}
    for i in range(100_000):
        kind = i % 4
        if kind == 0:
            pkt = rnd.randbytes(rnd.randrange(0, 80))
            if pkt and rnd.random() < 0.5:
                pkt = bytes([0xE0 | pkt[0] & 0x1F]) + pkt[1:]  # make it look like v7
        else:
            pkt = bytearray(rnd.choice(seeds))
            if kind == 1:
                for _ in range(rnd.randrange(1, 4)):
                    pos = rnd.randrange(len(pkt))
                    pkt[pos] ^= 1 << rnd.randrange(8)
            elif kind == 2:
                pkt = pkt[:rnd.randrange(len(pkt))]
            else:
                pkt[1] = rnd.randrange(256)
            pkt = bytes(pkt)
        res = b.decrypt(pkt, rnd.choice((None, A_ADDR, 12345)), 15.0)
        outcomes["ok" if isinstance(res, Decrypted) else "drop"] += 1
        if isinstance(res, Dropped):
            assert res.reason in REASONS
    drops = sum(n for c in b.counters.values() for r, n in c.items() if r != "ok")
    assert outcomes["drop"] > 90_000
    assert drops == outcomes["drop"] and sum(outcomes.values()) == 100_000
    for i in range(5_000):
        msg = bytearray(build_key_distr(A_ADDR, B_ADDR, KEYS[128], i, PER_NODE_KEY))
        msg[rnd.randrange(len(msg))] ^= 1 << rnd.randrange(8)
        b.receive_crypto_msg(bytes(msg[:rnd.randrange(1, len(msg) + 1)]), 15.0)


# ------------------------------------------------------------------------ tipc dump --key


def _dump(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, ["dump", *args], prog_name="tipc")
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    return r.exit_code, r.output


@pytest.mark.parametrize("path, text", [
    (CLUSTER_PCAP, CLUSTER_KEY_TEXT),
    (MASTER_PCAP, MASTER_KEY_TEXT),
    (MASTER_SETKEY_PCAP, MASTER_KEY_TEXT),
])
def test_dump_key_decrypts_every_v7_packet(path: Path, text: str) -> None:
    n_v7 = len(_v7(path))
    code, out = _dump("--check", "--key", text, str(path))
    assert code == 0, out[-2000:]
    last = out.strip().splitlines()[-1]
    total, errors = (int(x) for x in last.replace(" messages, ", " ").split()[:2])
    assert errors == 0 and total >= n_v7
    code, out = _dump("--key", text, str(path))
    assert code == 0
    assert out.count("[decrypted, key") == n_v7
    assert "NAME_DISTRIBUTOR" in out and "LINK_PROTOCOL" in out


def test_dump_wrong_key_counts_failures() -> None:
    n_v7 = len(_v7(CLUSTER_PCAP))
    code, out = _dump("--check", "--key", "0x" + "ab" * 36, str(CLUSTER_PCAP))
    assert code == 1
    assert out.strip().splitlines()[-1] == f"{n_v7} messages, {n_v7} errors"
    assert "not decrypted: bad_tag" in out
    code, out = _dump("--key", "bad", str(CLUSTER_PCAP))
    assert code == 2 and "bad key" in out
    # without a key, v7 packets are reported as such, not crashed on
    code, out = _dump("--check", str(CLUSTER_PCAP))
    assert code == 1 and "encrypted (v7 header): no key" in out


def test_no_rx_key_bit_makes_peer_send_its_key() -> None:
    """b restarts (loses a's session key): it drops a's packets as no_key, says so with
    the N bit, a falls back to the master key for b and sends it its session key; then
    traffic flows again under the session key with nothing more lost."""
    a, b = pair(KEYS[256], master=True, seed=11)
    a.set_rekeying(1.0, None)
    _run(a, b, 0.0, 30.0)
    assert a.tx.active == 1 and b.rx[A_ADDR].active == 1
    b = TipcCrypto(B_ADDR, B_ID, seeded(12), 30.0)
    b.learn_peer(A_ADDR, A_ID)
    b.set_key(KEYS[256], 30.0, master=True)
    a.peer_down(B_ADDR)
    res = _deliver(a, b, data_msg(A_ADDR, B_ADDR, b"lost"), B_ADDR, 30.0)
    assert [getattr(r, "reason", None) for r in res] == ["no_key"]
    (pkt,) = b.encrypt(state(B_ADDR, A_ADDR), A_ADDR, 30.0)
    assert EHdr.unpack(pkt).rx_nokey and EHdr.unpack(pkt).tx_key == 0
    _run(a, b, 30.0, 40.0)
    got = _run(a, b, 40.0, 60.0)
    assert got[1] == _sent(A_ADDR, 80) and got[0] == _sent(B_ADDR, 80)
    assert b.rx[A_ADDR].active == 1 and not b.rx[A_ADDR].nokey
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"z"), B_ADDR, 60.0)
    assert EHdr.unpack(pkt).tx_key == 1
    assert any(e.kind == "distributed" and e.detail == f"to {B_ADDR:08x}"
               for e in a.take_events())


def test_flush_stops_encryption() -> None:
    a, b = pair(KEYS[128])
    a.flush()
    msg = data_msg(A_ADDR, B_ADDR, b"clear again")
    assert a.encrypt(msg, B_ADDR, 1.0) == [msg] and not a.working
    res = b.decrypt(msg, None, 1.0)
    assert isinstance(res, Decrypted) and res.clear


def test_next_deadline_follows_work_and_ticks() -> None:
    a, _b = pair()
    assert a.next_deadline() is None  # no key, nothing scheduled
    a.set_key(KEYS[128], 10.0)
    assert a.next_deadline() == pytest.approx(0.5)  # last tick at 0 + TICK_INTERVAL
    a.tick(10.0)
    assert a.next_deadline() == pytest.approx(10.5)
    a.set_rekeying(10.0, None)
    assert a.next_deadline() == pytest.approx(10.0)
    a.tick(10.0)
    # as the kernel: no rekeying while a key is still pending (no peer uses it yet),
    # only rescheduled
    assert a.tx.pending == 1 and a.tx.aead[2] is None
    assert a.tx.rekey_at == pytest.approx(10.0 + 24 * 3600)
    a.set_rekeying(10.0, 0)
    assert a.tx.rekey_at is None


def test_node_follows_kernel_key_distr() -> None:
    """A TipcCrypto in kpeer-b's place (its address, id and master key) takes all of
    kpeer-a's packets of the real capture, in order and at their times: the kernel's
    KEY_DISTR (a new cluster key, under the master key), the probes with it, the switch
    to it; no packet dropped (no false replay either)."""
    node = TipcCrypto(0x195D0765, b"kpeer-b", seeded(4))
    node.set_key(parse_key(MASTER_KEY_TEXT), 0.0, master=True)
    got: dict[int, int] = {0: 0, 1: 0}
    t0 = None
    distr = []
    for r in read_pcap(MASTER_SETKEY_PCAP):
        if not r.src.startswith("10.77.1.2"):
            continue
        t0 = r.ts if t0 is None else t0
        now = r.ts - t0
        node.tick(now)
        res = node.decrypt(r.payload, None, now)
        assert isinstance(res, Decrypted), (r.frame, res)
        got[res.tx_key] += 1
        if res.msg[0] >> 1 & 0xF == 14:
            distr.append(node.receive_crypto_msg(res.msg, now))
    assert distr == [KeyDistr(0x195D0465, 0, distr[0].gen, CLUSTER_KEY,  # type: ignore[union-attr]
                              parse_key(SECOND_KEY_TEXT))]
    assert got[0] > 50 and got[1] > 50
    assert node.rx[0x195D0465].active == 1
    assert sum(node.counters[0x195D0465][r] for r in REASONS if r != "ok") == 0


@pytest.mark.parametrize("path, text", [(CLUSTER_PCAP, CLUSTER_KEY_TEXT),
                                        (MASTER_PCAP, MASTER_KEY_TEXT)])
def test_reencrypting_kernel_packets_gives_the_same_bytes(path: Path, text: str) -> None:
    """Header packing, nonce, padding and tag bit-exact: the kernel's packet, opened and
    sealed again by encrypt_with() from its parsed header, is the same byte string."""
    key = parse_key(text)
    n = 0
    for p in _v7(path):
        h = EHdr.unpack(p)
        assert h.pack() == p[:h.size]
        padded = decrypt_with(key, CLUSTER_KEY, p)
        inner = TipcCrypto._validate_inner(padded)
        assert padded[len(inner):] == bytes(len(padded) - len(inner))  # zero padding
        assert encrypt_with(key, CLUSTER_KEY, h, inner) == p
        n += 1
    assert n > 100


def test_per_node_keys_set_by_hand() -> None:
    """`set key K nodeid <own>` on each side plus the peer's key `nodeid <peer>`."""
    ka, kb = KEYS[192], KEYS[256]
    a, b = pair()
    a.set_key(ka, 0.0, node_id=A_ID)
    a.set_key(kb, 0.0, node_id=B_ID)
    b.set_key(kb, 0.0, node_id=B_ID)
    b.set_key(ka, 0.0, node_id=A_ID)
    got = _run(a, b, 0.0, 20.0)
    assert got[1] == _sent(A_ADDR, 80) and got[0] == _sent(B_ADDR, 80)
    (pkt,) = a.encrypt(data_msg(A_ADDR, B_ADDR, b"p"), B_ADDR, 20.0)
    # a per-node key seals with the receiver's address in the nonce
    assert decrypt_with(ka, PER_NODE_KEY, pkt, own_addr=B_ADDR)[:41] == data_msg(
        A_ADDR, B_ADDR, b"p")
    with pytest.raises(CryptoError):
        decrypt_with(ka, CLUSTER_KEY, pkt)


def test_new_cluster_key_is_distributed() -> None:
    a, _b = pair(KEYS[128])
    slot = a.set_key(KEYS[256], 1.0)
    (out,) = a.take_outgoing()
    assert out.dnode == 0
    kd = parse_key_distr(out.msg)
    assert (kd.prevnode, kd.mode, kd.key, kd.gen) == (A_ADDR, CLUSTER_KEY, KEYS[256],
                                                       a.tx.aead[slot].gen)  # type: ignore[union-attr]
    a.set_key(KEYS[192], 1.0, master=True)
    assert a.take_outgoing() == []  # the master key is never sent


def test_node_encrypt_equals_plain_encrypt_with() -> None:
    """Twin: the node's path (cached AESGCM, salt as an int) seals exactly as the plain
    encrypt_with() does from the header it wrote."""
    for bits, key in KEYS.items():
        a, _b = pair(key)
        for msg, peer in ((state(A_ADDR, B_ADDR, bits), B_ADDR),
                          (data_msg(A_ADDR, B_ADDR, b"abc"), B_ADDR), (config(A_ADDR, A_ID), None)):
            (pkt,) = a.encrypt(msg, peer, 0.0)
            assert encrypt_with(key, CLUSTER_KEY, EHdr.unpack(pkt), msg) == pkt


def _reference_seal(c: TipcCrypto, slot: int, plain: bytes, rx: object, seqno: int) -> bytes:
    """The header as EHdr describes it, sealed by encrypt_with(): what the node's
    hand-packed _encrypt_slot() must produce, bit for bit."""
    a = c.tx.aead[slot]
    assert a is not None
    w0, w1 = struct.unpack_from(">II", plain, 0)
    user = (w0 >> 25) & 0xF
    h = EHdr(destined=rx is not None, tx_key=slot,
             rx_key_active=rx.active if rx is not None else 0,  # type: ignore[attr-defined]
             rx_nokey=rx.nokey if rx is not None else False,  # type: ignore[attr-defined]
             master_key=c.tx.key_master, seqno=seqno)
    if user == 13:
        h.user, h.node_id = 13, c.own_id
    else:
        if user == 7 and w1 >> 29 == 0:
            h.user, h.keepalive = 7, bool(w0 >> 19 & 1)
        h.addr = struct.unpack_from(">I", plain, 12)[0]
    dest = rx.addr if rx is not None else 0  # type: ignore[attr-defined]
    return encrypt_with(a.key, a.mode, h, plain, dest)


@pytest.mark.parametrize("mode", [CLUSTER_KEY, PER_NODE_KEY])
def test_hand_packed_header_equals_ehdr_path(mode: int) -> None:
    """Twin of the fast header packing: every kind of packet, destined or not, with
    the keepalive bit, the N bit and a per-node key's destination nonce."""
    key = KEYS[256]
    a, _b = pair()
    a.set_key(key, 0.0, node_id=A_ID if mode == PER_NODE_KEY else None)
    slot = a.tx.pending or a.tx.active
    rx = a.peer(B_ADDR)
    msgs = [state(A_ADDR, B_ADDR, 1), state(A_ADDR, B_ADDR, 3, keepalive=False),
            data_msg(A_ADDR, B_ADDR, b"abcde"),
            config(A_ADDR, A_ID)]
    for nokey in (False, True):
        rx.nokey = nokey
        for msg in msgs:
            for side in (rx, None):
                aead = a.tx.aead[slot]
                assert aead is not None
                if side is None or aead.mode == CLUSTER_KEY:
                    nxt = aead.seqno + 1
                else:
                    nxt = side.sndnxt + 1
                got = a._encrypt_slot(slot, msg, side)
                assert got == _reference_seal(a, slot, msg, side, nxt), (msg[:4].hex(), side)

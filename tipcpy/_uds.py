"""The client transport's framing: what tipcpy.socket and tipcd's client server say.

One Unix stream connection per application socket (so the application's ``fileno()`` is
that connection and readiness works). Binary, length-prefixed, no JSON: a frame is

    u32 little-endian L  (bytes that follow)   u8 kind   body (L - 1 bytes)

Several frames travel in one read or write; both ends parse as many as a read gave them.

Addresses travel as 14 bytes ``<BbIII``: addrtype (0 = none), scope (signed: negative =
unbind), then the three words *in struct sockaddr_tipc order*:
SERVICE_RANGE type/lower/upper, SERVICE_ADDR type/instance/domain, SOCKET_ADDR ref/node/0.
(CPython's tuple for TIPC_ADDR_ID is ``(3, node, ref, 0, scope)``; the client converts.)

Requests (client -> tipcd); ``->`` is the answer, R_OK body or R_ERR:

==========  ====  ===================================  ==============================
OPEN        0x01  ``<B`` sotype                        ``<II`` port, node
CLAIM       0x02  ``<Q`` token (accepted connection)   ``<IIII`` port, node, peer port/node
BIND        0x03  addr                                 -
CONNECT     0x04  addr                                 - (then E_CONNECTED / E_CONNERR)
LISTEN      0x05  ``<i`` backlog                       -
SEND        0x06  ``<B`` flags, addr, data             only if flags & SEND_SYNC; a failed
                                                        unsynced send comes as E_ASYNCERR
CONSUMED    0x07  ``<II`` bytes, messages read         none
SHUTDOWN    0x08  ``<i`` how                           -
SETOPT      0x09  ``<Iq`` opt, value                   -
GETOPT      0x0A  ``<I`` opt                           ``<q`` value
SOCKNAME    0x0B  -                                    addr
PEERNAME    0x0C  -                                    addr
PING        0x0D  -                                    - (a barrier: tests, latency)
GROUPJOIN   0x0E  ``<IIII`` type, instance, scope,      - (struct tipc_group_req)
                  flags
GROUPLEAVE  0x0F  -                                    -
==========  ====  ===================================  ==============================

SEND flags: SEND_SYNC (answer R_OK/R_ERR); SEND_NOWAIT (with SEND_SYNC: a send tipcd
cannot accept now is answered EAGAIN instead of held back - non-blocking group sends).

Pushed by tipcd: E_DATA ``<IIIIIIB`` src port, src node, errcode, dest type/lower/upper,
flags (DATA_RETURNED, DATA_HAS_DEST, DATA_SYN, DATA_GROUP) + payload; with DATA_GROUP
the three dest words are the sending member's type, instance and the member event
(0 data, 1 joined, 2 left); E_CONNECTED ``<II`` peer;
E_ACCEPTED ``<QII`` token, peer; E_CONNERR ``<i`` errno (0 = orderly end); E_ASYNCERR
``<i`` errno + utf-8 text. R_ERR is ``<i`` errno + utf-8 text.
"""

from __future__ import annotations

import struct

HDR = struct.Struct("<IB")
HDR_SIZE = HDR.size            # 5
LEN = struct.Struct("<I")
MAX_FRAME = 1 << 17            # larger than any legal frame (66000 B + headers)
ADDR = struct.Struct("<BbIII")
ADDR_SIZE = ADDR.size          # 14
NO_ADDR = ADDR.pack(0, 0, 0, 0, 0)

# requests
OPEN, CLAIM, BIND, CONNECT, LISTEN, SEND, CONSUMED, SHUTDOWN = range(1, 9)
SETOPT, GETOPT, SOCKNAME, PEERNAME, PING = range(9, 14)
GROUPJOIN, GROUPLEAVE = 0x0E, 0x0F
SEND_SYNC = 0x01
SEND_NOWAIT = 0x02
# answers and events
R_OK, R_ERR = 0x80, 0x81
E_DATA, E_CONNECTED, E_ACCEPTED, E_CONNERR, E_ASYNCERR = 0x90, 0x91, 0x92, 0x93, 0x94
DATA_RETURNED, DATA_HAS_DEST, DATA_SYN, DATA_GROUP = 0x01, 0x02, 0x04, 0x08

DATA_HDR = struct.Struct("<IIIIIIB")
DATA_FRAME = struct.Struct("<IBIIIIIIB")    # HDR + DATA_HDR: an E_DATA frame's head in one pack
U8 = struct.Struct("<B")
I32 = struct.Struct("<i")
U32 = struct.Struct("<I")
Q64 = struct.Struct("<q")
U64 = struct.Struct("<Q")
II = struct.Struct("<II")
IIII = struct.Struct("<IIII")
IQ = struct.Struct("<Iq")
QII = struct.Struct("<QII")
IIII_GROUP = struct.Struct("<IIII")

NAMES = {OPEN: "OPEN", CLAIM: "CLAIM", BIND: "BIND", CONNECT: "CONNECT", LISTEN: "LISTEN",
         SEND: "SEND", CONSUMED: "CONSUMED", SHUTDOWN: "SHUTDOWN", SETOPT: "SETOPT",
         GETOPT: "GETOPT", SOCKNAME: "SOCKNAME", PEERNAME: "PEERNAME", PING: "PING",
         GROUPJOIN: "GROUPJOIN", GROUPLEAVE: "GROUPLEAVE"}


def frame(kind: int, body: bytes = b"") -> bytes:
    """One frame: length prefix, kind byte, body."""
    return HDR.pack(len(body) + 1, kind) + body


def err_body(err: int, message: str) -> bytes:
    return I32.pack(err) + message.encode("utf-8", "replace")[:4000]

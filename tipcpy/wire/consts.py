"""Numbers of the TIPC v2 wire protocol, copied from the Linux kernel.

Every value here must match the kernel exactly (``net/tipc/msg.h``,
``include/uapi/linux/tipc.h``, ``tipc_config.h``, ``node.h``) because a tipcpy node
talks to kernel nodes.  The names follow the kernel's so a reader who knows the C
sources can find each number; the reference is ../shared/reference/tipc-reference.md.
"""

from __future__ import annotations

from enum import IntEnum

TIPC_VERSION = 2
"""Protocol version in w0[31:29]; 7 marks an encryption header (see §2.12)."""
TIPC_CRYPTO_VERSION = 7


class User(IntEnum):
    """Message user (w0[28:25]).  0..3 are data importances; the rest internal users."""

    LOW_IMPORTANCE = 0
    MEDIUM_IMPORTANCE = 1
    HIGH_IMPORTANCE = 2
    CRITICAL_IMPORTANCE = 3
    SYSTEM_IMPORTANCE = 4  # internal importance only, never a user on the wire
    BCAST_PROTOCOL = 5
    MSG_BUNDLER = 6
    LINK_PROTOCOL = 7
    CONN_MANAGER = 8
    GROUP_PROTOCOL = 9
    TUNNEL_PROTOCOL = 10
    NAME_DISTRIBUTOR = 11
    MSG_FRAGMENTER = 12
    LINK_CONFIG = 13
    MSG_CRYPTO = 14
    TOP_SRV = 15  # node-local pseudo user, never on the wire


class Importance(IntEnum):
    """Data message importance = the user field of data messages."""

    LOW = 0
    MEDIUM = 1
    HIGH = 2
    CRITICAL = 3
    SYSTEM = 4


# Kernel spellings, handy when porting logic that names them directly.
TIPC_LOW_IMPORTANCE = 0
TIPC_MEDIUM_IMPORTANCE = 1
TIPC_HIGH_IMPORTANCE = 2
TIPC_CRITICAL_IMPORTANCE = 3
TIPC_SYSTEM_IMPORTANCE = 4
SOCK_WAKEUP = 14  # node-local pseudo user sharing the value of MSG_CRYPTO

WIRE_INVALID_USERS = frozenset({4, 15})
"""Users that never appear on the wire: decode() rejects them."""


class DataType(IntEnum):
    """w1 mtype of data messages (user 0..3)."""

    CONN = 0
    MCAST = 1
    NAMED = 2
    DIRECT = 3
    GRP_MEMBER_EVT = 4
    GRP_BCAST = 5
    GRP_MCAST = 6
    GRP_UCAST = 7


class BcastProtoType(IntEnum):
    STATE = 0


BcastProto = BcastProtoType


class BundlerType(IntEnum):
    BUNDLE = 0


class LinkProtoType(IntEnum):
    STATE = 0
    RESET = 1
    ACTIVATE = 2


class ConnMgrType(IntEnum):
    CONN_PROBE = 0
    CONN_PROBE_REPLY = 1
    CONN_ACK = 2


class GroupType(IntEnum):
    JOIN = 0
    LEAVE = 1
    ADV = 2
    ACK = 3
    RECLAIM = 4
    REMIT = 5


class TunnelType(IntEnum):
    SYNCH = 0
    FAILOVER = 1


class NameDistrType(IntEnum):
    PUBLICATION = 0
    WITHDRAWAL = 1


class FragType(IntEnum):
    FIRST_FRAGMENT = 0
    FRAGMENT = 1
    LAST_FRAGMENT = 2


class DscType(IntEnum):
    REQ = 0
    RESP = 1
    TRIAL = 2
    TRIAL_FAIL = 3


class CryptoType(IntEnum):
    KEY_DISTR = 0


MTYPE_ENUMS: dict[int, type[IntEnum]] = {
    0: DataType,
    1: DataType,
    2: DataType,
    3: DataType,
    5: BcastProtoType,
    6: BundlerType,
    7: LinkProtoType,
    8: ConnMgrType,
    9: GroupType,
    10: TunnelType,
    11: NameDistrType,
    12: FragType,
    13: DscType,
    14: CryptoType,
}
"""Which mtype enum applies to each wire user (for printing)."""


def user_name(user: int) -> str:
    """Kernel name of a user value ("LINK_PROTOCOL"), or the number for unknown ones."""
    if user <= 3:
        return ("LOW", "MEDIUM", "HIGH", "CRITICAL")[user]
    try:
        return User(user).name
    except ValueError:
        return str(user)


def mtype_name(user: int, mtype: int) -> str:
    """Name of mtype for the given user ("RESET", "NAMED"), or the number if unknown."""
    enum = MTYPE_ENUMS.get(user)
    if enum is None:
        return str(mtype)
    try:
        return enum(mtype).name
    except ValueError:
        return str(mtype)


class ErrCode(IntEnum):
    """w1[28:25] of data messages; also reported to sockets in TIPC_ERRINFO."""

    TIPC_OK = 0
    TIPC_ERR_NO_NAME = 1
    TIPC_ERR_NO_PORT = 2
    TIPC_ERR_NO_NODE = 3
    TIPC_ERR_OVERLOAD = 4
    TIPC_CONN_SHUTDOWN = 5


class Cap:
    """Node capabilities advertised in LINK_CONFIG w1[27:15] (node.h).

    Plain ints, not an IntFlag: ``caps & Cap.X`` runs on every packet, and with an
    IntFlag operand that is enum.Flag.__and__ in Python (5% of a forming cluster's
    simulation)."""

    SYN_BIT = 0x001
    BCAST_SYNCH = 0x002
    BCAST_STATE_NACK = 0x004
    BLOCK_FLOWCTL = 0x008
    BCAST_RCAST = 0x010
    NODE_ID128 = 0x020
    LINK_PROTO_SEQNO = 0x040
    MCAST_RBCTL = 0x080
    GAP_ACK_BLOCK = 0x100
    TUNNEL_ENHANCED = 0x200
    NAGLE = 0x400
    NAMED_BCAST = 0x800
    ALL = 0xFFF


TIPC_NODE_CAPABILITIES = int(Cap.ALL)

# ---------------------------------------------------------------- header sizes
SHORT_H_SIZE = 24
BASIC_H_SIZE = 32
NAMED_H_SIZE = 40
MCAST_H_SIZE = 44
GROUP_H_SIZE = 44
INT_H_SIZE = 40
MIN_H_SIZE = 24
MAX_H_SIZE = 60
DSC_H_SIZE = MAX_H_SIZE
"""LINK_CONFIG messages always use the full 60-byte header."""

TIPC_MAX_USER_MSG_SIZE = 66000
MAX_USER_MSG_SIZE = TIPC_MAX_USER_MSG_SIZE
MAX_MSG_SIZE = MAX_H_SIZE + TIPC_MAX_USER_MSG_SIZE
"""Largest whole message (header + data): the bound for reassembly."""
MAX_SIZE_FIELD = 0x1FFFF
MAX_FORWARD_SIZE = 1024
"""At most this much data is returned in a rejected (reversed) message."""

NODE_ID_LEN = 16
TIPC_NODEID_LEN = 16
NODE_ID_STR_LEN = 33
TIPC_MAX_IF_NAME = 16
TIPC_MAX_MEDIA_NAME = 16
TIPC_MAX_BEARER_NAME = 32
TIPC_MAX_LINK_NAME = 68
DISTR_ITEM_SIZE = 20
MEDIA_INFO_OFFSET_WORDS = 5
MEDIA_INFO_SIZE = 32
LINK_CONFIG_SIZE = MAX_H_SIZE + NODE_ID_LEN
"""76: a kernel discovery message is header + 16-byte node id."""

# crypto (§2.12)
EHDR_SIZE = 16
EHDR_CFG_SIZE = 28
AES_GCM_TAG_SIZE = 16
EMSG_OVERHEAD = EHDR_SIZE + AES_GCM_TAG_SIZE
TIPC_AEAD_ALG_NAME = 32
TIPC_AEAD_KEYLEN_MIN = 16 + 4
TIPC_AEAD_KEYLEN_MAX = 32 + 4
AEAD_KEY_HDR_SIZE = TIPC_AEAD_ALG_NAME + 4
TIPC_AEAD_KEY_SIZE_MAX = AEAD_KEY_HDR_SIZE + TIPC_AEAD_KEYLEN_MAX

# Gap ACK blocks
MAX_GAP_ACK_BLKS = 128
MAX_GAP_ACK_BLKS_PER_KIND = 64

# ---------------------------------------------------------------- addressing
TIPC_ZONE_SCOPE = 1
TIPC_CLUSTER_SCOPE = 2
TIPC_NODE_SCOPE = 3


class Scope(IntEnum):
    ZONE = 1  # deprecated, treated as cluster
    CLUSTER = 2
    NODE = 3


TIPC_ADDR_MCAST = 1
TIPC_SERVICE_RANGE = 1
TIPC_SERVICE_ADDR = 2
TIPC_SOCKET_ADDR = 3

TIPC_NODE_STATE = 0
TIPC_TOP_SRV = 1
TIPC_LINK_STATE = 2
TIPC_RESERVED_TYPES = 64

TIPC_SUB_PORTS = 0x01
TIPC_SUB_SERVICE = 0x02
TIPC_SUB_CANCEL = 0x04
TIPC_SUB_CLUSTER_SCOPE = 0x20
TIPC_SUB_NODE_SCOPE = 0x40
TIPC_SUB_NO_STATUS = 0x80
TIPC_FILTER_MASK = TIPC_SUB_PORTS | TIPC_SUB_SERVICE | TIPC_SUB_CANCEL
TIPC_WAIT_FOREVER = 0xFFFFFFFF
TIPC_PUBLISHED = 1
TIPC_WITHDRAWN = 2
TIPC_SUBSCR_TIMEOUT = 3
TIPC_MAX_PUBL = 65535
TIPC_MAX_SUBSCR = 65535


# ---------------------------------------------------------------- media
class MediaType(IntEnum):
    """Byte 3 of the 32-byte media info in discovery messages."""

    ETH = 1
    IB = 2
    UDP = 3


TIPC_MEDIA_TYPE_ETH = 1
TIPC_MEDIA_TYPE_IB = 2
TIPC_MEDIA_TYPE_UDP = 3
ETH_P_TIPC = 0x88CA
ETH_P_IP = 0x0800
ETH_P_IPV6 = 0x86DD
UDP_PORT_DEFAULT = 6118
TIPC_DEF_LINK_UDP_MTU = 14000
TIPC_DEF_LINK_UDP_MTU_V6 = 1280
MAX_BEARERS = 3
MAX_LINKS_PER_NODE = 2

# ---------------------------------------------------------------- net
TIPC_DEF_NET_ID = 4711
TIPC_MIN_NET_ID = 1
TIPC_MAX_NET_ID = 9999

# ---------------------------------------------------------------- link timers and limits (§3)
TIPC_MIN_LINK_PRI = 0
TIPC_DEF_LINK_PRI = 10
TIPC_MAX_LINK_PRI = 31
TIPC_MEDIA_LINK_PRI = 32  # "use the media default"
TIPC_MIN_LINK_TOL_MS = 50
TIPC_DEF_LINK_TOL_MS = 1500
TIPC_MAX_LINK_TOL_MS = 30000
TIPC_MIN_LINK_WIN = 16
TIPC_DEF_LINK_WIN = 50
TIPC_MAX_LINK_WIN = 8191
BCLINK_WIN_DEFAULT = 50
BCLINK_WIN_MIN = 32
KEEPALIVE_MAX_MS = 500
"""Link timer interval = min(tolerance / 4, 500 ms) -> 375 ms at default tolerance."""
NODE_IDLE_TIMER_MS = 10000
RESET_MSG_EARLY_TICKS = 5
"""A link in RESET sends RESET_MSG on each of its first 5 ticks ..."""
RESET_MSG_EVERY_N_TICKS = 16
"""... and then on every 16th tick."""
STATE_ACK_RATE = TIPC_MIN_LINK_WIN
"""Send a STATE (ack) after this many in-sequence packets."""
NACK_DEFERRED_FIRST = 3
NACK_DEFERRED_EVERY = 16
RCV_WINDOW = 8191
"""Receiver drops packets outside [rcv_nxt, rcv_nxt + 8191]."""
TIPC_UC_RETR_TIME_MS = 1
TIPC_BC_RETR_LIM_MS = 10
RETR_FAIL_TOL_MULT = 10
"""Link reset when the retransmitted head is still unacked after 10 x tolerance."""
SSTHRESH_MIN = 300
SEQNO_MOD = 0x10000
SEQNO_HALF = 0x8000
PROTO_SEQNO_OFFSET = 32767
"""RESET/ACTIVATE (and STATE without LINK_PROTO_SEQNO) carry snd_nxt + 32767."""

TIPC_DISC_INIT_MS = 125
TIPC_DISC_FAST_MS = 1000
TIPC_DISC_SLOW_MS = 60000
ADDR_TRIAL_MS = 1000
NODE_CLEANUP_AFTER_MS = 300000
TIPC_DEF_MON_THRESHOLD = 32
MAX_MON_DOMAIN = 64

# ---------------------------------------------------------------- sockets (§1.1, §3)
TIPC_CONN_TIMEOUT_MS = 8000
CONN_PROBING_INTV_MS = 3600000
FLOWCTL_BLK_SZ = 1024
FLOWCTL_MSG_WIN = 512
RCVBUF_MIN = 512 * 1024
RCVBUF_DEF = 2 * 1024 * 1024
RCVBUF_MAX = 16 * 1024 * 1024
TIPC_ACK_RATE = 4
NAGLE_START_INIT = 4
NAGLE_START_MAX = 1024
TIPC_METHOD_EXPIRE_MS = 5000
TIPC_MCAST_AUTOSELECT_RATIO = 10


# ---------------------------------------------------------------- socket options (uapi)
# SOL_TIPC socket option numbers from include/uapi/linux/tipc.h: one definition for the
# daemon's socket layer and the application-facing tipcpy.socket.
TIPC_IMPORTANCE = 127
TIPC_SRC_DROPPABLE = 128
TIPC_DEST_DROPPABLE = 129
TIPC_CONN_TIMEOUT = 130
TIPC_NODE_RECVQ_DEPTH = 131
TIPC_SOCK_RECVQ_DEPTH = 132
TIPC_MCAST_BROADCAST = 133
TIPC_MCAST_REPLICAST = 134
TIPC_GROUP_JOIN = 135
TIPC_GROUP_LEAVE = 136
TIPC_SOCK_RECVQ_USED = 137
TIPC_NODELAY = 138

"""TIPC v2 wire codec (sans-IO): message headers, users, bundles and fragments.

``decode(buf) -> Msg`` picks the subclass by user; ``Msg.encode()`` gives the bytes
back identically; ``Msg.build(user, mtype, ...)`` makes new messages.  Every decoder
raises :class:`DecodeError` (a ValueError) naming field and offset.
"""

from tipcpy.wire.items import (
    DecodeError,
    DistrItem,
    EthMediaAddr,
    Event,
    GapAck,
    GapAckBlocks,
    MediaAddrError,
    RawMediaAddr,
    Subscr,
    UdpMediaAddr,
)
from tipcpy.wire.msg import (
    BcastProtoMsg,
    BundleMsg,
    ConnMgrMsg,
    CryptoMsg,
    DataMsg,
    DiscMsg,
    FragmentMsg,
    GroupProtoMsg,
    LinkProtoMsg,
    Msg,
    NameDistrMsg,
    TunnelMsg,
    decode,
    default_hsize,
    msg_class,
)

__all__ = [
    "BcastProtoMsg",
    "BundleMsg",
    "ConnMgrMsg",
    "CryptoMsg",
    "DataMsg",
    "DecodeError",
    "DiscMsg",
    "DistrItem",
    "EthMediaAddr",
    "Event",
    "FragmentMsg",
    "GapAck",
    "GapAckBlocks",
    "GroupProtoMsg",
    "LinkProtoMsg",
    "MediaAddrError",
    "Msg",
    "NameDistrMsg",
    "RawMediaAddr",
    "Subscr",
    "TunnelMsg",
    "UdpMediaAddr",
    "decode",
    "default_hsize",
    "msg_class",
]

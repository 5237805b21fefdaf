"""SIP media: SDP offer/answer and RTP/RTCP for G.711 and G.722 calls bridged into the media engine.

`sdp` (parse/serialize), `address` (what a c= line may name and the node may send to: AddressError, 488/301),
`offer_answer` (RFC 3264 rules, 488 on no common codec), `packet` (RTP header),
`rtcp` (SR/RR/SDES/BYE), `stats` (RFC 3550 receiver statistics, CallQuality), `jitter` (adaptive playout),
`ports` (even port pairs), `transcode` (batched 16k<->8k), `stream` (one call's receive logic, RTCP, RtpConfig),
`bank` (the engine-thread batch: socket I/O, G.711/G.722, playout), `session` (RtpSession: the event loop's lifecycle,
callbacks, media timeout). Importers use the names below.
"""

from opencomms import blas as _blas  # noqa: F401  (pins BLAS threads before numpy loads)
from opencomms._compiled import activated as _compiled  # noqa: F401  (compiled media path, if built)

from .address import AddressError
from .bank import RtpBank
from .jitter import LOST, JitterBuffer, JitterConfig
from .offer_answer import (
    ALL_CODECS,
    DEFAULT_CODECS,
    G722,
    PCMA,
    PCMU,
    Answer,
    Codec,
    LocalSdp,
    NegotiatedAudio,
    NegotiationError,
    accept_answer,
    answer,
    codecs_named,
    make_offer,
)
from .packet import RtpError, RtpPacket
from .ports import PortAllocator, PortsExhausted
from .rtcp import RtcpError
from .sdp import Direction, SdpError, SessionDescription
from .session import RtpSession, StreamBank
from .stats import CallQuality
from .stream import RtpConfig

__all__ = [
    "ALL_CODECS",
    "DEFAULT_CODECS",
    "G722",
    "LOST",
    "PCMA",
    "PCMU",
    "AddressError",
    "Answer",
    "CallQuality",
    "Codec",
    "Direction",
    "JitterBuffer",
    "JitterConfig",
    "LocalSdp",
    "NegotiatedAudio",
    "NegotiationError",
    "PortAllocator",
    "PortsExhausted",
    "RtcpError",
    "RtpBank",
    "RtpConfig",
    "RtpError",
    "RtpPacket",
    "RtpSession",
    "SdpError",
    "SessionDescription",
    "StreamBank",
    "accept_answer",
    "answer",
    "codecs_named",
    "make_offer",
]

"""A testing kit for bots: a real platform in the test's event loop and a virtual phone that calls bots.

`TestPlatform` runs a node (HTTP and SIP on loopback), registers bots with numbers and creates meetings;
`VirtualCaller` dials them over real SIP/RTP, hears prompts and tones, presses keys, plays WAVs and hangs up.
`RecordingBot` and `GraphClient` are a ready-made webhook and client; `running_node` is the bare node.
Nothing here is faked.
"""

from opencomms import blas as _blas  # noqa: F401  (pins BLAS threads before numpy loads)
from opencomms.testing.audio import Match, contains, find_signal, speechlike
from opencomms.testing.caller import CallFailed, CallState, TimelineEntry, VirtualCall, VirtualCaller
from opencomms.testing.harness import GraphClient, Notification, RecordingBot, running_node
from opencomms.testing.listen import HeardTone, SpeechSegment
from opencomms.testing.platform import ALL_CALL_PERMISSIONS, BotCredentials, TestBot, TestMeeting, TestPlatform

__all__ = [
    "ALL_CALL_PERMISSIONS",
    "BotCredentials",
    "CallFailed",
    "CallState",
    "GraphClient",
    "HeardTone",
    "Match",
    "Notification",
    "RecordingBot",
    "SpeechSegment",
    "TestBot",
    "TestMeeting",
    "TestPlatform",
    "TimelineEntry",
    "VirtualCall",
    "VirtualCaller",
    "contains",
    "find_signal",
    "running_node",
    "speechlike",
]

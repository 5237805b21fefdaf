"""Helpers to run a real node and real bot HTTP servers on loopback, for tests, the demo and benchmarks.

Everything here speaks real HTTP; nothing is faked. (The fuller bot-author testing kit comes with the SDK.)
"""

from opencomms.testing.harness import GraphClient, Notification, RecordingBot, running_node

__all__ = ["GraphClient", "Notification", "RecordingBot", "running_node"]

"""The component knobs of the node's configuration reach the components that use them (a node built, not started)."""

from __future__ import annotations

import asyncio

from opencomms.config import load_config
from opencomms.server import Node
from opencomms.store.conversations_sqlite import SqliteConversationStore

ENV = {
    "OPENCOMMS_STORE_URL": "memory://",
    "OPENCOMMS_SIP__PORT": "0",
    "OPENCOMMS_SIP__TIMER_T1": "0.1",
    "OPENCOMMS_SIP__TIMER_T2": "1.5",
    "OPENCOMMS_SIP__TIMER_T4": "2.5",
    "OPENCOMMS_SIP__JITTER_MIN_DELAY_MS": "60",
    "OPENCOMMS_SIP__JITTER_MAX_DELAY_MS": "300",
    "OPENCOMMS_SIP__JITTER_CAPACITY": "32",
    "OPENCOMMS_SIP__JITTER_IDLE_AFTER_FRAMES": "7",
    "OPENCOMMS_SIP__JITTER_JUMP_MS": "2000",
    "OPENCOMMS_SIP__JITTER_SHRINK_WINDOW_FRAMES": "50",
    "OPENCOMMS_CALLS__DIAL_TIMEOUT": "33",
    "OPENCOMMS_CALLS__REDIRECT_SINGLE_TIMEOUT": "11",
    "OPENCOMMS_CALLS__REDIRECT_MULTIPLE_TIMEOUT": "22",
    "OPENCOMMS_MEDIA__ENGINE_INBOUND_QUEUE_FRAMES": "12",
    "OPENCOMMS_MEDIA__ENGINE_MAX_LAG_TICKS": "9",
    "OPENCOMMS_MEDIA__CONFERENCE_TALKERS": "5",
    "OPENCOMMS_MEDIA__CONFERENCE_SELECT_ABOVE": "8",
    "OPENCOMMS_THROTTLE__MAX_APPS": "10",
    "OPENCOMMS_MEETINGS__DIAL_IN_NUMBER": "+14255550100",
    "OPENCOMMS_MEETINGS__RECORD_MEETINGS": "true",
    "OPENCOMMS_MEETINGS__RECORDING_MAX_SECONDS": "600",
    "OPENCOMMS_MEETINGS__MAX_RECORDED_MEETINGS": "3",
    "OPENCOMMS_MEETINGS__TRANSCRIPT_GRACE": "1.5",
    "OPENCOMMS_MEDIA__RECORDING_MAX_AGE": "7200",
    "OPENCOMMS_SIGNIN__CODE_LIFETIME": "42",
    "OPENCOMMS_SIGNIN__START_BURST": "7",
    "OPENCOMMS_MEDIA__PROCESS": "false",  # the engine thread, whose engine this test reads
}


def test_component_knobs_reach_their_components() -> None:
    node = Node(load_config(env=ENV))
    try:
        assert node.sip is not None
        timers = node.sip.endpoint.config.timers
        assert (timers.t1, timers.t2, timers.t4) == (0.1, 1.5, 2.5) and timers.b == 6.4
        jitter = node.sip.rtp_config.jitter
        assert (jitter.min_delay_ms, jitter.max_delay_ms, jitter.capacity) == (60, 300, 32)
        assert (jitter.idle_after_frames, jitter.jump_ms, jitter.shrink_window_frames) == (7, 2000, 50)
        t = node.calls.timeouts
        assert (t.dial_timeout, t.redirect_single_timeout, t.redirect_multiple_timeout) == (33, 11, 22)
        assert node.meetings.config.dial_in_number == "+14255550100"
        assert node.api.signin.config.code_lifetime == 42 and node.api.signin.starts.burst == 7
        assert node.engine.max_lag_ticks == 9
        assert node.engine.engine._inbound._frames == 12
        talkers = node.engine.engine._mixes.talkers.config
        assert (talkers.talkers, talkers.select_above) == (5, 8)
        assert node.api.throttle._buckets.max_keys == 10
        art = node.meeting_artifacts
        assert (art.record_meetings, art.max_seconds, art.max_recordings, art.transcript_grace) == (True, 600, 3, 1.5)
        assert art.artifacts.retention_seconds == 7200 and node.api.meeting_artifacts is art.artifacts
    finally:
        node.store.close()


def test_ledger_knobs_reach_the_ledger_and_its_sqlite_store(tmp_path: object) -> None:
    env = {
        "OPENCOMMS_STORE_URL": f"sqlite:///{tmp_path}/node.db",
        "OPENCOMMS_SIP__ENABLED": "false",
        "OPENCOMMS_LEDGER__RETRIES": "5",
        "OPENCOMMS_LEDGER__CACHE_SIZE": "77",
        "OPENCOMMS_LEDGER__MAX_BATCH": "9",
        "OPENCOMMS_LEDGER__WRITER_THREAD": "true",
    }
    node = Node(load_config(env=env))
    try:
        ledger = node.calls.core.ledger
        assert (ledger.retries, ledger.cache_size) == (5, 77)
        store = node.conversations
        assert isinstance(store, SqliteConversationStore)
        assert store.max_batch == 9 and store._thread is not None
    finally:
        asyncio.run(store.aclose())
        node.store.close()

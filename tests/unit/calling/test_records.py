"""Call-record documents from a leg's media figures: Graph's shape, durations, versions, $expand, tenants."""

from __future__ import annotations

from opencomms.calling.model import Call
from opencomms.calling.records import iso_duration, record_leg, streams, view
from opencomms.domain import results
from opencomms.domain.calls import CallDirection, CallState
from opencomms.rtp.stats import CallQuality
from opencomms.store.memory import MemoryStore

PHONE = {"@odata.type": "#microsoft.graph.identitySet", "phone": {"id": "+14255550100"}}
APP = {"@odata.type": "#microsoft.graph.identitySet", "applicationInstance": {"id": "i1"}}
QUALITY = CallQuality(500, 480, 20, 4.0, 12.5, 31.0, 3, 1.5, 8.0, 7)


def leg(call_id: str = "leg1") -> Call:
    return Call(
        id=call_id,
        tenant_id="t1",
        app_id="",
        direction=CallDirection.OUTGOING,
        state=CallState.ESTABLISHED,
        conversation_id="chain1",
        my_participant_id="p1",
        source_id="1",
        identity=PHONE,
        source={"identity": PHONE},
        targets=[{"identity": APP}],
        requested_modalities=["audio"],
        created_at=1_700_000_000.0,
        external="k",
        connected=True,
    )


def test_iso_durations() -> None:
    assert iso_duration(16.0) == "PT0.016S"
    assert iso_duration(0.0) == "PT0S"
    assert iso_duration(1500.0) == "PT1.5S"
    assert iso_duration(None) is None


def test_streams_of_a_phone_that_called() -> None:
    inbound, outbound = streams(QUALITY, "PCMA", True, "s", "e")
    assert inbound["streamDirection"] == "callerToCallee" and outbound["streamDirection"] == "calleeToCaller"
    assert inbound["averagePacketLossRate"] == 0.04 and inbound["packetUtilization"] == 480
    assert inbound["averageJitter"] == "PT0.0125S" and inbound["averageRoundTripTime"] == "PT0.031S"
    assert outbound["averagePacketLossRate"] == 0.015 and outbound["packetUtilization"] == 500
    assert outbound["averageJitter"] == "PT0.008S" and inbound["audioCodec"] == "pcma"


def test_record_document_versions_expand_and_tenant() -> None:
    store = MemoryStore()
    record = record_leg(store, leg(), results.PSTN_HUNG_UP, QUALITY, "PCMU", group=False, now=1_700_000_060.0)
    assert record["version"] == 1 and record["endDateTime"] == "2023-11-14T22:14:20.000Z"
    assert record["organizer"] == PHONE and record["participants"] == [PHONE, APP]
    record_leg(store, leg("leg2"), results.MEDIA_LOST, QUALITY, "PCMU", group=False, now=1_700_000_070.0)
    plain = view(store, "t1", "chain1")
    assert plain is not None and "sessions" not in plain and plain["version"] == 2
    sessions = view(store, "t1", "chain1", "sessions")
    assert sessions is not None and [s["id"] for s in sessions["sessions"]] == ["leg1", "leg2"]
    assert "segments" not in sessions["sessions"][0]
    assert sessions["sessions"][1]["failureInfo"] == {"stage": "midcall", "reason": results.MEDIA_LOST.message}
    full = view(store, "t1", "chain1", "sessions($expand=segments)")
    assert full is not None and len(full["sessions"][0]["segments"][0]["media"][0]["streams"]) == 2
    assert view(store, "t2", "chain1") is None and view(store, "t1", "nope") is None

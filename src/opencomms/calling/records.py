"""Call records: the media quality of each external (SIP) leg, kept in Graph's callRecord shape.

When an external leg ends, its RTP/RTCP figures (`CallQuality`) become one `session` of the conversation's
`callRecord` (id = callChainId) with one segment, one `main-audio` media and two streams: what we received from
the peer (measured here: loss, jitter, packets) and what we sent it (as its RTCP reports said), both with the
round-trip time from RTCP. The document lives in the store (kind `callRecord`, key callChainId) with its tenant;
a later leg of the same conversation adds its session and raises `version`. `view()` gives the Graph JSON for
`GET /communications/callRecords/{id}` with Graph's `$expand` rules. Pure apart from the store it is handed.

Where Graph's fields need more than RTCP gives (documented): `maxJitter`/`maxPacketLossRate`/`maxRoundTripTime`
repeat the call's final figures; `streamId` is "1" for the stream the peer sent, "2" for ours.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from opencomms.calling.model import Call, JsonObj
from opencomms.domain.calls import CallDirection
from opencomms.domain.results import ResultInfo
from opencomms.rtp.stats import CallQuality
from opencomms.store.base import Store

log = logging.getLogger("opencomms.records")

KIND = "callRecord"
PARTICIPANT = "#microsoft.graph.callRecords.participantEndpoint"
SERVICE = "#microsoft.graph.callRecords.serviceEndpoint"


def iso_time(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def iso_duration(ms: float | None) -> str | None:
    """Milliseconds as an ISO 8601 duration in seconds, as Graph writes them ('PT0.016S')."""
    if ms is None:
        return None
    seconds = f"{max(0.0, ms) / 1000.0:.4f}".rstrip("0").rstrip(".")
    return f"PT{seconds}S"


def _fraction(percent: float | None) -> float | None:
    return None if percent is None else round(percent / 100.0, 5)


def streams(quality: CallQuality, codec: str, phone_is_caller: bool, start: str, end: str) -> list[JsonObj]:
    """The two mediaStreams of a leg: the peer's audio as we received it, and ours as the peer reported it."""
    received = quality.packets_received
    concealed = quality.concealed_frames
    rtt = iso_duration(quality.rtt_ms)
    common = {
        "startDateTime": start,
        "endDateTime": end,
        "audioCodec": codec.lower() if codec.lower() in ("pcmu", "pcma", "g722", "opus") else "unknown",
        "averageRoundTripTime": rtt,
        "maxRoundTripTime": rtt,
        "wasMediaBypassed": False,
    }
    inbound = {
        "streamId": "1",
        "streamDirection": "callerToCallee" if phone_is_caller else "calleeToCaller",
        **common,
        "averagePacketLossRate": _fraction(quality.loss_percent),
        "maxPacketLossRate": _fraction(quality.loss_percent),
        "averageJitter": iso_duration(quality.jitter_ms),
        "maxJitter": iso_duration(quality.jitter_ms),
        "averageRatioOfConcealedSamples": round(concealed / (received + concealed), 5) if received + concealed else 0.0,
        "packetUtilization": received,
    }
    outbound = {
        "streamId": "2",
        "streamDirection": "calleeToCaller" if phone_is_caller else "callerToCallee",
        **common,
        "averagePacketLossRate": _fraction(quality.remote_loss_percent),
        "maxPacketLossRate": _fraction(quality.remote_loss_percent),
        "averageJitter": iso_duration(quality.remote_jitter_ms),
        "maxJitter": iso_duration(quality.remote_jitter_ms),
        "packetUtilization": quality.packets_sent,
    }
    return [inbound, outbound]


def _endpoint(identity: JsonObj | None, phone: bool) -> JsonObj:
    if not phone:
        return {"@odata.type": SERVICE, "userAgent": {"@odata.type": "#microsoft.graph.callRecords.serviceUserAgent"}}
    out: JsonObj = {
        "@odata.type": PARTICIPANT,
        "userAgent": {"@odata.type": "#microsoft.graph.callRecords.clientUserAgent"},
    }
    if identity:
        out["identity"] = identity
    return out


def _failure(reason: ResultInfo, connected: bool) -> JsonObj | None:
    if reason.code < 400:
        return None
    return {"stage": "midcall" if connected else "callSetup", "reason": reason.message}


def _other(call: Call) -> JsonObj | None:
    """The identity of the party at the leg's other end: its target when it placed the call, else its caller."""
    if call.direction is CallDirection.OUTGOING:
        return call.targets[0].get("identity") if call.targets else None
    identity: JsonObj | None = call.source.get("identity")
    return identity


def session(
    call: Call, reason: ResultInfo, quality: CallQuality | None, codec: str, ended_at: float, *, group: bool = False
) -> JsonObj:
    """One callRecords.session (with its single segment) for leg `call`. An external leg (`quality` given) is the
    phone against the platform; a bot's leg (`quality` None: its media never left the node, no RTP figures) is the
    bot against its peer, or against the conference service in a group call or meeting."""
    placed = call.direction is CallDirection.OUTGOING  # this leg's party placed the call
    me = _endpoint(call.identity, True)
    if quality is not None:
        peer = _endpoint(_other(call), False)
    else:
        peer = _endpoint(None, False) if group else _endpoint(_other(call) or {}, True)
    caller, callee = (me, peer) if placed else (peer, me)
    start, end = iso_time(call.created_at), iso_time(ended_at)
    failure = _failure(reason, call.connected)
    segment = {
        "id": call.id,
        "startDateTime": start,
        "endDateTime": end,
        "caller": caller,
        "callee": callee,
        "failureInfo": failure,
        "media": [
            {
                "label": "main-audio",
                "callerNetwork": {"networkTransportProtocol": "udp"},
                "calleeNetwork": {"networkTransportProtocol": "udp"},
                "streams": streams(quality, codec, placed, start, end)
                if call.connected and quality is not None
                else [],
            }
        ],
    }
    return {
        "id": call.id,
        "modalities": ["audio"],
        "startDateTime": start,
        "endDateTime": end,
        "isTest": False,
        "caller": caller,
        "callee": callee,
        "failureInfo": failure,
        "segments": [segment],
    }


def add_session(
    doc: JsonObj | None,
    call: Call,
    reason: ResultInfo,
    quality: CallQuality | None,
    codec: str,
    *,
    group: bool,
    now: float,
) -> JsonObj:
    """The stored callRecord document `doc` (a new one if None) with leg `call`'s session added (or replaced).
    Pure; the caller raises `version` once per write."""
    key = call.conversation_id
    phone_is_caller = call.direction is CallDirection.OUTGOING
    start, end = iso_time(call.created_at), iso_time(now)
    if doc is None:
        organizer = call.identity if phone_is_caller else call.source.get("identity")
        doc = {
            "tenantId": call.tenant_id,
            "record": {
                "id": key,
                "version": 0,
                "type": "groupCall" if group else "peerToPeer",
                "modalities": ["audio"],
                "startDateTime": start,
                "endDateTime": end,
                "lastModifiedDateTime": end,
                "joinWebUrl": None,
                "organizer": organizer,
                "participants": [],
                "sessions": [],
            },
        }
    record: JsonObj = doc["record"]
    new = session(call, reason, quality, codec, now, group=group)
    record["sessions"] = [s for s in record["sessions"] if s["id"] != call.id] + [new]
    record["startDateTime"] = min(record["startDateTime"], start)
    record["endDateTime"] = max(record["endDateTime"], end)
    record["lastModifiedDateTime"] = max(record["lastModifiedDateTime"], end)
    parties = [call.identity, call.source.get("identity") if not phone_is_caller else None]
    if phone_is_caller and call.targets:
        parties.append(call.targets[0].get("identity"))
    for party in parties:
        if party and party not in record["participants"]:
            record["participants"].append(party)
    return doc


def record_leg(
    store: Store,
    call: Call,
    reason: ResultInfo,
    quality: CallQuality | None,
    codec: str,
    *,
    group: bool,
    now: float,
) -> JsonObj:
    """Add external leg `call`'s session (with its RTP `quality`) to its conversation's callRecord (created on first
    use); returns the record. Bot legs are written together by `record_legs`."""

    def change(current: JsonObj | None) -> JsonObj:
        doc = add_session(current, call, reason, quality, codec, group=group, now=now)
        doc["record"]["version"] += 1
        return doc

    record: JsonObj = store.update(KIND, call.conversation_id, change)["record"]
    if quality is None:
        return record
    log.info(
        "call quality",
        extra={
            "call_id": call.id,
            "callChainId": call.conversation_id,
            "phone": str((call.identity.get("phone") or call.identity.get("user") or {}).get("id") or ""),
            "packets_sent": quality.packets_sent,
            "packets_received": quality.packets_received,
            "loss_percent": quality.loss_percent,
            "jitter_ms": quality.jitter_ms,
            "rtt_ms": quality.rtt_ms,
            "remote_loss_percent": quality.remote_loss_percent,
        },
    )
    return record


def record_legs(
    store: Store, legs: list[tuple[Call, ResultInfo, float]], *, group: bool, fresh: bool
) -> JsonObj | None:
    """Add the sessions of ended bot legs (no RTP of their own) to their conversation's callRecord in one write:
    `legs` are (leg, its result, when it ended), all of one conversation. `fresh`: the record cannot exist yet (no
    external leg took part), so it is not read first. Returns the record (None: no legs)."""
    if not legs:
        return None
    key = legs[0][0].conversation_id
    doc = None if fresh else store.get(KIND, key)
    for call, reason, at in legs:
        doc = add_session(doc, call, reason, None, "unknown", group=group, now=at)
    assert doc is not None
    record: JsonObj = doc["record"]
    record["version"] += 1
    store.put(KIND, key, doc)
    return record


def view(store: Store, tenant_id: str, record_id: str, expand: str = "") -> JsonObj | None:
    """The Graph JSON of one callRecord of `tenant_id` (None: none, or another tenant's). Sessions only with
    `$expand=sessions`, their segments only with `$expand=sessions($expand=segments)`, as Graph does."""
    doc = store.get(KIND, record_id)
    if doc is None or doc.get("tenantId") != tenant_id:
        return None
    record: JsonObj = dict(doc["record"])
    wanted = expand.replace(" ", "").lower()
    sessions: list[Any] = record.pop("sessions", [])
    if wanted.startswith("sessions"):
        with_segments = "$expand=segments" in wanted
        record["sessions"] = [s if with_segments else {k: v for k, v in s.items() if k != "segments"} for s in sessions]
    return record


__all__ = ["KIND", "add_session", "iso_duration", "iso_time", "record_leg", "record_legs", "session", "streams", "view"]

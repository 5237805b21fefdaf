"""Joining online meetings, pure: Teams-style join URLs parsed as Microsoft's samples parse them, and the bodies
a bot sends to join (organizerMeetingInfo + chatInfo, joinMeetingIdMeetingInfo).

A join URL has the anatomy `https://{host}/l/meetup-join/{threadId}/{messageId}?context={"Tid":…,"Oid":…}` (the
thread id and the context URL-encoded). Microsoft's `JoinInfo.ParseJoinURL` (Graph communications samples) decodes
the whole URL, takes the last two path segments before `?context=` as thread and message ids and reads `Tid`
(tenant), `Oid` (organizer) and an optional `MessageId` (the reply chain) from the JSON context; `parse_join_url`
does the same, for the node's own host as well as `teams.microsoft.com`. It also reads Teams' newer short link,
`https://{host}/meet/{joinMeetingId}?p={passcode}`: that one names the meeting by its join id and passcode, so a bot
joins it with joinMeetingIdMeetingInfo (the node serves the same short form for its own meetings).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote_plus, urlsplit

from opencomms.sdk.errors import SdkError

JsonObj = dict[str, Any]

MAX_JOIN_URL = 4096
_JOIN = re.compile(r"/l/meetup-join/(?P<thread>[^/?#]+)/(?P<message>[^/?#]+)/?\?context=(?P<context>\{.*\})")
_SHORT = re.compile(r"^/meet/(?P<id>\d{6,32})/?$")


class JoinUrlError(SdkError, ValueError):
    """The text is not a meeting join URL: neither `/l/meetup-join/{thread}/{message}?context={…}` nor the short
    `/meet/{joinMeetingId}?p={passcode}`."""


@dataclass(frozen=True, slots=True)
class JoinUrlInfo:
    """What a join URL says: the meeting's chat thread and its organizer (the two halves of a join by URL), or, for
    a short link, the meeting's join id and passcode (then the thread and organizer fields are empty)."""

    thread_id: str
    message_id: str
    tenant_id: str
    """`Tid`: the organizer's tenant."""
    organizer_id: str
    """`Oid`: the organizer's user id."""
    reply_chain_message_id: str | None = None
    """`MessageId` of the context, when present (channel meetings)."""
    join_meeting_id: str | None = None
    """A short link's joinMeetingId (`/meet/{joinMeetingId}`)."""
    passcode: str | None = None
    """A short link's passcode (`?p=`), when it has one."""

    @property
    def is_short(self) -> bool:
        """A short link: the join names the meeting by joinMeetingId (+ passcode), without chatInfo."""
        return self.join_meeting_id is not None

    def chat_info(self) -> JsonObj | None:
        """The join's chatInfo (None for a short link: its join has none)."""
        if self.is_short:
            return None
        return chat_info(self.thread_id, self.message_id, self.reply_chain_message_id)

    def meeting_info(self, *, allow_conversation_without_host: bool = True) -> JsonObj:
        """The join's meetingInfo: organizerMeetingInfo, or joinMeetingIdMeetingInfo for a short link."""
        if self.join_meeting_id is not None:
            return join_meeting_id_meeting_info(self.join_meeting_id, self.passcode)
        return organizer_meeting_info(
            self.organizer_id, self.tenant_id, allow_conversation_without_host=allow_conversation_without_host
        )


def parse_join_url(url: str) -> JoinUrlInfo:
    """Parse a meeting join URL (raises JoinUrlError). Accepts the link as Teams and the node write it (encoded)
    and as people paste it (decoded)."""
    if not isinstance(url, str) or not url.strip() or len(url) > MAX_JOIN_URL:
        raise JoinUrlError("a join URL is a non-empty string of at most 4096 characters")
    text = url.strip()
    scheme = urlsplit(text).scheme.lower()
    if scheme not in ("http", "https"):
        raise JoinUrlError(f"not an http(s) join URL: {text[:100]!r}")
    parts = urlsplit(text)
    short = _SHORT.match(parts.path)
    if short is not None:
        passcode = (parse_qs(parts.query).get("p") or [""])[0]
        return JoinUrlInfo("", "", "", "", join_meeting_id=short["id"], passcode=passcode or None)
    decoded = unquote_plus(text)
    match = _JOIN.search(decoded)
    if match is None:
        expected = "/l/meetup-join/{thread}/{message}?context={...} or /meet/{joinMeetingId}?p={passcode}"
        raise JoinUrlError(f"join URL cannot be parsed (expected {expected}): {text[:200]!r}")
    try:
        context = json.loads(match["context"])
    except ValueError as exc:
        raise JoinUrlError(f"the join URL's context is not JSON: {exc}") from None
    if not isinstance(context, dict):
        raise JoinUrlError("the join URL's context is not a JSON object")
    tenant, organizer = context.get("Tid"), context.get("Oid")
    if not isinstance(tenant, str) or not tenant or not isinstance(organizer, str) or not organizer:
        raise JoinUrlError("the join URL's context lacks 'Tid' (tenant) or 'Oid' (organizer)")
    reply = context.get("MessageId")
    return JoinUrlInfo(
        thread_id=match["thread"],
        message_id=match["message"],
        tenant_id=tenant,
        organizer_id=organizer,
        reply_chain_message_id=str(reply) if isinstance(reply, (str, int)) and not isinstance(reply, bool) else None,
    )


# -- join bodies ---------------------------------------------------------------------------------------------
def chat_info(thread_id: str, message_id: str = "0", reply_chain_message_id: str | None = None) -> JsonObj:
    info: JsonObj = {"@odata.type": "#microsoft.graph.chatInfo", "threadId": thread_id, "messageId": message_id}
    if reply_chain_message_id is not None:
        info["replyChainMessageId"] = reply_chain_message_id
    return info


def organizer_meeting_info(
    organizer_id: str, tenant_id: str | None = None, *, allow_conversation_without_host: bool = True
) -> JsonObj:
    """organizerMeetingInfo: the meeting named by its organizer (with the chatInfo of its thread)."""
    user: JsonObj = {"@odata.type": "#microsoft.graph.identity", "id": organizer_id}
    if tenant_id:
        user["tenantId"] = tenant_id
    return {
        "@odata.type": "#microsoft.graph.organizerMeetingInfo",
        "organizer": {"@odata.type": "#microsoft.graph.identitySet", "user": user},
        "allowConversationWithoutHost": allow_conversation_without_host,
    }


def join_meeting_id_meeting_info(join_meeting_id: str, passcode: str | None = None) -> JsonObj:
    """joinMeetingIdMeetingInfo: the meeting named by its join id (and passcode when it requires one)."""
    info: JsonObj = {"@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo", "joinMeetingId": join_meeting_id}
    if passcode is not None:
        info["passcode"] = passcode
    return info


def outgoing_call_options(*, delta_roster: bool = False) -> JsonObj:
    """callOptions of a join; `delta_roster` asks for delta rosters (only what changed, with sequence numbers)."""
    return {"@odata.type": "#microsoft.graph.outgoingCallOptions", "isDeltaRosterEnabled": delta_roster}


__all__ = [
    "JoinUrlError",
    "JoinUrlInfo",
    "chat_info",
    "join_meeting_id_meeting_info",
    "organizer_meeting_info",
    "outgoing_call_options",
    "parse_join_url",
]

"""Meetings in the SDK, pure: join URLs parsed as Microsoft's samples do, join bodies, onlineMeeting and roster
entries read from Graph JSON."""

from __future__ import annotations

import json
import re
from urllib.parse import quote

import pytest

from opencomms.sdk import (
    JoinUrlError,
    OnlineMeeting,
    Participant,
    SdkError,
    join_meeting_id_meeting_info,
    parse_join_url,
)

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "550fae72-d251-43ec-868c-373732c2704f"


def test_a_teams_invitation_link_as_outlook_shows_it() -> None:
    url = (
        "https://teams.microsoft.com/l/meetup-join/19%3ameeting_NTg0NmQ3NTctZDVkZC00YzRhLThmNmEtOGQ1ZDE2ZjBjZjNk"
        "%40thread.v2/0?context=%7b%22Tid%22%3a%2272f988bf-86f1-41af-91ab-2d7cd011db47%22%2c%22Oid%22%3a%22"
        "550fae72-d251-43ec-868c-373732c2704f%22%7d"
    )
    info = parse_join_url(url)
    assert info.thread_id == "19:meeting_NTg0NmQ3NTctZDVkZC00YzRhLThmNmEtOGQ1ZDE2ZjBjZjNk@thread.v2"
    assert (info.message_id, info.tenant_id, info.organizer_id) == ("0", TID, OID)
    assert info.reply_chain_message_id is None
    assert info.chat_info() == {
        "@odata.type": "#microsoft.graph.chatInfo",
        "threadId": "19:meeting_NTg0NmQ3NTctZDVkZC00YzRhLThmNmEtOGQ1ZDE2ZjBjZjNk@thread.v2",
        "messageId": "0",
    }
    meeting = info.meeting_info()
    assert meeting["@odata.type"] == "#microsoft.graph.organizerMeetingInfo"
    assert meeting["organizer"]["user"] == {"@odata.type": "#microsoft.graph.identity", "id": OID, "tenantId": TID}
    assert meeting["allowConversationWithoutHost"] is True
    assert info.meeting_info(allow_conversation_without_host=False)["allowConversationWithoutHost"] is False


def test_the_decoded_link_of_microsofts_sample_with_a_reply_chain() -> None:
    # the example in the comment of JoinInfo.ParseJoinURL (Graph communications samples)
    url = (
        "https://teams.microsoft.com/l/meetup-join/19:cd9ce3da56624fe69c9d7cd026f9126d@thread.skype/1509579179399"
        f'?context={{"Tid":"{TID}","Oid":"{OID}","MessageId":"1536978844957"}}'
    )
    info = parse_join_url(url)
    assert info.thread_id == "19:cd9ce3da56624fe69c9d7cd026f9126d@thread.skype"
    assert info.message_id == "1509579179399" and info.reply_chain_message_id == "1536978844957"
    assert info.chat_info()["replyChainMessageId"] == "1536978844957"


def test_channel_meeting_government_cloud_uppercase_escapes_and_trailing_parameters() -> None:
    encoded = quote(json.dumps({"Tid": TID, "Oid": OID, "MessageId": "0"}, separators=(",", ":")), safe="")
    context = re.sub(r"%[0-9a-f]{2}", lambda m: m[0].upper(), encoded)
    thread = "19%3A0e5b2c8d4a1f4b7e9c3d2a1b0f9e8d7c%40thread.tacv2"
    url = f"https://gov.teams.microsoft.us/l/meetup-join/{thread}/1612345678901?context={context}&anon=true"
    info = parse_join_url(url)
    assert info.thread_id == "19:0e5b2c8d4a1f4b7e9c3d2a1b0f9e8d7c@thread.tacv2"
    assert info.message_id == "1612345678901" and info.tenant_id == TID and info.reply_chain_message_id == "0"
    # the node's own host, with the anatomy it writes
    own = parse_join_url(
        f"  http://127.0.0.1:8080/l/meetup-join/{thread}/0?context={quote(json.dumps({'Tid': TID, 'Oid': OID}))}\n"
    )
    assert own.organizer_id == OID and own.message_id == "0"


def test_teams_short_link_names_the_meeting_by_join_id_and_passcode() -> None:
    info = parse_join_url("https://teams.microsoft.com/meet/2345678901234?p=AbCdEf")
    assert info.is_short and (info.join_meeting_id, info.passcode) == ("2345678901234", "AbCdEf")
    assert info.chat_info() is None
    assert info.meeting_info() == {
        "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
        "joinMeetingId": "2345678901234",
        "passcode": "AbCdEf",
    }
    bare = parse_join_url("  http://127.0.0.1:8080/meet/345678901234/\n")  # the node's own, without a passcode
    assert bare.join_meeting_id == "345678901234" and bare.passcode is None
    assert "passcode" not in bare.meeting_info()
    context = quote(json.dumps({"Tid": TID, "Oid": OID}))
    long = parse_join_url(f"https://teams.microsoft.com/l/meetup-join/19%3ax%40thread.v2/0?context={context}")
    assert not long.is_short and long.join_meeting_id is None


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("", "non-empty"),
        ("https://teams.microsoft.com/meet/12?p=AbCdEf", "cannot be parsed"),  # a short link has a real join id
        ("https://teams.microsoft.com/meet/abc234567890?p=AbCdEf", "cannot be parsed"),
        ("ftp://teams.microsoft.com/l/meetup-join/19%3ax%40thread.v2/0?context=%7b%7d", "http"),
        ("https://teams.microsoft.com/l/meetup-join/19%3ax%40thread.v2/0", "cannot be parsed"),
        ("https://teams.microsoft.com/l/meetup-join/19%3ax%40thread.v2/0?context=%7bTid%7d", "not JSON"),
        (f'https://teams.microsoft.com/l/meetup-join/19:x@thread.v2/0?context={{"Tid":"{TID}"}}', "'Oid'"),
        (f'https://teams.microsoft.com/l/meetup-join/19:x@thread.v2/0?context={{"Tid":"{TID}","Oid":7}}', "'Oid'"),
        ("https://x/l/meetup-join/" + "a" * 5000 + "/0?context={}", "4096"),
    ],
)
def test_what_is_not_a_join_url(url: str, why: str) -> None:
    with pytest.raises(JoinUrlError, match=why) as err:
        parse_join_url(url)
    assert isinstance(err.value, SdkError) and isinstance(err.value, ValueError)


def test_join_by_id_body_and_online_meeting_from_graph_json() -> None:
    assert join_meeting_id_meeting_info("1234567890", "a1b2") == {
        "@odata.type": "#microsoft.graph.joinMeetingIdMeetingInfo",
        "joinMeetingId": "1234567890",
        "passcode": "a1b2",
    }
    assert "passcode" not in join_meeting_id_meeting_info("1234567890")
    m = OnlineMeeting.from_wire(
        {
            "id": "MSpkYzE3",
            "joinWebUrl": "https://node/l/meetup-join/x/0?context=%7b%7d",
            "subject": "Standup",
            "chatInfo": {"threadId": "19:meeting_x@thread.v2", "messageId": "0"},
            "joinMeetingIdSettings": {"joinMeetingId": "1234567890", "passcode": "4711", "isPasscodeRequired": True},
            "audioConferencing": {"tollNumber": "+14255550100", "conferenceId": "555666", "dialinUrl": "https://d"},
            "participants": {"organizer": {"identity": {"user": {"id": OID}}}},
            "startDateTime": "2030-01-01T10:00:00Z",
        }
    )
    assert (m.id, m.subject, m.thread_id, m.organizer_id) == ("MSpkYzE3", "Standup", "19:meeting_x@thread.v2", OID)
    assert (m.join_meeting_id, m.passcode, m.passcode_required) == ("1234567890", "4711", True)
    assert (m.toll_number, m.conference_id, m.start, m.end) == ("+14255550100", "555666", "2030-01-01T10:00:00Z", None)
    assert OnlineMeeting.from_wire({"id": "x"}).join_web_url == ""


def test_roster_entries_read_every_meeting_member() -> None:
    p = Participant.from_wire(
        {
            "id": "p1",
            "info": {"identity": {"phone": {"id": "+14255550123"}}},
            "mediaStreams": [{"sourceId": "7", "serverMuted": True}],
            "isMuted": True,
            "isInLobby": False,
            "rosterSequenceNumber": 4,
            "recordingInfo": {"recordingStatus": "recording"},
            "removedState": {"reason": "removed"},
        }
    )
    assert (p.kind, p.display_name, p.source_ids, p.server_muted) == ("phone", "+14255550123", ("7",), True)
    assert (p.sequence, p.recording_status, p.removed_reason, p.is_in_lobby) == (4, "recording", "removed", False)
    guest = Participant.from_wire({"id": "g", "info": {"identity": {"guest": {"id": "x", "displayName": "Ann"}}}})
    assert (guest.kind, guest.display_name, guest.sequence, guest.removed_reason) == ("guest", "Ann", None, None)
    assert Participant.from_wire({"id": "n"}).display_name is None

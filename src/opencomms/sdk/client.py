"""CommsClient: a typed async client for the node's Graph REST surface (calls, participants, operations, media,
online meetings and participant control in meetings).

Stateless: every method is one request (plus token and retries). Every request carries a bearer token from
`ClientCredentials` (cached, refreshed before expiry, fetched again once if the API refuses it), a fresh GUID
`client-request-id` (kept across the retries of one call, so they correlate), and is retried on 429/503 after
Retry-After (bounded, see `RetryPolicy`). Error answers raise `GraphError` with Graph's error code.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote

import aiohttp

from opencomms.sdk.auth import ClientCredentials
from opencomms.sdk.builders import JsonObj, service_hosted_media
from opencomms.sdk.errors import GraphError, parse_retry_after
from opencomms.sdk.meetings import (
    join_meeting_id_meeting_info,
    outgoing_call_options,
    parse_join_url,
)
from opencomms.sdk.models import CallInfo, OnlineMeeting, Operation, Participant, tone_names
from opencomms.sdk.retry import RetryPolicy

CALLS = "/communications/calls"


def _seg(value: str) -> str:
    """An id as one path segment (never lets an id change the path)."""
    return quote(value, safe="")


class CommsClient:
    """Async client of one node (or Graph) for one application. Use as an async context manager."""

    def __init__(
        self,
        base_url: str,
        credentials: ClientCredentials,
        *,
        api_version: str = "v1.0",
        session: aiohttp.ClientSession | None = None,
        max_retries: int = 3,
        retry: RetryPolicy | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.api_version = api_version
        self.credentials = credentials
        self.retry = retry or RetryPolicy(max_retries=max_retries)
        self._session = session
        self._own_session = session is None
        self._timeout = aiohttp.ClientTimeout(total=timeout)

    async def __aenter__(self) -> CommsClient:
        self._ensure_session()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        if self._session is not None and self._own_session:
            await self._session.close()
            self._session = None

    def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
            self._own_session = True
        return self._session

    @property
    def api_url(self) -> str:
        return f"{self.base_url}/{self.api_version}"

    # -- transport ---------------------------------------------------------------------------------------
    async def request(self, method: str, path: str, body: Any = None) -> Any:
        """One Graph request with auth, client-request-id and retries; returns the parsed JSON (None if empty)."""
        return (await self._send(method, path, body))[1]

    async def _send(self, method: str, path: str, body: Any) -> tuple[int, Any, dict[str, str]]:
        session = self._ensure_session()
        url = path if path.startswith(("http://", "https://")) else f"{self.api_url}{path}"
        crid = str(uuid.uuid4())
        idempotent = method in ("GET", "DELETE", "HEAD", "PUT")
        attempt, refreshed = 0, False
        while True:
            token = await self.credentials.token(session, f"{self.base_url}/.default")
            headers = {"Authorization": f"Bearer {token}", "client-request-id": crid, "Accept": "application/json"}
            kwargs: dict[str, Any] = {"headers": headers, "timeout": self._timeout}
            if body is not None:
                kwargs["json"] = body
            try:
                async with session.request(method, url, **kwargs) as resp:
                    raw = await resp.read()
                    status, resp_headers = resp.status, dict(resp.headers)
            except (TimeoutError, aiohttp.ClientConnectionError):
                wait = self.retry.delay(attempt, None, None, idempotent=idempotent)
                if wait is None:
                    raise
                attempt += 1
                await asyncio.sleep(wait)
                continue
            data = _parse(raw)
            if status < 400:
                return status, data, resp_headers
            if status == 401 and not refreshed:
                refreshed = True  # the token may have been revoked or the keys rotated: fetch a new one once
                self.credentials.invalidate()
                continue
            retry_after = parse_retry_after(resp_headers.get("Retry-After"))
            wait = self.retry.delay(attempt, status, retry_after, idempotent=idempotent)
            if wait is None:
                raise GraphError.from_response(status, data, resp_headers)
            attempt += 1
            await asyncio.sleep(wait)

    # -- calls -------------------------------------------------------------------------------------------
    async def create_call(
        self,
        *,
        targets: Sequence[JsonObj],
        callback_uri: str | None = None,
        media_config: JsonObj | None = None,
        source: JsonObj | None = None,
        requested_modalities: Iterable[str] = ("audio",),
        tenant_id: str | None = None,
        subject: str | None = None,
        **extra: Any,
    ) -> CallInfo:
        """POST /communications/calls; `extra` members (camelCase) are sent as given."""
        body: JsonObj = {
            "@odata.type": "#microsoft.graph.call",
            "targets": list(targets),
            "requestedModalities": list(requested_modalities),
            "mediaConfig": media_config or service_hosted_media(),
            **extra,
        }
        for key, value in (("callbackUri", callback_uri), ("source", source), ("tenantId", tenant_id)):
            if value is not None:
                body[key] = value
        if subject is not None:
            body["subject"] = subject
        return CallInfo.from_wire(await self.request("POST", CALLS, body))

    async def get_call(self, call_id: str) -> CallInfo:
        return CallInfo.from_wire(await self.request("GET", f"{CALLS}/{_seg(call_id)}"))

    async def delete_call(self, call_id: str) -> None:
        """Hang up (DELETE): the call ends and a `deleted` notification follows."""
        await self.request("DELETE", f"{CALLS}/{_seg(call_id)}")

    async def answer(
        self,
        call_id: str,
        *,
        callback_uri: str | None = None,
        media_config: JsonObj | None = None,
        accepted_modalities: Iterable[str] = ("audio",),
        participant_capacity: int | None = None,
    ) -> None:
        body: JsonObj = {
            "acceptedModalities": list(accepted_modalities),
            "mediaConfig": media_config or service_hosted_media(),
        }
        if callback_uri is not None:
            body["callbackUri"] = callback_uri
        if participant_capacity is not None:
            body["participantCapacity"] = participant_capacity
        await self.request("POST", f"{CALLS}/{_seg(call_id)}/answer", body)

    async def reject(self, call_id: str, reason: str = "none", *, callback_uri: str | None = None) -> None:
        """reason: none, busy or forbidden."""
        body: JsonObj = {"reason": reason}
        if callback_uri is not None:
            body["callbackUri"] = callback_uri
        await self.request("POST", f"{CALLS}/{_seg(call_id)}/reject", body)

    async def redirect(
        self, call_id: str, targets: Sequence[JsonObj], *, timeout: int | None = None, callback_uri: str | None = None
    ) -> None:
        body: JsonObj = {"targets": list(targets)}
        if timeout is not None:
            body["timeout"] = timeout
        if callback_uri is not None:
            body["callbackUri"] = callback_uri
        await self.request("POST", f"{CALLS}/{_seg(call_id)}/redirect", body)

    async def transfer(self, call_id: str, transfer_target: JsonObj, transferee: JsonObj | None = None) -> None:
        body: JsonObj = {"transferTarget": transfer_target}
        if transferee is not None:
            body["transferee"] = transferee
        await self.request("POST", f"{CALLS}/{_seg(call_id)}/transfer", body)

    async def keep_alive(self, call_id: str) -> None:
        """Graph ends calls that get no keepAlive for 45 minutes; send one at least every 15-45 minutes."""
        await self.request("POST", f"{CALLS}/{_seg(call_id)}/keepAlive", {})

    # -- participants and operations ---------------------------------------------------------------------
    async def list_participants(self, call_id: str) -> list[Participant]:
        data = await self.request("GET", f"{CALLS}/{_seg(call_id)}/participants")
        items = data.get("value") if isinstance(data, dict) else None
        return [Participant.from_wire(p) for p in items or [] if isinstance(p, dict)]

    async def get_participant(self, call_id: str, participant_id: str) -> Participant:
        path = f"{CALLS}/{_seg(call_id)}/participants/{_seg(participant_id)}"
        return Participant.from_wire(await self.request("GET", path))

    async def get_operation(self, call_id: str, operation_id: str) -> Operation:
        path = f"{CALLS}/{_seg(call_id)}/operations/{_seg(operation_id)}"
        return Operation.from_wire(await self.request("GET", path))

    # -- media (service-hosted) --------------------------------------------------------------------------
    async def _operation(self, call_id: str, action: str, body: JsonObj) -> Operation:
        return Operation.from_wire(await self.request("POST", f"{CALLS}/{_seg(call_id)}/{action}", body))

    @staticmethod
    def _with_context(body: JsonObj, client_context: str | None) -> JsonObj:
        if client_context is not None:
            body["clientContext"] = client_context
        return body

    async def play_prompt(
        self, call_id: str, prompts: Sequence[JsonObj], *, client_context: str | None = None
    ) -> Operation:
        """Queue prompts (mediaPrompt, or text_prompt); the outcome arrives as an operation notification."""
        return await self._operation(
            call_id, "playPrompt", self._with_context({"prompts": list(prompts)}, client_context)
        )

    async def record_response(
        self,
        call_id: str,
        *,
        prompts: Sequence[JsonObj] = (),
        barge_in_allowed: bool = False,
        initial_silence_timeout: int = 5,
        max_silence_timeout: int = 5,
        max_record_duration: int = 60,
        play_beep: bool = True,
        stop_tones: Iterable[str] = (),
        client_context: str | None = None,
    ) -> Operation:
        """Record what the other side says; the finished operation carries recordingLocation and its token."""
        body: JsonObj = {
            "bargeInAllowed": barge_in_allowed,
            "initialSilenceTimeoutInSeconds": initial_silence_timeout,
            "maxSilenceTimeoutInSeconds": max_silence_timeout,
            "maxRecordDurationInSeconds": max_record_duration,
            "playBeep": play_beep,
            "stopTones": list(stop_tones),
        }
        if prompts:
            body["prompts"] = list(prompts)
        return await self._operation(call_id, "recordResponse", self._with_context(body, client_context))

    async def subscribe_to_tone(self, call_id: str, *, client_context: str | None = None) -> Operation:
        """From now on, keys pressed by the other side arrive as call updates with toneInfo."""
        return await self._operation(call_id, "subscribeToTone", self._with_context({}, client_context))

    async def start_transcription(self, call_id: str, *, client_context: str | None = None) -> Operation:
        """#opencomms: what the other participants say arrives as call updates carrying a transcript (in a meeting,
        once its recording status is 'recording')."""
        return await self._operation(call_id, "startTranscription", self._with_context({}, client_context))

    async def stop_transcription(self, call_id: str, *, client_context: str | None = None) -> Operation:
        return await self._operation(call_id, "stopTranscription", self._with_context({}, client_context))

    async def send_dtmf_tones(
        self,
        call_id: str,
        tones: str | Sequence[str],
        *,
        delay_between_tones_ms: int | None = None,
        client_context: str | None = None,
    ) -> Operation:
        """`tones`: keys as a string ('123#') or Graph tone names (['tone1', 'pound'])."""
        names = tone_names(tones) if isinstance(tones, str) else list(tones)
        body: JsonObj = {"tones": names}
        if delay_between_tones_ms is not None:
            body["delayBetweenTonesMs"] = delay_between_tones_ms
        return await self._operation(call_id, "sendDtmfTones", self._with_context(body, client_context))

    async def cancel_media_processing(self, call_id: str, *, client_context: str | None = None) -> Operation:
        return await self._operation(call_id, "cancelMediaProcessing", self._with_context({}, client_context))

    async def mute(self, call_id: str, *, client_context: str | None = None) -> Operation:
        return await self._operation(call_id, "mute", self._with_context({}, client_context))

    async def unmute(self, call_id: str, *, client_context: str | None = None) -> Operation:
        return await self._operation(call_id, "unmute", self._with_context({}, client_context))

    # -- online meetings (onlineMeeting resources) --------------------------------------------------------
    @staticmethod
    def _meetings(user_id: str | None) -> str:
        """`/users/{id}/onlineMeetings` (app permissions + an access policy), or `/me/onlineMeetings` (delegated)."""
        return "/me/onlineMeetings" if user_id is None else f"/users/{_seg(user_id)}/onlineMeetings"

    @staticmethod
    def _meeting_body(
        subject: str | None, start: str | None, end: str | None, passcode_required: bool | None, fields: JsonObj
    ) -> JsonObj:
        body: JsonObj = dict(fields)
        for key, value in (("subject", subject), ("startDateTime", start), ("endDateTime", end)):
            if value is not None:
                body[key] = value
        if passcode_required is not None:
            settings = dict(body.get("joinMeetingIdSettings") or {})
            settings["isPasscodeRequired"] = passcode_required
            body["joinMeetingIdSettings"] = settings
        return body

    async def create_online_meeting(
        self,
        user_id: str | None,
        *,
        subject: str | None = None,
        start: str | None = None,
        end: str | None = None,
        passcode_required: bool | None = None,
        **fields: Any,
    ) -> OnlineMeeting:
        """Create a meeting organized by `user_id` (None: the signed-in user, `/me`). `start`/`end` are ISO 8601
        date-times; other onlineMeeting members (camelCase: `lobbyBypassSettings`, `participants`, ...) as given."""
        body = self._meeting_body(subject, start, end, passcode_required, fields)
        return OnlineMeeting.from_wire(await self.request("POST", self._meetings(user_id), body))

    async def create_or_get_online_meeting(
        self, user_id: str | None, external_id: str, *, subject: str | None = None, **fields: Any
    ) -> OnlineMeeting:
        """The meeting with this `externalId`, created the first time."""
        body = self._meeting_body(subject, None, None, None, {**fields, "externalId": external_id})
        return OnlineMeeting.from_wire(await self.request("POST", f"{self._meetings(user_id)}/createOrGet", body))

    async def get_online_meeting(self, user_id: str | None, meeting_id: str) -> OnlineMeeting:
        return OnlineMeeting.from_wire(await self.request("GET", f"{self._meetings(user_id)}/{_seg(meeting_id)}"))

    async def find_online_meeting(
        self, user_id: str | None, *, join_web_url: str | None = None, join_meeting_id: str | None = None
    ) -> OnlineMeeting | None:
        """The meeting with this joinWebUrl or joinMeetingId (`$filter`), or None."""
        if (join_web_url is None) == (join_meeting_id is None):
            raise ValueError("give exactly one of join_web_url and join_meeting_id")
        if join_web_url is not None:
            flt = "JoinWebUrl eq '{}'".format(join_web_url.replace("'", "''"))
        else:
            flt = "joinMeetingIdSettings/joinMeetingId eq '{}'".format(str(join_meeting_id).replace("'", "''"))
        data = await self.request("GET", f"{self._meetings(user_id)}?$filter={quote(flt, safe='')}")
        items = data.get("value") if isinstance(data, dict) else None
        found = [OnlineMeeting.from_wire(m) for m in items or [] if isinstance(m, dict)]
        return found[0] if found else None

    async def update_online_meeting(self, user_id: str | None, meeting_id: str, **fields: Any) -> OnlineMeeting:
        """PATCH the meeting with onlineMeeting members (camelCase) as given."""
        path = f"{self._meetings(user_id)}/{_seg(meeting_id)}"
        return OnlineMeeting.from_wire(await self.request("PATCH", path, dict(fields)))

    async def delete_online_meeting(self, user_id: str | None, meeting_id: str) -> None:
        """DELETE: a live meeting ends for everyone in it."""
        await self.request("DELETE", f"{self._meetings(user_id)}/{_seg(meeting_id)}")

    # -- joining meetings ---------------------------------------------------------------------------------
    async def join_meeting(
        self,
        *,
        join_web_url: str | None = None,
        join_meeting_id: str | None = None,
        passcode: str | None = None,
        chat_info: JsonObj | None = None,
        meeting_info: JsonObj | None = None,
        callback_uri: str | None = None,
        media_config: JsonObj | None = None,
        delta_roster: bool = False,
        tenant_id: str | None = None,
        allow_conversation_without_host: bool = True,
        requested_modalities: Iterable[str] = ("audio",),
        **extra: Any,
    ) -> CallInfo:
        """Join a meeting (POST /communications/calls): by `join_web_url` (parsed into chatInfo and
        organizerMeetingInfo, or a short `/meet/{id}?p=` link into joinMeetingIdMeetingInfo; raises
        JoinUrlError), by `join_meeting_id` (+ `passcode`), or with the `chat_info` + `meeting_info` bodies given.
        Returns the call (`establishing`)."""
        if join_web_url is not None:
            info = parse_join_url(join_web_url)
            chat_info = info.chat_info()
            meeting_info = info.meeting_info(allow_conversation_without_host=allow_conversation_without_host)
            tenant_id = tenant_id or info.tenant_id or None
        elif join_meeting_id is not None:
            meeting_info = join_meeting_id_meeting_info(join_meeting_id, passcode)
        elif meeting_info is None:
            raise ValueError("give join_web_url, join_meeting_id, or meeting_info (with chat_info)")
        body: JsonObj = {
            "@odata.type": "#microsoft.graph.call",
            "requestedModalities": list(requested_modalities),
            "mediaConfig": media_config or service_hosted_media(),
            "meetingInfo": meeting_info,
            **extra,
        }
        if chat_info is not None:
            body["chatInfo"] = chat_info
        if delta_roster:
            body["callOptions"] = outgoing_call_options(delta_roster=True)
        for key, value in (("callbackUri", callback_uri), ("tenantId", tenant_id)):
            if value is not None:
                body[key] = value
        return CallInfo.from_wire(await self.request("POST", CALLS, body))

    # -- participant control (meetings) -------------------------------------------------------------------
    def _participant(self, call_id: str, participant_id: str) -> str:
        return f"{CALLS}/{_seg(call_id)}/participants/{_seg(participant_id)}"

    async def invite_participants(
        self, call_id: str, participants: Sequence[JsonObj], *, client_context: str | None = None
    ) -> Operation:
        """participants/invite: ring up to 5 more parties (invitationParticipantInfo: the *_target builders)."""
        body = self._with_context({"participants": list(participants)}, client_context)
        return await self._operation(call_id, "participants/invite", body)

    async def mute_participant(
        self, call_id: str, participant_id: str, *, client_context: str | None = None
    ) -> Operation:
        """Server mute: the participant's audio leaves the meeting's mix."""
        path = f"{self._participant(call_id, participant_id)}/mute"
        return Operation.from_wire(await self.request("POST", path, self._with_context({}, client_context)))

    async def remove_participant(self, call_id: str, participant_id: str) -> None:
        """DELETE participants/{id}: the participant's leg ends (apps the tenant allows only)."""
        await self.request("DELETE", self._participant(call_id, participant_id))

    async def start_hold_music(
        self,
        call_id: str,
        participant_id: str,
        *,
        custom_prompt: JsonObj | None = None,
        client_context: str | None = None,
    ) -> Operation:
        body = self._with_context({} if custom_prompt is None else {"customPrompt": custom_prompt}, client_context)
        path = f"{self._participant(call_id, participant_id)}/startHoldMusic"
        return Operation.from_wire(await self.request("POST", path, body))

    async def stop_hold_music(
        self, call_id: str, participant_id: str, *, client_context: str | None = None
    ) -> Operation:
        path = f"{self._participant(call_id, participant_id)}/stopHoldMusic"
        return Operation.from_wire(await self.request("POST", path, self._with_context({}, client_context)))

    async def admit_participant(
        self, call_id: str, participant_id: str, *, client_context: str | None = None
    ) -> Operation:
        """#opencomms extension: admit a lobby participant (bots that joined with organizer rights)."""
        path = f"{self._participant(call_id, participant_id)}/admit"
        return Operation.from_wire(await self.request("POST", path, self._with_context({}, client_context)))

    async def admit_all(self, call_id: str, *, client_context: str | None = None) -> Operation:
        """#opencomms extension: admit everyone waiting in the lobby."""
        return await self._operation(call_id, "participants/admitAll", self._with_context({}, client_context))

    async def update_recording_status(
        self, call_id: str, status: str, *, client_context: str | None = None
    ) -> Operation:
        """status: `recording`, `notRecording` or `failed`; every participant's recordingInfo follows."""
        body = self._with_context({"status": status}, client_context)
        return await self._operation(call_id, "updateRecordingStatus", body)

    async def download_recording(self, location: str, token: str) -> bytes:
        """The WAV bytes of a recording (recordingLocation + recordingAccessToken of a record operation)."""
        session = self._ensure_session()
        headers = {"Authorization": f"Bearer {token}", "client-request-id": str(uuid.uuid4())}
        async with session.get(location, headers=headers, timeout=self._timeout) as resp:
            data = await resp.read()
            if resp.status != 200:
                raise GraphError.from_response(resp.status, _parse(data), dict(resp.headers))
            return data


def _parse(raw: bytes) -> Any:
    if not raw:
        return None
    try:
        return json.loads(raw)
    except ValueError:
        return raw.decode("utf-8", errors="replace")

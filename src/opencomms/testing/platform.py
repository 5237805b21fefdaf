"""TestPlatform: a whole opencomms node inside a bot's test, in the test's own event loop.

    async with TestPlatform() as platform:
        creds = await platform.register_bot("ivr", webhook_url=my_bot.url)
        ...  # point the bot (or an SDK client) at platform.base_url with creds
        async with platform.caller() as caller:
            call = await caller.dial(creds.number)

Owns starting the node (memory store, HTTP and SIP on loopback port 0, recordings in a temporary directory
removed on exit, prompts from loopback allowed), the tenant, registering bots with an application instance and
a phone number each, and the addresses a client needs (base URL, token endpoint, JWKS, callback issuer).
Must not fake anything: every request and call goes through the real node.
"""

from __future__ import annotations

import contextlib
import dataclasses
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from opencomms.calling.meetings import InMemoryMeetings
from opencomms.config import EgressConfig, MediaConfig, MeetingsConfig, NodeConfig, SipConfig
from opencomms.domain.ids import new_id
from opencomms.domain.meetings import MeetingInfo
from opencomms.sdk import ClientCredentials, CommsClient, serve_receiver
from opencomms.sdk.calling import CommunicationsClient
from opencomms.server import Node
from opencomms.testing.caller import VirtualCaller
from opencomms.testing.harness import GraphClient, RecordingBot, running_node

__all__ = ["ALL_CALL_PERMISSIONS", "DIAL_IN_NUMBER", "BotCredentials", "TestBot", "TestMeeting", "TestPlatform"]

DIAL_IN_NUMBER = "+18005550199"
"""The test node's meeting dial-in number (`platform.dial_in_number`): a VirtualCaller dials it and keys in."""

ALL_CALL_PERMISSIONS = ("Calls.Initiate.All", "Calls.InitiateGroupCall.All", "Calls.AccessMedia.All")
"""Application permissions a calling bot usually has (make calls, group calls, service-hosted media)."""


@dataclass(frozen=True, slots=True)
class BotCredentials:
    """What a registered bot needs to authenticate and what callers dial to reach it."""

    tenant: str
    """Tenant id (the token endpoint also takes the tenant's domain)."""
    client_id: str
    """OAuth client id = the application id (`app_id`), as in Microsoft Entra ID."""
    secret: str
    app_id: str
    instance_id: str
    """The application instance that owns `number`."""
    number: str
    """E.164 number a phone dials to reach the bot (`VirtualCaller.dial(number)`)."""
    display_name: str
    webhook_url: str | None
    sip_uri: str | None = None
    """A SIP URI that also reaches the bot (`VirtualCaller.dial(sip_uri)`), when one was registered."""


@dataclass
class TestBot:
    """A bot made by `TestPlatform.recording_bot`: a real webhook that records notifications, a Graph client
    already holding a token, and the credentials. Stopped with the platform."""

    __test__ = False

    credentials: BotCredentials
    webhook: RecordingBot
    client: GraphClient

    @property
    def number(self) -> str:
        return self.credentials.number

    @property
    def url(self) -> str:
        return self.webhook.url


@dataclass(frozen=True, slots=True)
class TestMeeting:
    """An onlineMeeting made by `TestPlatform.create_meeting` (through the node's REST API): how to join it."""

    __test__ = False

    id: str
    join_web_url: str
    join_meeting_id: str
    passcode: str
    conference_id: str
    """What a phone enters after dialing `dial_in_number`."""
    dial_in_number: str
    """audioConferencing.tollNumber ("" when the node has no `meetings.dial_in_number`)."""
    thread_id: str
    organizer_id: str
    tenant_id: str
    raw: dict[str, Any]


def default_config(recordings_dir: str) -> NodeConfig:
    """A node for tests: loopback, port 0 for HTTP and SIP, memory store, quiet logs."""
    return NodeConfig(
        host="127.0.0.1",
        port=0,
        store_url="memory://",
        log_level="warning",
        log_format="text",
        media=MediaConfig(recordings_dir=recordings_dir),
        egress=EgressConfig(allow=("127.0.0.1", "::1")),  # bots, prompt servers and media sockets on this host
        sip=SipConfig(host="127.0.0.1", port=0),
        meetings=MeetingsConfig(dial_in_number=DIAL_IN_NUMBER),
    )


class TestPlatform:
    """An in-process platform: `async with TestPlatform() as platform:` starts a node and a tenant; everything
    registered or started through it stops on exit. Pass `config` to change the node's settings (the
    recordings directory defaults to a temporary one when left at its default)."""

    __test__ = False  # not a pytest test class

    def __init__(
        self,
        config: NodeConfig | None = None,
        *,
        tenant_name: str = "Contoso",
        tenant_domain: str = "contoso.example",
        first_number: int = 14255550100,
    ) -> None:
        self._config = config
        self.tenant_name = tenant_name
        self.tenant_domain = tenant_domain
        self._next_number = first_number
        self._node: Node | None = None
        self.tenant_id = ""
        self.bots: dict[str, BotCredentials] = {}
        self._stack = contextlib.AsyncExitStack()
        self._meeting_admin: GraphClient | None = None

    async def __aenter__(self) -> TestPlatform:
        try:
            temp = self._stack.enter_context(tempfile.TemporaryDirectory(prefix="opencomms-test-"))
            config = self._config or default_config(temp)
            if config.media.recordings_dir == MediaConfig().recordings_dir:
                config = dataclasses.replace(config, media=dataclasses.replace(config.media, recordings_dir=temp))
            self._node = await self._stack.enter_async_context(running_node(config))
            self.tenant_id = self._node.directory.create_tenant(self.tenant_name, self.tenant_domain).id
        except BaseException:
            await self._stack.aclose()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
        self._node = None

    # -- where things are

    @property
    def node(self) -> Node:
        if self._node is None:
            raise RuntimeError("the platform is not running (use `async with TestPlatform() as platform`)")
        return self._node

    @property
    def base_url(self) -> str:
        """Root of the node's HTTP API; Graph calls go to `{base_url}/v1.0/communications/...`."""
        return self.node.public_url

    @property
    def authority(self) -> str:
        """The token authority: tokens come from `{authority}/{tenant}/oauth2/v2.0/token`."""
        return self.node.public_url

    @property
    def token_url(self) -> str:
        return f"{self.base_url}/{self.tenant_id}/oauth2/v2.0/token"

    @property
    def scope(self) -> str:
        """The scope to ask for in client-credentials requests."""
        return f"{self.base_url}/.default"

    @property
    def jwks_url(self) -> str:
        """Keys that sign the node's callback tokens (bots validate notifications against them)."""
        return f"{self.base_url}/common/discovery/v2.0/keys"

    @property
    def callback_metadata_url(self) -> str:
        """OpenID metadata for callback tokens (the Bot Framework-style document bots are configured with)."""
        return f"{self.base_url}/v1/.well-known/OpenIdConfiguration"

    @property
    def issuer(self) -> str:
        """`iss` of callback tokens."""
        return self.node.config.tokens.callback_issuer

    @property
    def sip_address(self) -> tuple[str, int]:
        """Where the node takes SIP (UDP and TCP)."""
        sip = self.node.sip
        if sip is None:
            raise RuntimeError("SIP is disabled in this platform's configuration")
        return self.node.config.sip.host, sip.port

    @property
    def dial_in_number(self) -> str:
        """What phones dial to reach the meeting attendant (`[meetings] dial_in_number`)."""
        return self.node.config.meetings.dial_in_number

    # -- bots and callers

    def new_number(self) -> str:
        number = f"+{self._next_number}"
        self._next_number += 1
        return number

    async def register_bot(
        self,
        name: str,
        *,
        webhook_url: str | None = None,
        permissions: Iterable[str] = ALL_CALL_PERMISSIONS,
        number: str | None = None,
        sip_user: str | None = None,
        display_name: str | None = None,
    ) -> BotCredentials:
        """Register an application (client id and secret), an application instance and a phone number for it
        (and the SIP URI `sip:{sip_user}@<node's SIP host>` if `sip_user` is given). `webhook_url` is where its
        notifications go (it can also be given per call as `callbackUri`)."""
        directory = self.node.directory
        title = display_name or name.replace("-", " ").replace("_", " ").title()
        app, secret = directory.create_app(
            self.tenant_id, title, permissions=list(permissions), callback_url=webhook_url
        )
        number = number or self.new_number()
        sip_uri = f"sip:{sip_user}@{self.node.config.sip.host}" if sip_user else None
        instance = directory.create_instance(app.id, title, phone_number=number, sip_uri=sip_uri)
        creds = BotCredentials(self.tenant_id, app.id, secret, app.id, instance.id, number, title, webhook_url, sip_uri)
        self.bots[name] = creds
        return creds

    def set_webhook(self, creds: BotCredentials, url: str) -> BotCredentials:
        """Point a registered bot's notifications at `url` (for a bot that knows its port only once it runs)."""
        directory = self.node.directory
        directory.update_app(dataclasses.replace(directory.require_app(creds.app_id), callback_url=url))
        updated = dataclasses.replace(creds, webhook_url=url)
        self.bots = {name: updated if c.app_id == creds.app_id else c for name, c in self.bots.items()}
        return updated

    async def recording_bot(
        self,
        name: str,
        *,
        permissions: Iterable[str] = ALL_CALL_PERMISSIONS,
        number: str | None = None,
        sip_user: str | None = None,
    ) -> TestBot:
        """Register a bot whose webhook is a real `RecordingBot` (it validates every callback's JWT and keeps
        the notifications), with a `GraphClient` already authenticated as the bot."""
        webhook = RecordingBot(app_id="", jwks_url=self.jwks_url, issuer=self.issuer)
        await webhook.start(f"/{name}/calls")
        self._stack.push_async_callback(webhook.stop)
        creds = await self.register_bot(
            name, webhook_url=webhook.url, permissions=permissions, number=number, sip_user=sip_user
        )
        webhook.app_id = creds.app_id
        client = await self._stack.enter_async_context(self.client(creds))
        return TestBot(creds, webhook, client)

    def add_meeting(self, **fields: Any) -> MeetingInfo:
        """A meeting bots can join, added to the node's live side by hand (`create_meeting` makes a real
        onlineMeeting instead): generated id, thread id,
        joinMeetingId and passcode (required) unless given; any `domain.meetings.MeetingInfo` field may be set."""
        n = secrets.randbelow(10**10)
        info = MeetingInfo(
            **{
                "id": new_id(),
                "tenant_id": self.tenant_id,
                "organizer_id": new_id(),
                "organizer_name": "Organizer",
                "thread_id": f"19:meeting_{secrets.token_hex(8)}@thread.v2",
                "join_meeting_id": f"{n:010d}",
                "passcode": secrets.token_urlsafe(6),
                "passcode_required": True,
                **fields,
            }
        )
        lookup = self.node.adhoc_meetings
        assert isinstance(lookup, InMemoryMeetings), "this node's meetings come from the onlineMeeting resources"
        return lookup.add(info)

    async def create_meeting(self, organizer: str | None = None, **fields: Any) -> TestMeeting:
        """Create a real onlineMeeting through `POST /users/{organizer}/onlineMeetings`, as an application with
        OnlineMeetings.ReadWrite.All and a tenant-wide access policy (registered on first use). `organizer` is a
        user id, or the display name of a user created for it (default "Organizer"); `fields` are onlineMeeting
        members as Graph spells them (`subject=...`, `lobbyBypassSettings={...}`), sent as given."""
        directory = self.node.directory
        user = directory.get_user(organizer) if organizer else None
        if user is None:
            user = directory.create_user(self.tenant_id, organizer or "Organizer")
        admin = await self._meeting_admin_client()
        status, body, _ = await admin.request("POST", f"/users/{user.id}/onlineMeetings", dict(fields))
        if status != 201:
            raise RuntimeError(f"creating the meeting failed: {status} {body}")
        ids = body.get("joinMeetingIdSettings") or {}
        audio = body.get("audioConferencing") or {}
        return TestMeeting(
            id=body["id"],
            join_web_url=body["joinWebUrl"],
            join_meeting_id=ids.get("joinMeetingId", ""),
            passcode=ids.get("passcode", ""),
            conference_id=audio.get("conferenceId", ""),
            dial_in_number=audio.get("tollNumber", ""),
            thread_id=body["chatInfo"]["threadId"],
            organizer_id=user.id,
            tenant_id=self.tenant_id,
            raw=body,
        )

    async def update_meeting(self, meeting: TestMeeting, **fields: Any) -> dict[str, Any]:
        """PATCH the meeting with `fields` (onlineMeeting members as Graph spells them); returns the new resource."""
        admin = await self._meeting_admin_client()
        url = f"/users/{meeting.organizer_id}/onlineMeetings/{meeting.id}"
        status, body, _ = await admin.request("PATCH", url, dict(fields))
        if status != 200:
            raise RuntimeError(f"updating the meeting failed: {status} {body}")
        return dict(body)

    async def delete_meeting(self, meeting: TestMeeting) -> int:
        """DELETE the meeting (every live leg ends); returns the HTTP status."""
        admin = await self._meeting_admin_client()
        status, _, _ = await admin.request("DELETE", f"/users/{meeting.organizer_id}/onlineMeetings/{meeting.id}")
        return status

    async def _meeting_admin_client(self) -> GraphClient:
        if self._meeting_admin is None:
            directory = self.node.directory
            perms = ["OnlineMeetings.ReadWrite.All"]
            app, secret = directory.create_app(self.tenant_id, "Meetings Admin", permissions=perms)
            self.node.meetings.policies.grant(app.id, None)  # tenant-wide
            client = GraphClient(self.base_url, self.tenant_id, app.id, secret)
            self._meeting_admin = await self._stack.enter_async_context(client)
        return self._meeting_admin

    async def calling_client(self, creds: BotCredentials, **options: Any) -> CommunicationsClient:
        """The SDK's stateful calling client for `creds`, its notification receiver served on loopback and set as
        the app's callback URL; closed with the platform. Options are CommunicationsClient's."""
        client = await self._stack.enter_async_context(
            CommsClient(self.base_url, ClientCredentials(self.base_url, creds.tenant, creds.client_id, creds.secret))
        )
        comms = CommunicationsClient(
            client, callback_uri="", app_id=creds.app_id, jwks_url=self.jwks_url, issuer=self.issuer, **options
        )
        self._stack.push_async_callback(comms.close)
        base = await self._stack.enter_async_context(serve_receiver(comms.receiver))
        comms.callback_uri = f"{base}/{creds.app_id}/calls"
        self.set_webhook(creds, comms.callback_uri)
        return comms

    def client(self, creds: BotCredentials) -> GraphClient:
        """A small Graph client for `creds` (use it as an async context manager: it gets a token on entry)."""
        return GraphClient(self.base_url, creds.tenant, creds.client_id, creds.secret)

    def caller(self, **options: Any) -> VirtualCaller:
        """A virtual phone pointed at the node's SIP port; `async with platform.caller() as caller:`. Options
        are VirtualCaller's (number, display_name, codecs, rfc4733)."""
        return VirtualCaller(self.sip_address, **options)

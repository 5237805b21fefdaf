"""Microsoft's msgraph-sdk (Python, unmodified) creates an online meeting through /users/{id}/onlineMeetings on a
node, reads it back by id, and finds it with `$filter=JoinWebUrl eq '…'` (kiota's request builders and models).
The SDK is pointed at the node by its request adapter's base URL; a kiota AccessTokenProvider hands it a
client-credentials token from the node."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from kiota_abstractions.authentication import (
    AccessTokenProvider,
    AllowedHostsValidator,
    BaseBearerTokenAuthenticationProvider,
)
from kiota_abstractions.base_request_configuration import RequestConfiguration
from msgraph import GraphRequestAdapter, GraphServiceClient
from msgraph.generated.models.online_meeting import OnlineMeeting
from msgraph.generated.users.item.online_meetings.online_meetings_request_builder import (
    OnlineMeetingsRequestBuilder,
)

from tests.integration.conftest import make_platform, node_config


class NodeToken(AccessTokenProvider):
    def __init__(self, token: str, host: str) -> None:
        self.token = token
        self.hosts = AllowedHostsValidator([host])

    async def get_authorization_token(self, uri: str, additional_authentication_context: Any = None) -> str:
        return self.token

    def get_allowed_hosts_validator(self) -> AllowedHostsValidator:
        return self.hosts


async def test_msgraph_sdk_creates_reads_and_finds_a_meeting() -> None:
    perms = {"alice": ["OnlineMeetings.ReadWrite.All"]}
    async with make_platform(node_config(), names=("alice",), perms=perms) as p:
        node = p.node
        user = node.directory.create_user(p.tenant_id, "Heidi Steen", upn="heidi@contoso.example")
        node.meetings.policies.grant(p["alice"].app_id, user.id)
        token = p["alice"].client.token
        assert token is not None
        host = node.public_url.split("://", 1)[1].split(":")[0]
        adapter = GraphRequestAdapter(BaseBearerTokenAuthenticationProvider(NodeToken(token, host)))
        adapter.base_url = f"{node.public_url}/v1.0"
        client = GraphServiceClient(request_adapter=adapter)
        meetings = client.users.by_user_id(user.id).online_meetings

        start = datetime(2030, 7, 12, 14, 30, tzinfo=UTC)
        created = await meetings.post(
            OnlineMeeting(subject="SDK meeting", start_date_time=start, end_date_time=start + timedelta(minutes=30))
        )
        assert created is not None and created.id and created.subject == "SDK meeting"
        assert created.start_date_time == start and created.join_web_url
        assert created.join_web_url.startswith(f"{node.public_url}/l/meetup-join/19%3Ameeting_")
        assert created.chat_info is not None and created.chat_info.thread_id.startswith("19:meeting_")
        assert created.join_meeting_id_settings is not None and created.join_meeting_id_settings.join_meeting_id
        assert created.audio_conferencing is not None and created.audio_conferencing.conference_id
        organizer = created.participants.organizer if created.participants else None
        assert organizer is not None and organizer.identity.user.id == user.id

        got = await meetings.by_online_meeting_id(created.id).get()
        assert got is not None and got.id == created.id and got.join_web_url == created.join_web_url

        query = OnlineMeetingsRequestBuilder.OnlineMeetingsRequestBuilderGetQueryParameters(
            filter=f"JoinWebUrl eq '{created.join_web_url}'"
        )
        found = await meetings.get(request_configuration=RequestConfiguration(query_parameters=query))
        assert found is not None and [m.id for m in found.value or []] == [created.id]

"""A headless Chromium calling an app-hosted bot through the node, as several browser-call tests run it: the node
with the WebRTC edge, bob's bot with the SIP address `BOB`, a single-use ticket, the page's Call button, the bot
answering with app-hosted media; after the hang-up, the media streams of the call's record."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from playwright import async_api as playwright

from opencomms.config import NodeConfig
from opencomms.sdk.media import AudioSocket, LocalMediaSession
from tests.integration.conftest import ALL_CALL_PERMISSIONS, Platform, make_platform
from tests.integration.webrtc.browsers import chromium
from tests.integration.webrtc.support import answer_with_media, ticket

BOB = "sip:support@bob.example"
RECORDS = "/communications/callRecords"


@dataclass
class BrowserCall:
    """A browser's call to bob's bot, answered: the platform, the page, the incoming notification, the bot's socket;
    `streams` (every media stream of the call record) once the `async with` block has ended."""

    p: Platform
    page: Any
    incoming: Any
    sock: AudioSocket
    streams: list[dict[str, Any]] = field(default_factory=list)


@contextlib.asynccontextmanager
async def browser_calls_bob(config: NodeConfig, mic: Path, name: str) -> AsyncIterator[BrowserCall]:
    """The call up and answered for the body of the `async with`; then the page hangs up, the bot sees the call
    terminated and the call record's streams are read into `streams`."""
    perms = {"bob": [*ALL_CALL_PERMISSIONS, "CallRecords.Read.All"]}
    async with (
        make_platform(config, ("bob",), perms) as p,
        LocalMediaSession() as session,
        playwright.async_playwright() as pw,
    ):
        p.node.directory.create_instance(p["bob"].app_id, "Support", sip_uri=BOB)
        issued = await ticket(p, "bob", BOB, name=name)
        assert issued["status"] == 201, issued
        async with chromium(pw, mic) as browser:
            page = await browser.new_page()
            await page.goto(f"{p.node.public_url}{issued['callUrl']}")
            await page.get_by_role("button", name="Call").click()
            incoming = await p["bob"].bot.incoming(timeout=15)
            sock = await answer_with_media(p, "bob", incoming.call_id, session)
            call = BrowserCall(p, page, incoming, sock)
            yield call
            await page.get_by_role("button", name="Hang up").click()
            await p["bob"].bot.wait_state(incoming.call_id, "terminated", timeout=10)
        chain = incoming.resource_data["callChainId"]
        query = "?$expand=sessions($expand=segments)"
        status, record, _ = await p["bob"].client.request("GET", f"{RECORDS}/{chain}{query}")
        assert status == 200, record
        call.streams = [
            s for ses in record["sessions"] for seg in ses["segments"] for m in seg["media"] for s in m["streams"]
        ]

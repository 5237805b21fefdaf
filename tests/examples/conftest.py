"""Shared helpers of the example bots' tests: a platform, bots registered on it, a prompt file server."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import pytest
from aiohttp import web
from examples.common import BotSettings

from opencomms.domain.media import PromptSpec
from opencomms.testing.platform import BotCredentials, TestPlatform


def settings_for(platform: TestPlatform, creds: BotCredentials) -> BotSettings:
    return BotSettings(platform.base_url, creds.tenant, creds.app_id, creds.secret)


async def spoken_by(platform: TestPlatform, text: str, voice: str = "en-us") -> npt.NDArray[np.int16]:
    """The node's own rendering of a text prompt, from its prompt cache (the same samples the callers heard:
    piper's voice varies a little between renders, so a fresh render would not match sample for sample)."""
    return await platform.node.prompts.load(PromptSpec(text=text, voice=voice))


async def prompt_loaded(platform: TestPlatform, text: str, voice: str = "en-us", within: float = 15.0) -> None:
    """Wait until the node has rendered a text prompt (it starts playing once rendered)."""
    prompts, spec = platform.node.prompts, PromptSpec(text=text, voice=voice)
    async with asyncio.timeout(within):
        while not prompts.cached(spec):  # noqa: ASYNC110 - observing the cache from outside
            await asyncio.sleep(0.01)


def ivr_menu(*, key_timeout: float) -> str:
    """The stateless IVR's two-menu YAML (main: 1 -> sales, # hangs up; sales: 9 -> back) with espeak prompts."""
    return f"""
voice: en-us
key_timeout: {key_timeout}
max_retries: 2
give_up: hangup
messages:
  invalid: "Invalid."
  timeout: "Nothing?"
  goodbye: "Bye."
menus:
  main:
    prompt: "Main."
    options:
      "1": {{menu: sales}}
      "#": hangup
  sales:
    prompt: "Sales."
    options:
      "9": back
"""


def set_webhook(platform: TestPlatform, creds: BotCredentials, url: str) -> None:
    """Point an application's callback URL at a bot that only knows its port once it runs."""
    directory = platform.node.directory
    directory.update_app(dataclasses.replace(directory.require_app(creds.app_id), callback_url=url))


@dataclass
class FileServer:
    """Serves WAV prompts over real HTTP on loopback (the test platform lets the node fetch from loopback)."""

    files: dict[str, bytes] = field(default_factory=dict)
    hits: dict[str, int] = field(default_factory=dict)
    url: str = ""
    _runner: web.AppRunner | None = None

    async def start(self) -> FileServer:
        app = web.Application()
        app.router.add_get("/{name}", self._serve)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _serve(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        self.hits[name] = self.hits.get(name, 0) + 1
        if name not in self.files:
            return web.Response(status=404)
        return web.Response(body=self.files[name], content_type="audio/wav")


@pytest.fixture
async def platform() -> AsyncIterator[TestPlatform]:
    async with TestPlatform() as p:
        yield p


@pytest.fixture
async def files() -> AsyncIterator[FileServer]:
    server = await FileServer().start()
    try:
        yield server
    finally:
        await server.stop()

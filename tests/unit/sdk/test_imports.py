"""The SDK imports without the server's dependencies (bots install only what they use)."""

from __future__ import annotations

import subprocess
import sys

import pytest

FORBIDDEN = ("numpy", "uvicorn", "typer", "redis", "uvloop", "pydantic")
SERVER_PARTS = ("server", "api", "calling", "media", "sip", "rtp", "store", "notify", "gateway", "cli")


def test_sdk_import_graph_is_light() -> None:
    code = "import sys, opencomms.sdk, opencomms.sdk.calling, opencomms.sdk.media\nprint(*sorted(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    heavy = [m for m in out if m.split(".")[0] in FORBIDDEN]
    server = [m for m in out if m.startswith("opencomms.") and m.split(".")[1] in SERVER_PARTS]
    assert heavy == [] and server == [], (heavy, server)


def test_optional_parts_are_exported_lazily() -> None:
    import opencomms.sdk as sdk
    from opencomms.sdk.media import LocalMediaSession
    from opencomms.sdk.state import RedisCallState

    assert sdk.RedisCallState is RedisCallState and sdk.LocalMediaSession is LocalMediaSession
    with pytest.raises(AttributeError):
        _ = sdk.NoSuchThing  # type: ignore[attr-defined]

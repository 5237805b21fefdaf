from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.unit.notify.notify_receiver import Receiver


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    try:
        yield r
    finally:
        await r.stop()

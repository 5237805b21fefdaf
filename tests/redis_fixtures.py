"""A real redis-server for the tests of the Redis stores: one per test module (started on a free loopback port,
persisting nothing, stopped at the end), and a fresh key prefix per test so that tests never see each other's keys.

Import the fixtures into a test module or conftest: `from tests.redis_fixtures import redis_url, redis_target`.
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from subprocess import PIPE

import pytest

from opencomms.domain.ids import new_id
from opencomms.store.redis_common import RedisTarget
from opencomms.testing.redis import RedisServer, _free_port


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    with RedisServer() as server:
        yield server.url


@pytest.fixture
def redis_target(redis_url: str) -> RedisTarget:
    """Node `n1` on a key prefix of its own, with short leases and claim times (tests wait for them)."""
    return RedisTarget(redis_url, "n1", prefix=f"t{new_id()[:8]}:", lease=0.6, claim_idle=0.4, poll=0.05)


class PersistentRedis(RedisServer):
    """A redis-server that keeps its data in `directory` (append-only file, fsync on every write) and comes back on
    the same port after `stop()` + `start()`: a Redis restart."""

    def __init__(self, directory: Path) -> None:
        super().__init__()
        self.directory = directory

    def _spawn(self) -> None:
        self.port = self.port or _free_port()
        argv = [self.executable, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.directory)]
        argv += ["--appendonly", "yes", "--appendfsync", "always", "--save", "", "--daemonize", "no"]
        self.process = subprocess.Popen([*argv, "--loglevel", "warning"], stdout=subprocess.DEVNULL, stderr=PIPE)

"""A redis-py client that counts its round trips (each command, each pipeline's execute), for tests and benchmarks
of how many times a store waits on Redis per call.

    client = CountingRedis.from_url(url)
    ...; client.trips
"""

from __future__ import annotations

from typing import Any

import redis

__all__ = ["CountingRedis"]


class CountingRedis(redis.Redis):
    """Counts round trips: commands and pipelines."""

    trips = 0

    def execute_command(self, *args: Any, **options: Any) -> Any:
        self.trips += 1
        return super().execute_command(*args, **options)  # type: ignore[no-untyped-call]

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> Any:
        pipe = super().pipeline(transaction, shard_hint)
        execute = pipe.execute

        def run(raise_on_error: bool = True) -> Any:
            self.trips += 1
            return execute(raise_on_error)

        pipe.execute = run  # type: ignore[method-assign]
        return pipe

"""The Redis State (redis-py asyncio with hiredis): the only module that imports `redis`.

Why these choices:
- marks are plain keys with `PX` expiry; `claim` is `SET NX PX` and `present` is `EXISTS`,
  each pipelined for a batch, so dedup costs two round trips per request whatever its size
  (the check before the publish, the claim after the broker confirmed it);
- the event log is a stream per broker, `XADD MAXLEN ~ N`: ids are times, so "replay since 10
  minutes ago" is an `XRANGE` and trimming is cheap (whole nodes, hence "about N");
- every call is bounded: socket and connect timeouts (default 0.5 s), at most one immediate
  retry (a pooled connection left dead by a Redis restart), and an overall deadline. After a
  failure the backend is skipped for `cooldown` seconds (calls fail fast with
  StateUnavailable), then tried again: a Redis outage costs the ingress at most one timeout per
  cooldown, never a hang, and recovery needs no one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final, TypeVar

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from brokers.event import Event
from brokers.state.base import (
    DEFAULT_PREFIX,
    LogEntry,
    StateUnavailable,
    check_bound,
    key_of,
)

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_TIMEOUT: Final = 0.5
DEFAULT_COOLDOWN: Final = 1.0
_ATTRIBUTES: Final = b"a"
_DATA: Final = b"d"


class RedisState:
    """State in Redis, shared by every replica of a mesh that uses the same URL and prefix."""

    def __init__(
        self,
        url: str,
        prefix: str = DEFAULT_PREFIX,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        cooldown: float = DEFAULT_COOLDOWN,
    ) -> None:
        self._url = url
        self._prefix = prefix
        self._timeout = timeout
        self._cooldown = cooldown
        self._down_until = 0.0
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout,
            socket_connect_timeout=timeout,
            retry=Retry(NoBackoff(), 1),
            health_check_interval=30,
        )

    @property
    def backend(self) -> str:
        return "redis"

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def healthy(self) -> bool:
        return time.monotonic() >= self._down_until

    async def open(self) -> None:
        try:
            await self._call(self._client.ping)
        except StateUnavailable as exc:
            log.warning("redis state is unreachable (%s); continuing, it will be retried", exc)

    async def close(self) -> None:
        await self._client.aclose()

    async def _call(self, operation: Callable[[], Awaitable[T]]) -> T:
        if time.monotonic() < self._down_until:
            raise StateUnavailable("redis is unreachable (cooling down before the next try)")
        try:
            async with asyncio.timeout(self._timeout * 3):
                result = await operation()
        except (RedisError, OSError, TimeoutError) as exc:
            self._down_until = time.monotonic() + self._cooldown
            raise StateUnavailable(f"redis: {type(exc).__name__}: {exc}".rstrip(": ")) from exc
        self._down_until = 0.0
        return result

    # marks

    async def claim(self, kind: str, owner: str, keys: Sequence[str], ttl: float) -> list[bool]:
        if not keys:
            return []
        millis = _millis(ttl)

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.set(key_of(self._prefix, kind, owner, key), b"1", nx=True, px=millis)
            return list(await pipe.execute())

        return [bool(result) for result in await self._call(run)]

    async def exists(self, kind: str, owner: str, key: str) -> bool:
        name = key_of(self._prefix, kind, owner, key)
        count = await self._call(lambda: self._client.exists(name))
        return bool(count)

    async def present(self, kind: str, owner: str, keys: Sequence[str]) -> list[bool]:
        if not keys:
            return []

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for key in keys:
                pipe.exists(key_of(self._prefix, kind, owner, key))
            return list(await pipe.execute())

        return [bool(result) for result in await self._call(run)]

    async def mark(self, kind: str, owner: str, key: str, ttl: float) -> None:
        name = key_of(self._prefix, kind, owner, key)
        await self._call(lambda: self._client.set(name, b"1", px=_millis(ttl)))

    async def count(self, kind: str, owner: str, key: str, ttl: float) -> int:
        name = key_of(self._prefix, kind, owner, key)

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=True)
            pipe.incr(name)
            pipe.pexpire(name, _millis(ttl), nx=True)
            return list(await pipe.execute())

        return int((await self._call(run))[0])

    async def release(self, kind: str, owner: str, keys: Sequence[str]) -> None:
        if keys:
            names = [key_of(self._prefix, kind, owner, key) for key in keys]
            await self._call(lambda: self._client.delete(*names))

    # event log

    async def append(self, broker: str, events: Sequence[Event], maxlen: int) -> list[str]:
        if not events:
            return []
        name = key_of(self._prefix, "log", broker)

        async def run() -> list[Any]:
            pipe = self._client.pipeline(transaction=False)
            for event in events:
                pipe.xadd(name, _encode(event), maxlen=maxlen, approximate=True)
            return list(await pipe.execute())

        return [_text(entry_id) for entry_id in await self._call(run)]

    async def read(
        self, broker: str, start: str = "-", end: str = "+", count: int = 100
    ) -> list[LogEntry]:
        if count <= 0:
            return []
        name = key_of(self._prefix, "log", broker)
        low, high = check_bound(start), check_bound(end)
        rows = await self._call(lambda: self._client.xrange(name, low, high, count=count))
        return [_decode(entry_id, fields) for entry_id, fields in rows or ()]

    async def tail(self, broker: str, count: int) -> list[LogEntry]:
        if count <= 0:
            return []
        name = key_of(self._prefix, "log", broker)
        rows = await self._call(lambda: self._client.xrevrange(name, "+", "-", count=count))
        return [_decode(entry_id, fields) for entry_id, fields in reversed(rows or ())]


def _millis(ttl: float) -> int:
    return max(1, round(ttl * 1000))


def _text(value: Any) -> str:
    return value.decode("ascii") if isinstance(value, bytes) else str(value)


def _encode(event: Event) -> dict[Any, Any]:
    """Attributes as JSON (keeps integer and boolean extensions typed), data as raw bytes."""
    fields: dict[Any, Any] = {
        _ATTRIBUTES: json.dumps(dict(event.attributes), separators=(",", ":")).encode()
    }
    if event.data is not None:
        fields[_DATA] = event.data
    return fields


def _decode(entry_id: Any, fields: Any) -> LogEntry:
    attributes = json.loads(fields[_ATTRIBUTES])
    return LogEntry(_text(entry_id), Event(attributes, fields.get(_DATA)))

"""The embedded State: marks in a dict, event logs in bounded deques, all in this process.

It is the default of `make run` (nothing to start) and the double in tests, so it follows
Redis' semantics exactly where the contract suite looks: `claim` is atomic per key (trivially,
on one event loop), expired keys are gone, log ids are `<ms>-<seq>` and strictly increasing,
range bounds use Redis' syntax. Expired marks are swept in insertion order as new ones arrive,
so memory stays proportional to what is live. Each event log is capped by count (`maxlen`, as
Redis' `MAXLEN`) and by bytes (`max_log_bytes`, default 64 MiB per broker): a count alone lets
large events hold gigabytes.
"""

from __future__ import annotations

import itertools
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Final

from brokers.event import Event, size_of
from brokers.state.base import (
    DEFAULT_PREFIX,
    MAX_SEQ,
    LogEntry,
    check_bound,
    key_of,
    parse_id,
)

_SWEEP_BATCH: Final = 64
MAX_LOG_BYTES: Final = 64 * 1024 * 1024


class MemoryState:
    """State kept in this process; it lives as long as the process does."""

    def __init__(
        self,
        prefix: str = DEFAULT_PREFIX,
        *,
        clock: Callable[[], float] = time.monotonic,
        wallclock: Callable[[], float] = time.time,
        max_log_bytes: int = MAX_LOG_BYTES,
    ) -> None:
        self._prefix = prefix
        self.max_log_bytes = max_log_bytes
        self._log_bytes: dict[str, int] = {}
        self._clock = clock
        self._wallclock = wallclock
        self._marks: dict[str, float] = {}
        self._counters: dict[str, tuple[int, float]] = {}
        self._expiries: deque[tuple[float, str]] = deque()
        self._logs: dict[str, deque[LogEntry]] = {}
        self._last = (0, 0)

    @property
    def backend(self) -> str:
        return "memory"

    @property
    def prefix(self) -> str:
        return self._prefix

    @property
    def healthy(self) -> bool:
        return True

    async def open(self) -> None:
        return None

    async def close(self) -> None:
        return None

    # marks

    def _live(self, name: str, now: float) -> bool:
        expiry = self._marks.get(name)
        if expiry is None:
            return False
        if expiry <= now:
            del self._marks[name]
            return False
        return True

    def _set(self, name: str, ttl: float, now: float) -> None:
        expiry = now + ttl
        self._marks[name] = expiry
        self._expiries.append((expiry, name))

    def _sweep(self, now: float) -> None:
        for _ in range(_SWEEP_BATCH):
            if not self._expiries or self._expiries[0][0] > now:
                return
            expiry, name = self._expiries.popleft()
            if self._marks.get(name) == expiry:
                del self._marks[name]

    async def claim(self, kind: str, owner: str, keys: Sequence[str], ttl: float) -> list[bool]:
        now = self._clock()
        self._sweep(now)
        claimed: list[bool] = []
        for key in keys:
            name = key_of(self._prefix, kind, owner, key)
            fresh = not self._live(name, now)
            if fresh:
                self._set(name, ttl, now)
            claimed.append(fresh)
        return claimed

    async def exists(self, kind: str, owner: str, key: str) -> bool:
        return self._live(key_of(self._prefix, kind, owner, key), self._clock())

    async def present(self, kind: str, owner: str, keys: Sequence[str]) -> list[bool]:
        now = self._clock()
        return [self._live(key_of(self._prefix, kind, owner, key), now) for key in keys]

    async def mark(self, kind: str, owner: str, key: str, ttl: float) -> None:
        now = self._clock()
        self._sweep(now)
        self._set(key_of(self._prefix, kind, owner, key), ttl, now)

    async def count(self, kind: str, owner: str, key: str, ttl: float) -> int:
        now = self._clock()
        name = key_of(self._prefix, kind, owner, key)
        value, expiry = self._counters.get(name, (0, now + ttl))
        if expiry <= now:
            value, expiry = 0, now + ttl
        if len(self._counters) > 10_000:  # drop expired windows now and then
            self._counters = {k: v for k, v in self._counters.items() if v[1] > now}
        self._counters[name] = (value + 1, expiry)
        return value + 1

    async def release(self, kind: str, owner: str, keys: Sequence[str]) -> None:
        for key in keys:
            self._marks.pop(key_of(self._prefix, kind, owner, key), None)

    # event log

    def _next_id(self) -> str:
        millis = int(self._wallclock() * 1000)
        last_ms, last_seq = self._last
        self._last = (millis, 0) if millis > last_ms else (last_ms, last_seq + 1)
        return f"{self._last[0]}-{self._last[1]}"

    async def append(self, broker: str, events: Sequence[Event], maxlen: int) -> list[str]:
        name = key_of(self._prefix, "log", broker)
        log = self._logs.setdefault(name, deque())
        size = self._log_bytes.get(name, 0)
        ids: list[str] = []
        for event in events:
            entry = LogEntry(self._next_id(), event)
            log.append(entry)
            size += size_of(event)
            ids.append(entry.id)
        while log and (len(log) > maxlen or size > self.max_log_bytes):
            size -= size_of(log.popleft().event)
        self._log_bytes[name] = size
        return ids

    async def read(
        self, broker: str, start: str = "-", end: str = "+", count: int = 100
    ) -> list[LogEntry]:
        low, low_open = _bound(check_bound(start), (0, 0), 0)
        high, high_open = _bound(check_bound(end), (MAX_SEQ, MAX_SEQ), MAX_SEQ)
        log = self._logs.get(key_of(self._prefix, "log", broker), deque())

        def inside(entry: LogEntry) -> bool:
            at = parse_id(entry.id)
            above = at > low if low_open else at >= low
            below = at < high if high_open else at <= high
            return above and below

        return list(itertools.islice(filter(inside, log), max(count, 0)))

    async def tail(self, broker: str, count: int) -> list[LogEntry]:
        log = self._logs.get(key_of(self._prefix, "log", broker), deque())
        if count <= 0:
            return []
        return list(log)[-count:]


def _bound(text: str, infinite: tuple[int, int], default_seq: int) -> tuple[tuple[int, int], bool]:
    if text in ("-", "+"):
        return infinite, False
    exclusive = text.startswith("(")
    raw = text[1:] if exclusive else text
    millis, seq = parse_id(raw)
    return (millis, seq if "-" in raw else default_seq), exclusive

"""The State port: what the mesh needs to remember, and nothing a Redis user would not expect.

Why a port of small primitives rather than "dedup" and "replay" methods: the policies (windows,
fail-open, replay targeting) must behave the same on every backend, so they live once, above the
port (`brokers.state.Ledger`), and the two implementations only have to agree on two things the
contract suite pins down:
- *marks*: keys with a time to live, set atomically only when absent (`claim`, Redis
  `SET NX PX`), checked (`exists`, `present` for a batch), set (`mark`) and deleted
  (`release`);
- a capped, append-only *event log* per broker with Redis stream ids (`<ms>-<seq>`), read by
  id range with Redis' own bound syntax (`-`, `+`, `(id` exclusive, `ms` alone).

Keys are `{prefix}:{namespace}:{kind}:{name}:{key}` for the object `namespace/name` (a broker
or a trigger), so one Redis serves many meshes (prefix) and tenants (namespace); tests use a
unique prefix each.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Protocol, runtime_checkable

from brokers.errors import BrokerError
from brokers.event import Event

DEFAULT_PREFIX: Final = "cemesh"
DEFAULT_LOG_LENGTH: Final = 10_000
MAX_SEQ: Final = 2**64 - 1
_STREAM_ID: Final = re.compile(r"(\d+)(?:-(\d+))?")


class StateError(BrokerError):
    """Root of every error raised by `brokers.state` (a `BrokerError`, like all of `brokers`)."""


class StateUnavailable(StateError):
    """The state backend did not answer in time (Redis down, unreachable or too slow).

    Callers decide: the ingress and the dispatcher fail open, the admin API answers 503.
    """


@dataclass(frozen=True, slots=True)
class LogEntry:
    """One event of a broker's event log, with its stream id (`<ms>-<seq>`)."""

    id: str
    event: Event

    @property
    def millis(self) -> int:
        return parse_id(self.id)[0]

    @property
    def time(self) -> str:
        """When it was appended, RFC 3339 UTC with milliseconds."""
        stamp = datetime.fromtimestamp(self.millis / 1000, UTC)
        return stamp.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@runtime_checkable
class State(Protocol):
    @property
    def backend(self) -> str:
        """`memory` or `redis`."""
        ...

    @property
    def prefix(self) -> str: ...

    @property
    def healthy(self) -> bool:
        """False while the backend is known to be unreachable (it retries by itself)."""
        ...

    async def open(self) -> None:
        """Connect if there is anything to connect; never raises for an unreachable backend."""

    async def close(self) -> None: ...

    async def claim(self, kind: str, owner: str, keys: Sequence[str], ttl: float) -> list[bool]:
        """Set each absent key for `ttl` seconds; True where this call set it (atomic per key)."""
        ...

    async def exists(self, kind: str, owner: str, key: str) -> bool: ...

    async def present(self, kind: str, owner: str, keys: Sequence[str]) -> list[bool]:
        """For each key, whether it is set (one round trip for the batch)."""
        ...

    async def mark(self, kind: str, owner: str, key: str, ttl: float) -> None:
        """Set the key for `ttl` seconds, present or not."""

    async def release(self, kind: str, owner: str, keys: Sequence[str]) -> None:
        """Delete keys (absent ones are ignored)."""

    async def count(self, kind: str, owner: str, key: str, ttl: float) -> int:
        """Increment a counter that lives `ttl` seconds from its first increment; the new value
        (rate-limit windows shared by replicas)."""
        ...

    async def append(self, broker: str, events: Sequence[Event], maxlen: int) -> list[str]:
        """Append to the broker's log, keeping about the newest `maxlen`; returns the ids."""
        ...

    async def read(
        self, broker: str, start: str = "-", end: str = "+", count: int = 100
    ) -> list[LogEntry]:
        """Entries with ids in [start, end], oldest first (`(id` makes a bound exclusive)."""
        ...

    async def tail(self, broker: str, count: int) -> list[LogEntry]:
        """The newest `count` entries, oldest first."""
        ...


def split_owner(owner: str) -> tuple[str, str]:
    """`namespace/name` -> (namespace, name); a bare name is in `default`."""
    namespace, sep, name = owner.partition("/")
    return (namespace, name) if sep else ("default", namespace)


def key_of(prefix: str, kind: str, owner: str, key: str = "") -> str:
    namespace, name = split_owner(owner)
    base = f"{prefix}:{namespace}:{kind}:{name}"
    return f"{base}:{key}" if key else base


def event_key(*parts: str) -> str:
    """A fixed-length key for (source, id[, qualifier]): length-prefixed, so never ambiguous."""
    digest = hashlib.blake2b(digest_size=16)
    for part in parts:
        raw = part.encode("utf-8", "surrogatepass")
        digest.update(len(raw).to_bytes(8, "big"))
        digest.update(raw)
    return digest.hexdigest()


def parse_id(text: str) -> tuple[int, int]:
    """A stream id `ms-seq` (or `ms`) as a tuple; raises ValueError."""
    match = _STREAM_ID.fullmatch(text)
    if match is None:
        raise ValueError(f"'{text}' is not a stream id such as 1700000000000-0")
    return int(match.group(1)), int(match.group(2) or 0)


def check_bound(text: str) -> str:
    """Validate a range bound in Redis syntax: `-`, `+`, `id`, `(id`; returns it."""
    if text in ("-", "+"):
        return text
    parse_id(text[1:] if text.startswith("(") else text)
    return text


def id_at(when: datetime, *, end: bool = False) -> str:
    """The stream id bound for a time: the first id at that millisecond, or the last one.
    Times before 1970 are the start of the log (stream ids cannot be negative)."""
    millis = max(0, int(when.timestamp() * 1000))
    return f"{millis}-{MAX_SEQ}" if end else f"{millis}-0"

"""State URLs: `memory://` or `redis://host:port/db` with cemesh's own query parameters, the
State they make, and what functions are told about it (REDIS_URL and their key prefix).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from brokers.state.base import (
    DEFAULT_LOG_LENGTH,
    DEFAULT_PREFIX,
    State,
)
from brokers.state.memory import MemoryState

_URL_OPTIONS: Final = ("prefix", "log_maxlen", "timeout")


@dataclass(frozen=True, slots=True)
class StateOptions:
    """A state URL taken apart: the backend URL and cemesh's own query parameters."""

    backend: str
    url: str
    prefix: str = DEFAULT_PREFIX
    log_length: int = DEFAULT_LOG_LENGTH
    timeout: float = 0.5


def state_options(url: str) -> StateOptions:
    """Parse `memory://` or `redis[s]://host:port/db` with `?prefix=&log_maxlen=&timeout=`."""
    parts = urlsplit(url)
    if parts.scheme not in ("memory", "redis", "rediss", "unix"):
        raise ValueError(f"unsupported state URL '{url}' (use memory:// or redis://)")
    query = parse_qsl(parts.query, keep_blank_values=True)
    ours = {k: v for k, v in query if k in _URL_OPTIONS}
    rest = urlencode([(k, v) for k, v in query if k not in _URL_OPTIONS])
    try:
        log_length = int(ours.get("log_maxlen", DEFAULT_LOG_LENGTH))
        timeout = float(ours.get("timeout", 0.5))
    except ValueError:
        raise ValueError(f"state URL '{url}': log_maxlen and timeout must be numbers") from None
    if log_length < 0 or timeout <= 0:
        raise ValueError(f"state URL '{url}': log_maxlen must be >= 0 and timeout > 0")
    backend = "memory" if parts.scheme == "memory" else "redis"
    clean = urlunsplit(parts._replace(query=rest)) if backend == "redis" else ""
    return StateOptions(backend, clean, ours.get("prefix") or DEFAULT_PREFIX, log_length, timeout)


def make_state(url: str) -> State:
    options = state_options(url)
    if options.backend == "memory":
        return MemoryState(options.prefix)
    from brokers.state.redis import RedisState

    state: State = RedisState(options.url, options.prefix, timeout=options.timeout)
    return state


def function_env(state_url: str, namespace: str, function: str) -> dict[str, str]:
    """What a function is told about state: `REDIS_URL` ("" on memory) and its own key prefix."""
    options = state_options(state_url)
    return {
        "REDIS_URL": options.url,
        "CEMESH_STATE_PREFIX": f"{options.prefix}:{namespace}:fn:{function}",
    }

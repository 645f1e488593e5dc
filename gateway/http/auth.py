"""Bearer tokens scoped to namespaces, brokers and functions.

Tokens are stored hashed (SHA-256 hex) in a YAML file (`CEMESH_TOKENS_FILE`), never in clear
and never logged; `cemesh token new` prints a fresh token and the line to put in the file. A
request's token is hashed and compared in constant time against every entry. With no tokens
the mesh runs open, which `cemesh up` only allows on a loopback address unless told otherwise.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import yaml

from brokers.errors import ConfigError

_HEX64: Final = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True, slots=True)
class Token:
    name: str
    sha256: str
    namespaces: frozenset[str] = frozenset({"*"})
    brokers: frozenset[str] | None = None  # "ns/name" or "name"; None = every broker
    functions: frozenset[str] | None = None  # None = every function in its namespaces
    admin: bool = False
    rate: float | None = None  # requests per second
    burst: int | None = None

    def may_use_namespace(self, namespace: str) -> bool:
        return "*" in self.namespaces or namespace in self.namespaces

    def may_publish(self, namespace: str, broker: str) -> bool:
        if not self.may_use_namespace(namespace):
            return False
        return self.brokers is None or bool({broker, f"{namespace}/{broker}"} & self.brokers)

    def may_call(self, namespace: str, function: str) -> bool:
        if not self.may_use_namespace(namespace):
            return False
        return self.functions is None or function in self.functions


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> tuple[str, str]:
    """A fresh random token and its hash."""
    token = "cem_" + secrets.token_urlsafe(32)
    return token, hash_token(token)


class TokenStore:
    def __init__(self, tokens: Sequence[Token]) -> None:
        self.tokens = tuple(tokens)

    def __bool__(self) -> bool:
        return bool(self.tokens)

    def find(self, presented: str) -> Token | None:
        digest = hash_token(presented)
        found: Token | None = None
        for token in self.tokens:  # no early exit: the time does not depend on which matched
            if hmac.compare_digest(digest, token.sha256):
                found = token
        return found


def load_tokens(path: Path | None) -> TokenStore:
    """Read the tokens file; ConfigError names the file and the entry at fault."""
    if path is None:
        return TokenStore([])
    where = str(path)
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(where, None, f"cannot read tokens: {exc}") from None
    entries = raw.get("tokens") if isinstance(raw, dict) else None
    if not isinstance(entries, list):
        raise ConfigError(where, None, "expected a mapping with a 'tokens' list")
    return TokenStore([_token(where, i, e) for i, e in enumerate(entries)])


def _token(where: str, index: int, entry: Any) -> Token:
    label = f"tokens[{index}]"
    if not isinstance(entry, dict):
        raise ConfigError(where, label, "must be a mapping")
    unknown = set(entry) - {
        "name",
        "sha256",
        "namespaces",
        "brokers",
        "functions",
        "admin",
        "rate",
        "burst",
    }
    if unknown:
        raise ConfigError(where, label, f"unknown field(s): {', '.join(sorted(unknown))}")
    digest = str(entry.get("sha256", "")).lower()
    if not _HEX64.fullmatch(digest):
        raise ConfigError(where, label, "sha256 must be the 64-hex SHA-256 of the token")
    name = str(entry.get("name") or f"token-{index}")

    def names(key: str) -> frozenset[str] | None:
        value = entry.get(key)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ConfigError(where, label, f"{key} must be a list of names")
        return frozenset(value)

    rate = entry.get("rate")
    if rate is not None and (not isinstance(rate, int | float) or rate <= 0):
        raise ConfigError(where, label, "rate must be a positive number of requests per second")
    burst = entry.get("burst")
    if burst is not None and (not isinstance(burst, int) or burst < 1):
        raise ConfigError(where, label, "burst must be a positive integer")
    return Token(
        name,
        digest,
        names("namespaces") or frozenset({"*"}),
        names("brokers"),
        names("functions"),
        bool(entry.get("admin", False)),
        float(rate) if rate is not None else None,
        burst,
    )

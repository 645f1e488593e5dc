"""Knative delivery settings (`spec.delivery` of a Trigger or Broker) as a value.

The ISO-8601 durations Knative accepts (`PT0.5S`, `PT1M`, `P1D`) are parsed here by a short
regex rather than a dependency: Knative itself only allows this day-time subset.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

DEFAULT_TIMEOUT: Final = 30.0
_DURATION: Final = re.compile(
    r"P(?:(?P<d>\d+(?:\.\d+)?)D)?(?:T(?:(?P<h>\d+(?:\.\d+)?)H)?(?:(?P<m>\d+(?:\.\d+)?)M)?"
    r"(?:(?P<s>\d+(?:\.\d+)?)S)?)?"
)


def parse_duration(text: str) -> float:
    """Seconds of an ISO-8601 duration; raises ValueError on anything else."""
    match = _DURATION.fullmatch(text.strip()) if isinstance(text, str) else None
    if not match or text.strip() in ("P", "PT") or text.strip().endswith("T"):
        raise ValueError(f"'{text}' is not an ISO-8601 duration such as PT0.5S or PT1M")
    d, h, m, s = (float(match.group(k) or 0) for k in "dhms")
    return d * 86400 + h * 3600 + m * 60 + s


@dataclass(frozen=True, slots=True)
class Destination:
    """Where events go: a URI, or a reference to a function (resolved to a local one)."""

    uri: str | None = None
    function: str | None = None

    def describe(self) -> str:
        return f"function {self.function}" if self.function else str(self.uri)


@dataclass(frozen=True, slots=True)
class DeliverySpec:
    retry: int = 0
    backoff_policy: Literal["linear", "exponential"] = "exponential"
    backoff_delay: float = 0.2
    timeout: float = DEFAULT_TIMEOUT
    dead_letter_sink: Destination | None = None

    @property
    def attempts(self) -> int:
        return self.retry + 1

    def backoff(self, retry_number: int) -> float:
        """Delay before retry `retry_number` (1-based), as Knative computes it."""
        if self.backoff_policy == "linear":
            return self.backoff_delay * retry_number
        return self.backoff_delay * 2.0**retry_number


def parse_delivery(
    raw: Mapping[str, Any] | None, resolve: Any, base: DeliverySpec | None = None
) -> DeliverySpec:
    """Build a DeliverySpec from YAML; `resolve` turns a destination mapping into Destination.

    Raises ValueError naming the field.
    """
    spec = base or DeliverySpec()
    if not raw:
        return spec
    if not isinstance(raw, Mapping):
        raise ValueError("delivery must be a mapping")
    known = {"retry", "backoffPolicy", "backoffDelay", "timeout", "deadLetterSink"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"delivery has unknown field(s): {', '.join(sorted(unknown))}")
    retry = raw.get("retry", spec.retry)
    if not isinstance(retry, int) or isinstance(retry, bool) or retry < 0:
        raise ValueError("delivery.retry must be a non-negative integer")
    policy = raw.get("backoffPolicy", spec.backoff_policy)
    if policy not in ("linear", "exponential"):
        raise ValueError("delivery.backoffPolicy must be 'linear' or 'exponential'")
    delay = spec.backoff_delay
    if "backoffDelay" in raw:
        delay = _duration(raw["backoffDelay"], "delivery.backoffDelay")
    timeout = spec.timeout
    if "timeout" in raw:
        timeout = _duration(raw["timeout"], "delivery.timeout")
    sink = spec.dead_letter_sink
    if raw.get("deadLetterSink") is not None:
        sink = resolve(raw["deadLetterSink"], "delivery.deadLetterSink")
    return DeliverySpec(retry, policy, delay, timeout, sink)


def _duration(value: Any, field: str) -> float:
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None

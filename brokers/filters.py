"""Trigger filters: Knative's legacy `filter.attributes` and the `filters` dialects.

A compiled filter is a predicate over an Event plus `exact`, the attribute values every
matching event must have. `exact` lets RabbitMQ drop non-matching messages in a headers-exchange
binding and lets the memory broker index triggers by type, so that many triggers do not mean
many evaluations per event.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from brokers.event import Event

Predicate = Callable[[Event], bool]
_ATTRIBUTE_NAME: Final = re.compile(r"[a-z0-9]+")


class FilterError(ValueError):
    """A filter cannot be used; the message says which part and why."""


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled trigger filter."""

    predicate: Predicate | None = None
    exact: Mapping[str, str] = field(default_factory=dict)
    description: str = "all events"

    def matches(self, event: Event) -> bool:
        for name, value in self.exact.items():
            if event.text(name) != value:
                return False
        return self.predicate is None or self.predicate(event)


MATCH_ALL: Final = Filter()


def compile_trigger_filter(spec: Mapping[str, Any]) -> Filter:
    """Compile a Trigger spec's `filters` (preferred) or legacy `filter.attributes`."""
    if spec.get("filters"):
        return compile_filters(spec["filters"])
    legacy = spec.get("filter")
    if legacy:
        if not isinstance(legacy, Mapping) or set(legacy) - {"attributes"}:
            raise FilterError("filter: only 'attributes' is allowed")
        return compile_attributes(legacy.get("attributes") or {})
    return MATCH_ALL


def compile_attributes(attributes: Mapping[str, Any]) -> Filter:
    """Legacy dialect: exact, case-sensitive, ANDed; `""` means present and non-empty."""
    if not isinstance(attributes, Mapping):
        raise FilterError("filter.attributes must be a mapping")
    exact: dict[str, str] = {}
    present: list[str] = []
    for name, value in attributes.items():
        _check_name(name, "filter.attributes")
        if not isinstance(value, str):
            raise FilterError(f"filter.attributes.{name} must be a string")
        if value == "":
            present.append(name)
        else:
            exact[name] = value
    predicate: Predicate | None = None
    if present:
        names = tuple(present)

        def predicate(event: Event) -> bool:
            return all(event.text(n) for n in names)

    described = ", ".join(f"{k}={v!r}" for k, v in attributes.items()) or "all events"
    return Filter(predicate, exact, described)


def compile_filters(filters: Any) -> Filter:
    """SubscriptionsAPI `filters`: a list ANDed together."""
    if not isinstance(filters, list):
        raise FilterError("filters must be a list")
    parts = [_compile_entry(entry, f"filters[{i}]") for i, entry in enumerate(filters)]
    exact: dict[str, str] = {}
    rest: list[Filter] = []
    for part in parts:
        if part.predicate is None:
            for name, value in part.exact.items():
                if exact.setdefault(name, value) != value:
                    # Two different exact values for one attribute can never match.
                    return Filter(lambda _e: False, {}, "never (contradictory exact filters)")
        else:
            rest.append(part)
    predicates = tuple(p.matches for p in rest)
    predicate: Predicate | None = None
    if predicates:

        def predicate(event: Event) -> bool:
            return all(p(event) for p in predicates)

    return Filter(predicate, exact, " AND ".join(p.description for p in parts) or "all events")


def _compile_entry(entry: Any, where: str) -> Filter:
    if not isinstance(entry, Mapping) or len(entry) != 1:
        raise FilterError(f"{where}: each entry must use exactly one dialect")
    ((dialect, body),) = entry.items()
    if dialect == "exact":
        return _compile_exact(body, where)
    raise FilterError(f"{where}: unknown filter dialect '{dialect}'")


def _compile_exact(body: Any, where: str) -> Filter:
    if not isinstance(body, Mapping) or len(body) != 1:
        raise FilterError(f"{where}.exact: needs exactly one attribute")
    ((name, value),) = body.items()
    _check_name(name, f"{where}.exact")
    if not isinstance(value, str) or not value:
        raise FilterError(f"{where}.exact.{name}: value must be a non-empty string")
    return Filter(None, {name: value}, f"{name}={value!r}")


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
        raise FilterError(f"{where}: '{name}' is not a valid attribute name")

"""CDEvents as CloudEvents, and the pieces every webhook translator shares.

The binding (CDEvents spec, CloudEvents binding): ce `id`, `source` and `type` copy the
context, ce `time` is the `timestamp`, ce `subject` is `subject.id`, and the data is the whole
CDEvent as `application/json`. Reading one back accepts any type of the same major version and
keeps the versions it carries.

Translators are pure: webhook in, `Translation` out, no I/O. Redelivery must be harmless, so
every id they mint is derived (uuid5) from the delivery's own id: the same webhook twice gives
the same events twice, which the broker's dedup drops.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from brokers.errors import InvalidEvent
from brokers.event import AttributeValue, Event, is_json_content_type
from cdevents.build import rfc3339
from cdevents.errors import PayloadError, Problem, ValidationError
from cdevents.events import CDEvent
from cdevents.validate import parse

CONTENT_TYPE: Final = "application/json"
ID_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://cemesh.dev/cdevents")
"""uuid5 namespace of the ids cemesh derives for translated events."""


def to_cloudevent(
    event: CDEvent, *, extensions: Mapping[str, AttributeValue] | None = None
) -> Event:
    """The CloudEvent carrying `event` (binary-mode ready: attributes plus JSON data)."""
    attributes: dict[str, AttributeValue] = {
        **(extensions or {}),
        "specversion": "1.0",
        "id": event.id,
        "source": event.source,
        "type": event.type,
        "time": event.timestamp,
        "subject": event.subject_id,
        "datacontenttype": CONTENT_TYPE,
    }
    return Event.create(attributes, json_bytes(event.to_json()))


def from_cloudevent(event: Event) -> CDEvent:
    """The CDEvent in a CloudEvent's data; raises `ValidationError` naming what is wrong."""
    if not is_json_content_type(event.datacontenttype):
        raise ValidationError([Problem("$", f"data of type {event.datacontenttype} is not JSON")])
    if event.data is None:
        raise ValidationError([Problem("$", "the CloudEvent has no data")])
    try:
        doc = json.loads(event.data)
    except ValueError as exc:
        raise ValidationError([Problem("$", f"data is not JSON: {exc}")]) from exc
    cdevent = parse(doc)
    if cdevent.type != event.type:
        problem = Problem("$.context.type", f"differs from the CloudEvent type {event.type!r}")
        raise ValidationError([problem])
    return cdevent


def json_bytes(value: Any) -> bytes:
    """Compact UTF-8 JSON (escaped ASCII when the value holds lone surrogates)."""
    try:
        return json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode()
    except UnicodeEncodeError:
        return json.dumps(value, separators=(",", ":")).encode()


# -- translations ----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Translation:
    """A webhook as CloudEvents: itself (`raw`), then the CDEvents it maps to (maybe none)."""

    raw: Event
    cdevents: tuple[Event, ...] = ()

    @property
    def events(self) -> tuple[Event, ...]:
        """Everything to publish, the raw event first."""
        return (self.raw, *self.cdevents)


def derived_id(*parts: str) -> str:
    """A uuid5 that the same `parts` always give: ids that survive redelivery."""
    return str(uuid.uuid5(ID_NAMESPACE, "\n".join(parts)))


def raw_event(
    *,
    id: str,
    source: str,
    type: str,
    payload: Mapping[str, Any],
    subject: str | None = None,
    time: str | None = None,
) -> Event:
    """A webhook payload as a CloudEvent of its own (JSON data)."""
    attributes: dict[str, AttributeValue] = {
        "specversion": "1.0",
        "id": id,
        "source": source,
        "type": type,
        "datacontenttype": CONTENT_TYPE,
    }
    if subject:
        attributes["subject"] = subject
    if time:
        attributes["time"] = time
    try:
        return Event.create(attributes, json_bytes(payload))
    except InvalidEvent as exc:
        raise PayloadError(f"cannot make a CloudEvent: {exc}", field=exc.field) from exc


# -- reading payloads ------------------------------------------------------------------------

_TRAILING_ZONE: Final = re.compile(r"(.*\d)\s+(UTC|Z|[+-]\d{2}:?\d{2})")


class Fields:
    """Read a webhook payload by dotted path; errors are `PayloadError`s naming the path."""

    __slots__ = ("_data", "_prefix")

    def __init__(self, data: object, prefix: str = "") -> None:
        if not isinstance(data, Mapping):
            raise PayloadError(f"{prefix or 'payload'} must be a JSON object", field=prefix or None)
        self._data: Mapping[str, Any] = data
        self._prefix = prefix

    def where(self, path: str) -> str:
        """The full dotted path of `path` in the payload, for error messages."""
        return f"{self._prefix}.{path}" if self._prefix else path

    def value(self, path: str) -> Any:
        """The value at `path`, None when absent or null."""
        node: Any = self._data
        for part in path.split("."):
            if not isinstance(node, Mapping):
                return None
            node = node.get(part)
        return node

    def has(self, path: str) -> bool:
        return self.value(path) is not None

    def _missing(self, path: str, what: str) -> PayloadError:
        full = self.where(path)
        return PayloadError(f"payload field '{full}' is missing or not {what}", field=full)

    def text(self, path: str) -> str:
        """A required non-empty string."""
        value = self.maybe_text(path)
        if value is None:
            raise self._missing(path, "a non-empty string")
        return value

    def maybe_text(self, path: str) -> str | None:
        """A string, or None when absent, null or empty."""
        value = self.value(path)
        if value is None or value == "":
            return None
        if not isinstance(value, str):
            raise self._missing(path, "a string")
        return value

    def ident(self, path: str) -> str:
        """A required id, number or string, as text."""
        value = self.value(path)
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if isinstance(value, str) and value:
            return value
        raise self._missing(path, "an id")

    def node(self, path: str) -> Fields:
        """A required nested object."""
        value = self.value(path)
        if not isinstance(value, Mapping):
            raise self._missing(path, "an object")
        return Fields(value, self.where(path))

    def nodes(self, path: str) -> list[Fields]:
        """A list of objects (empty when absent)."""
        value = self.value(path)
        if value is None:
            return []
        if not isinstance(value, list):
            raise self._missing(path, "a list")
        return [Fields(item, f"{self.where(path)}[{index}]") for index, item in enumerate(value)]

    def time(self, path: str) -> str | None:
        """A timestamp (ISO 8601, GitLab's `2016-08-12 15:23:28 UTC`, or epoch seconds) as
        RFC 3339 UTC; None when absent."""
        value = self.value(path)
        if value is None or value == "":
            return None
        try:
            if isinstance(value, int | float) and not isinstance(value, bool):
                return rfc3339(dt.datetime.fromtimestamp(value, dt.UTC))
            if isinstance(value, str):
                text = value.strip()
                if match := _TRAILING_ZONE.fullmatch(text):
                    zone = match[2]
                    text = match[1] + ("+00:00" if zone in ("UTC", "Z") else zone)
                moment = dt.datetime.fromisoformat(text)
                if moment.tzinfo is None:
                    moment = moment.replace(tzinfo=dt.UTC)
                return rfc3339(moment)
        except (ValueError, OverflowError, OSError):
            pass
        raise self._missing(path, "a timestamp")

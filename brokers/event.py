"""The CloudEvent value every layer of cemesh passes around.

Why not the `cloudevents` SDK's class: it invents missing `id`/`time`, accepts bad values and
costs ~40 µs per parse (DESIGN section 3, BASELINES). An ingress must be strict and cheap, so the
event here is a frozen mapping of context attributes in their CloudEvents types plus the data as
bytes. Bytes keep binary-mode passthrough free and make "what the sink receives" exact; JSON
data is its UTF-8 JSON text (so an explicit `"data": null` is the four bytes `null`, while no
data is `None`).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import orjson

from brokers.errors import InvalidEvent

AttributeValue = str | int | bool

SPECVERSION: Final = "1.0"
REQUIRED: Final = ("id", "source", "specversion", "type")
OPTIONAL: Final = ("datacontenttype", "dataschema", "subject", "time")
CORE: Final = frozenset(REQUIRED + OPTIONAL)
INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1

_EXTENSION_NAME: Final = re.compile(r"[a-z0-9]+")
# RFC 3339 date-time (section 5.6), seconds required, fraction and offset as specified.
_RFC3339: Final = re.compile(
    r"\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])[Tt]([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)"
    r"(\.\d+)?([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
# RFC 2046 media type: type "/" subtype, then optional parameters.
_MEDIA_TYPE: Final = re.compile(r"[\w!#$&^.+-]+/[\w!#$&^.+-]+(\s*;.*)?", re.ASCII)
_ABSOLUTE_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*:\S*")


_STD_DUMPS: Final = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode


def size_of(event: Event) -> int:
    """About what an event holds in memory: its data and its attributes' text (the bounds of
    the memory broker's queues and the memory state's event log)."""
    data = len(event.data) if event.data is not None else 0
    return data + sum(len(k) + len(str(v)) for k, v in event.attributes.items())


def json_loads(data: bytes | str) -> Any:
    """Parse JSON strictly (invalid UTF-8 and NaN are errors). orjson: ~3x the stdlib."""
    return orjson.loads(data)


def json_dumps(value: Any) -> bytes:
    """Compact UTF-8 JSON; the stdlib covers what orjson refuses (integers over 64 bits)."""
    try:
        return orjson.dumps(value)
    except TypeError:
        return _STD_DUMPS(value).encode("utf-8")


def is_json_content_type(content_type: str | None) -> bool:
    """True when data of this type is carried as a JSON value (CloudEvents JSON format 3.1)."""
    if content_type is None:
        return True
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("application/json", "text/json") or media.endswith("+json")


def attribute_text(value: AttributeValue) -> str:
    """The canonical string form of an attribute (HTTP headers, AMQP, exact filters)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    return value if isinstance(value, str) else str(value)


def validate_attribute(name: str, value: object) -> AttributeValue:
    """Check one context attribute against the spec's type rules and return it."""
    if name in CORE:
        if not isinstance(value, str):
            raise InvalidEvent(f"attribute '{name}' must be a string", field=name)
        if not value:
            raise InvalidEvent(f"attribute '{name}' must not be empty", field=name)
        if name == "specversion" and value != SPECVERSION:
            raise InvalidEvent(f"unsupported specversion '{value}', expected '1.0'", field=name)
        if name == "time" and not _RFC3339.fullmatch(value):
            raise InvalidEvent("attribute 'time' must be an RFC 3339 timestamp", field=name)
        if name == "datacontenttype" and not _MEDIA_TYPE.fullmatch(value):
            raise InvalidEvent(
                "attribute 'datacontenttype' must be an RFC 2046 media type", field=name
            )
        if name == "dataschema" and not _ABSOLUTE_URI.fullmatch(value):
            raise InvalidEvent("attribute 'dataschema' must be an absolute URI", field=name)
        return value
    if not _EXTENSION_NAME.fullmatch(name):
        raise InvalidEvent(
            f"extension name '{name}' must be lower-case letters and digits only", field=name
        )
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        if not INT32_MIN <= value <= INT32_MAX:
            raise InvalidEvent(
                f"extension '{name}' is outside the 32-bit integer range", field=name
            )
        return value
    raise InvalidEvent(f"extension '{name}' must be a string, an integer or a boolean", field=name)


def validate_attributes(attributes: Mapping[str, object]) -> dict[str, AttributeValue]:
    """Validate a whole attribute set; returns a fresh dict (the caller's is never kept)."""
    for name in REQUIRED:
        if name not in attributes:
            raise InvalidEvent(f"required attribute '{name}' is missing", field=name)
    return {name: validate_attribute(name, value) for name, value in attributes.items()}


@dataclass(frozen=True, slots=True)
class Event:
    """A CloudEvent: context attributes in their CloudEvents types, and data as bytes."""

    attributes: Mapping[str, AttributeValue]
    data: bytes | None = None

    @classmethod
    def create(cls, attributes: Mapping[str, object], data: bytes | None = None) -> Event:
        """Build a validated event (raises `InvalidEvent` naming the attribute at fault)."""
        return cls(validate_attributes(attributes), data)

    @property
    def id(self) -> str:
        return str(self.attributes["id"])

    @property
    def source(self) -> str:
        return str(self.attributes["source"])

    @property
    def type(self) -> str:
        return str(self.attributes["type"])

    @property
    def subject(self) -> str | None:
        return self.text("subject")

    @property
    def time(self) -> str | None:
        return self.text("time")

    @property
    def datacontenttype(self) -> str | None:
        return self.text("datacontenttype")

    def get(self, name: str) -> AttributeValue | None:
        return self.attributes.get(name)

    def text(self, name: str) -> str | None:
        """The attribute as its canonical string, or None when absent."""
        value = self.attributes.get(name)
        return None if value is None else attribute_text(value)

    def replace(self, **changes: AttributeValue | None) -> Event:
        """A copy with attributes set (validated) or removed (`None`)."""
        attributes = dict(self.attributes)
        for name, value in changes.items():
            if value is None:
                attributes.pop(name, None)
            else:
                attributes[name] = validate_attribute(name, value)
        return Event(attributes, self.data)

    def json(self) -> Any:
        """The data parsed as JSON (raises ValueError when it is not JSON)."""
        if self.data is None:
            return None
        return json_loads(self.data)

    def data_value(self) -> Any:
        """Data as the JSON format would carry it in `data`: a JSON value or a string.

        Returns bytes when the data can only travel as `data_base64`.
        """
        if self.data is None:
            return None
        if is_json_content_type(self.datacontenttype):
            try:
                return json_loads(self.data)
            except ValueError:
                return self.data
        media = (self.datacontenttype or "").split(";", 1)[0].strip().lower()
        if media.startswith("text/") or media.endswith("+xml") or media == "application/xml":
            try:
                return self.data.decode("utf-8")
            except UnicodeDecodeError:
                return self.data
        return self.data

    def to_dict(self) -> dict[str, Any]:
        """The JSON format object (structured mode) of this event."""
        out: dict[str, Any] = dict(self.attributes)
        value = self.data_value()
        if isinstance(value, bytes):
            out["data_base64"] = base64.b64encode(value).decode("ascii")
        elif self.data is not None:
            out["data"] = value
        return out

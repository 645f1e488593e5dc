"""HTTP protocol binding for CloudEvents 1.0.2: sans-IO functions between wire messages and
`Event`s, binary, structured and batch modes, JSON event format.

Written by hand because the `cloudevents` 2.x SDK is too lenient for an ingress (DESIGN
section 3): it picks binary mode whenever a `ce-` header is present, invents `id`/`time`, does
not unquote or strictly decode header values and has no batch mode. Everything here is a pure
function of its inputs; callers' mappings are never mutated.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from typing import Any, Final, Literal

from brokers.errors import InvalidEvent, UnsupportedContentType
from brokers.event import (
    CORE,
    Event,
    attribute_text,
    is_json_content_type,
    json_dumps,
    json_loads,
    validate_attributes,
)

Mode = Literal["binary", "structured", "batch"]
Headers = list[tuple[str, str]]

STRUCTURED: Final = "application/cloudevents+json"
BATCH: Final = "application/cloudevents-batch+json"
_HEX: Final = frozenset("0123456789abcdefABCDEF")


def encode_header_value(value: str) -> str:
    """Percent-encode space, `"`, `%` and anything outside printable ASCII (HTTP 3.1.3.2)."""
    if value.isascii() and value.isprintable() and not any(c in value for c in ' "%'):
        return value
    out: list[str] = []
    for char in value:
        if "!" <= char <= "~" and char not in '"%':
            out.append(char)
        else:
            out.extend(f"%{byte:02X}" for byte in char.encode("utf-8"))
    return "".join(out)


def decode_header_value(raw: str, *, name: str = "header") -> str:
    """Unquote RFC 7230 quoted-strings, percent-decode once, reject invalid UTF-8."""
    text = _unquote(raw, name) if '"' in raw else raw
    if "%" not in text:
        return text
    buf = bytearray()
    i = 0
    while i < len(text):
        char = text[i]
        if char == "%":
            pair = text[i + 1 : i + 3]
            if len(pair) != 2 or not set(pair) <= _HEX:
                raise InvalidEvent(f"invalid percent-encoding in '{name}'", field=name)
            buf.append(int(pair, 16))
            i += 3
        else:
            # Header bytes arrive latin-1 decoded; anything wider came from a Python caller.
            buf.extend(char.encode("latin-1" if char <= "\xff" else "utf-8"))
            i += 1
    try:
        return buf.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidEvent(f"'{name}' is not valid UTF-8 after decoding", field=name) from exc


def _unquote(raw: str, name: str) -> str:
    out: list[str] = []
    quoted = False
    i = 0
    while i < len(raw):
        char = raw[i]
        if char == '"':
            quoted = not quoted
        elif char == "\\" and quoted:
            if i + 1 >= len(raw):
                raise InvalidEvent(f"unterminated escape in '{name}'", field=name)
            i += 1
            out.append(raw[i])
        else:
            out.append(char)
        i += 1
    if quoted:
        raise InvalidEvent(f"unterminated quoted string in '{name}'", field=name)
    return "".join(out)


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def mode_of(content_type: str | None) -> Mode:
    """HTTP mode from Content-Type alone (never from the presence of `ce-` headers)."""
    media = media_type(content_type)
    if media == BATCH:
        return "batch"
    if media.startswith("application/cloudevents"):
        return "structured"
    return "binary"


def from_http(headers: Mapping[str, str], body: bytes) -> tuple[Mode, list[Event]]:
    """Decode a request. `headers` has lower-case names. Raises `InvalidEvent`."""
    content_type = headers.get("content-type")
    mode = mode_of(content_type)
    if mode == "binary":
        return mode, [from_binary(headers, body)]
    if media_type(content_type) not in (STRUCTURED, BATCH):
        raise UnsupportedContentType(
            f"event format '{media_type(content_type)}' is not supported; use JSON",
            field="content-type",
        )
    payload = _load_json(body)
    if mode == "structured":
        return mode, [from_json_object(payload)]
    return mode, from_batch_value(payload)


def _load_json(body: bytes) -> Any:
    try:
        return json_loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidEvent(f"body is not valid JSON: {exc}", field="body") from exc


def from_binary(headers: Mapping[str, str], body: bytes) -> Event:
    attributes: dict[str, object] = {}
    for key, value in headers.items():
        if key.startswith("ce-") and len(key) > 3:
            name = key[3:]
            attributes[name] = decode_header_value(value, name=name)
    if "specversion" not in attributes:
        raise InvalidEvent(
            "not a CloudEvent: binary mode needs a ce-specversion header "
            "(or send Content-Type: application/cloudevents+json)",
            field="specversion",
        )
    if "datacontenttype" in attributes:
        raise InvalidEvent(
            "binary mode carries datacontenttype in Content-Type, not ce-datacontenttype",
            field="datacontenttype",
        )
    content_type = headers.get("content-type")
    if content_type:
        attributes["datacontenttype"] = content_type
    return Event(validate_attributes(attributes), body or None)


def from_json_object(obj: Any, *, where: str = "") -> Event:
    """One event of the JSON format (structured mode, or one element of a batch)."""
    if not isinstance(obj, dict):
        raise InvalidEvent(f"{where}a CloudEvent must be a JSON object", field=where or "body")
    attributes: dict[str, object] = {}
    has_data = False
    data: object = None
    data_b64: object = None
    for key, value in obj.items():
        if key == "data":
            has_data, data = True, value
        elif key == "data_base64":
            data_b64 = value
        elif value is not None:
            if isinstance(value, float) and key not in CORE:
                if not value.is_integer():
                    raise InvalidEvent(f"{where}extension '{key}' must be an integer", field=key)
                value = int(value)
            attributes[key] = value
    if has_data and data_b64 is not None:
        raise InvalidEvent(f"{where}'data' and 'data_base64' are exclusive", field="data_base64")
    try:
        checked = validate_attributes(attributes)
    except InvalidEvent as exc:
        raise InvalidEvent(where + exc.message, field=exc.field) from None
    payload: bytes | None = None
    if data_b64 is not None:
        if not isinstance(data_b64, str):
            raise InvalidEvent(f"{where}'data_base64' must be a string", field="data_base64")
        try:
            payload = base64.b64decode(data_b64, validate=True)
        except binascii.Error as exc:
            raise InvalidEvent(f"{where}'data_base64' is not base64", field="data_base64") from exc
    elif has_data:
        content_type = checked.get("datacontenttype")
        if isinstance(data, str) and not is_json_content_type(
            content_type if isinstance(content_type, str) else None
        ):
            payload = data.encode("utf-8")
        else:
            payload = json_dumps(data)
    return Event(checked, payload)


def from_batch_value(payload: Any) -> list[Event]:
    if not isinstance(payload, list):
        raise InvalidEvent("a batch must be a JSON array of events", field="body")
    events = [from_json_object(item, where=f"[{i}]: ") for i, item in enumerate(payload)]
    versions = {event.attributes["specversion"] for event in events}
    if len(versions) > 1:
        raise InvalidEvent("a batch must not mix spec versions", field="specversion")
    return events


def to_binary(event: Event) -> tuple[Headers, bytes]:
    """Binary mode: attributes as `ce-` headers, datacontenttype as Content-Type."""
    headers: Headers = []
    for name, value in event.attributes.items():
        if name == "datacontenttype":
            headers.append(("content-type", attribute_text(value)))
        else:
            headers.append(("ce-" + name, encode_header_value(attribute_text(value))))
    return headers, event.data or b""


def to_structured(event: Event) -> tuple[Headers, bytes]:
    body = json_dumps(event.to_dict())
    return [("content-type", STRUCTURED + "; charset=utf-8")], body


def to_json(event: Event) -> str:
    return json_dumps(event.to_dict()).decode("utf-8")


def headers_from_asgi(raw: Sequence[tuple[bytes, bytes]]) -> dict[str, str]:
    """ASGI header pairs to a dict of lower-case names (latin-1, as HTTP/1.1 defines)."""
    return {key.decode("latin-1").lower(): value.decode("latin-1") for key, value in raw}

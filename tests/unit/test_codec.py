"""The HTTP binding against the upstream conformance data and our own edge cases."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from brokers.codec import (
    decode_header_value,
    encode_header_value,
    from_http,
    to_binary,
    to_structured,
)
from brokers.errors import InvalidEvent, UnsupportedContentType
from brokers.event import Event
from tests.conftest import shared_dir, shared_path

CE_DIR = "conformance/cloudevents"


def _cases(name: str) -> list[dict[str, Any]]:
    path = shared_dir() / CE_DIR / name
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{path} not found"))]  # type: ignore[list-item]
    tests: list[dict[str, Any]] = json.loads(path.read_text("utf-8-sig"))["tests"]
    return [pytest.param(t, id=t["id"]) for t in tests]  # type: ignore[misc]


def _vectors(kind: str) -> list[Any]:
    path = shared_dir() / CE_DIR / "http_header_values.json"
    if not path.exists():
        return [pytest.param(None, marks=pytest.mark.skip(reason=f"{path} not found"))]
    return list(json.loads(path.read_text("utf-8"))[kind])


def _structured(obj: Any) -> tuple[str, list[Event]]:
    body = json.dumps(obj).encode()
    return from_http({"content-type": "application/cloudevents+json"}, body)


def _without_nulls(obj: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in obj.items() if v is not None or k == "data"}


@pytest.mark.parametrize("case", _cases("valid-events.json"))
def test_valid_event_is_accepted_and_preserved(case: dict[str, Any]) -> None:
    mode, (event,) = _structured(case["event"])
    assert mode == "structured"
    assert event.to_dict() == _without_nulls(case["event"])
    # And it survives binary mode unchanged (all attributes, data bytes).
    headers, body = to_binary(event)
    _, (again,) = from_http(dict(headers), body)
    assert {
        k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in event.attributes.items()
    } == dict(again.attributes)
    assert again.data == event.data


@pytest.mark.parametrize("case", _cases("invalid-events.json"))
def test_invalid_event_is_rejected(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidEvent):
        _structured(case["event"])


@pytest.mark.parametrize("case", _cases("valid-batches.json"))
def test_valid_batch_is_accepted_and_preserved(case: dict[str, Any]) -> None:
    body = json.dumps(case["batch"]).encode()
    mode, events = from_http({"content-type": "application/cloudevents-batch+json"}, body)
    assert mode == "batch"
    assert [e.to_dict() for e in events] == [_without_nulls(e) for e in case["batch"]]


@pytest.mark.parametrize("case", _cases("invalid-batches.json"))
def test_invalid_batch_is_rejected(case: dict[str, Any]) -> None:
    body = json.dumps(case["batch"]).encode()
    with pytest.raises(InvalidEvent):
        from_http({"content-type": "application/cloudevents-batch+json"}, body)


@pytest.mark.parametrize(("decoded", "encoded"), _vectors("round_trip"))
def test_header_round_trip(decoded: str, encoded: str) -> None:
    assert encode_header_value(decoded) == encoded
    assert decode_header_value(encoded) == decoded


@pytest.mark.parametrize(("raw", "decoded"), _vectors("decode_only"))
def test_header_decode_only(raw: str, decoded: str) -> None:
    assert decode_header_value(raw) == decoded


@pytest.mark.parametrize("raw", _vectors("decode_must_fail"))
def test_header_decode_must_fail(raw: str) -> None:
    with pytest.raises(InvalidEvent):
        decode_header_value(raw)


def test_header_vector_count() -> None:
    data = json.loads(shared_path(f"{CE_DIR}/http_header_values.json").read_text("utf-8"))
    assert sum(len(data[k]) for k in ("round_trip", "decode_only", "decode_must_fail")) == 29


BINARY = {"ce-specversion": "1.0", "ce-id": "1", "ce-source": "/s", "ce-type": "t"}


def test_binary_mode_keeps_bytes_and_content_type() -> None:
    headers = {**BINARY, "content-type": "application/octet-stream", "ce-ext1": "caf%C3%A9"}
    mode, (event,) = from_http(headers, b"\x00\xff")
    assert mode == "binary"
    assert event.data == b"\x00\xff"
    assert event.datacontenttype == "application/octet-stream"
    assert event.get("ext1") == "café"
    assert base64.b64decode(event.to_dict()["data_base64"]) == b"\x00\xff"


def test_mode_is_chosen_by_content_type_alone() -> None:
    # ce- headers next to a structured content type: structured wins.
    body = json.dumps({"specversion": "1.0", "id": "s", "source": "/x", "type": "t"}).encode()
    mode, (event,) = from_http({**BINARY, "content-type": "application/cloudevents+json"}, body)
    assert (mode, event.id) == ("structured", "s")


def test_binary_without_specversion_names_the_field() -> None:
    with pytest.raises(InvalidEvent) as info:
        from_http({"content-type": "application/json"}, b"{}")
    assert info.value.field == "specversion"


def test_binary_missing_id_is_not_invented() -> None:
    headers = {k: v for k, v in BINARY.items() if k != "ce-id"}
    with pytest.raises(InvalidEvent) as info:
        from_http(headers, b"")
    assert info.value.field == "id"


def test_other_structured_format_is_unsupported() -> None:
    with pytest.raises(UnsupportedContentType):
        from_http({"content-type": "application/cloudevents+avro"}, b"\x00")


def test_explicit_null_data_differs_from_no_data() -> None:
    base = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t"}
    _, (with_null,) = _structured({**base, "data": None})
    _, (without,) = _structured(base)
    assert with_null.data == b"null"
    assert without.data is None
    assert "data" in with_null.to_dict()
    assert "data" not in without.to_dict()


def test_structured_round_trip_with_json_data() -> None:
    base = {"specversion": "1.0", "id": "1", "source": "/s", "type": "t", "data": {"a": [1, "é"]}}
    _, (event,) = _structured(base)
    headers, body = to_structured(event)
    _, (again,) = from_http(dict(headers), body)
    assert again == event
    assert json.loads(event.data or b"") == {"a": [1, "é"]}


def test_bad_json_is_a_clear_error() -> None:
    with pytest.raises(InvalidEvent) as info:
        from_http({"content-type": "application/cloudevents+json"}, b"{nope")
    assert info.value.field == "body"

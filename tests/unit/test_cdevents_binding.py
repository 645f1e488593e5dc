"""The CloudEvent binding of CDEvents, and the helpers the translators share."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable

import pytest

import cdevents
from brokers.event import Event
from cdevents import build
from cdevents.binding import Fields, derived_id, json_bytes
from tests.unit.test_cdevents_conformance import conformance_available, official_problems


def merged() -> cdevents.CDEvent:
    return build.change_merged(
        source="https://github.com/octo-org/hello-world",
        subject_id="42",
        content={"repository": {"id": "octo-org/hello-world", "source": "https://github.com"}},
        chain_id="4c8cb7dd-3448-41de-8768-eec704e2829b",
        id="271069a8-fc18-44f1-b38f-9d70a1695819",
        timestamp=dt.datetime(2024, 5, 15, 16, 20, 44, tzinfo=dt.UTC),
    )


def test_to_cloudevent_follows_the_binding() -> None:
    event = merged()
    ce = cdevents.to_cloudevent(event, extensions={"traceparent": "00-abc-def-01"})
    assert dict(ce.attributes) == {
        "traceparent": "00-abc-def-01",
        "specversion": "1.0",
        "id": "271069a8-fc18-44f1-b38f-9d70a1695819",
        "source": "https://github.com/octo-org/hello-world",
        "type": "dev.cdevents.change.merged.0.3.0",
        "time": "2024-05-15T16:20:44.000000Z",
        "subject": "42",
        "datacontenttype": "application/json",
    }
    assert ce.json() == event.to_json()
    assert not conformance_available() or official_problems(ce.json()) == []
    assert cdevents.from_cloudevent(ce) == event


def test_from_cloudevent_keeps_a_compatible_version() -> None:
    doc = merged().to_json()
    doc["context"]["type"] = "dev.cdevents.change.merged.0.3.1"
    ce = Event.create(
        {
            "specversion": "1.0",
            "id": doc["context"]["id"],
            "source": doc["context"]["source"],
            "type": doc["context"]["type"],
        },
        json_bytes(doc),
    )
    event = cdevents.from_cloudevent(ce)
    assert event.type == "dev.cdevents.change.merged.0.3.1"
    assert cdevents.to_cloudevent(event).type == "dev.cdevents.change.merged.0.3.1"


def _ce(data: bytes | None, **attributes: str) -> Event:
    base = {
        "specversion": "1.0",
        "id": "1",
        "source": "/s",
        "type": "dev.cdevents.change.merged.0.3.0",
    }
    return Event.create({**base, **attributes}, data)


@pytest.mark.parametrize(
    ("event", "path", "message"),
    [
        (_ce(None), "$", "no data"),
        (_ce(b"{}", datacontenttype="text/plain"), "$", "not JSON"),
        (_ce(b"{nope"), "$", "not JSON"),
        (_ce(b'{"context": {}}'), "$.context.specversion", "required"),
        (
            _ce(json_bytes(merged().to_json()), type="dev.cdevents.change.created.0.4.0"),
            "$.context.type",
            "differs",
        ),
    ],
)
def test_from_cloudevent_errors_name_the_path(event: Event, path: str, message: str) -> None:
    with pytest.raises(cdevents.ValidationError) as caught:
        cdevents.from_cloudevent(event)
    assert caught.value.path == path
    assert message in str(caught.value)


def test_validation_errors_list_every_problem() -> None:
    doc = merged().to_json()
    del doc["context"]["id"]
    doc["subject"]["content"]["extra"] = 1
    with pytest.raises(cdevents.ValidationError) as caught:
        cdevents.parse(doc)
    assert [p.path for p in caught.value.problems] == [
        "$.context.id",
        "$.subject.content.extra",
    ]
    assert str(caught.value) == "$.context.id: is required (and 1 more)"


def test_lookup_by_name_or_exact_type() -> None:
    assert cdevents.lookup("ticket.closed").type == "dev.cdevents.ticket.closed.0.2.0"
    assert cdevents.lookup("dev.cdevents.ticket.closed.0.2.0").name == "ticket.closed"
    for name in ("ticket.reopened", "dev.cdevents.ticket.closed.0.3.0", ""):
        with pytest.raises(KeyError):
            cdevents.lookup(name)


def test_ticket_closed_accepts_its_subject_type() -> None:
    event = cdevents.create(
        "ticket.closed",
        source="/tickets",
        subject_id="T-1",
        subject_type="ticket",
        content={"uri": "https://t.example.com/T-1", "resolution": "withdrawn"},
        custom_data="aGVsbG8=",
        custom_data_content_type="application/octet-stream",
    )
    doc = event.to_json()
    assert doc["subject"]["type"] == "ticket"
    assert not conformance_available() or official_problems(doc) == []
    with pytest.raises(cdevents.ValidationError, match=r"\$\.subject\.type"):
        cdevents.create(
            "ticket.created",
            source="/tickets",
            subject_id="T-1",
            subject_type="ticket",
            content={"uri": "https://t.example.com/T-1", "summary": "s", "creator": "me"},
        )


def test_timestamps_must_be_aware_and_come_out_in_utc() -> None:
    paris = dt.timezone(dt.timedelta(hours=2))
    assert build.rfc3339(dt.datetime(2024, 5, 15, 18, 0, tzinfo=paris)) == (
        "2024-05-15T16:00:00.000000Z"
    )
    with pytest.raises(ValueError, match="aware"):
        build.rfc3339(dt.datetime(2024, 5, 15, 18, 0))


def test_purls_encode_each_part() -> None:
    assert build.purl("github", "octo-org", "hello-world", "v1.0") == (
        "pkg:github/octo-org/hello-world@v1.0"
    )
    assert build.purl("generic", "a/b c", "n", "release/1+2") == (
        "pkg:generic/a/b%20c/n@release%2F1%2B2"
    )
    assert build.purl("oci", None, "app", "sha256:ab", {"tag": "v1", "arch": "amd64"}) == (
        "pkg:oci/app@sha256%3Aab?arch=amd64&tag=v1"
    )


def test_derived_ids_are_stable_uuids() -> None:
    assert derived_id("a", "b") == derived_id("a", "b")
    assert derived_id("a", "b") != derived_id("a", "c")
    assert derived_id("a\nb") == derived_id("a", "b")  # parts are joined; callers fix their arity
    assert len(derived_id("x")) == 36


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-15T16:20:44Z", "2024-05-15T16:20:44.000000Z"),
        ("2024-05-15T18:20:44+02:00", "2024-05-15T16:20:44.000000Z"),
        ("2024-05-15T16:20:44.123Z", "2024-05-15T16:20:44.123000Z"),
        ("2024-05-15 16:20:44 UTC", "2024-05-15T16:20:44.000000Z"),
        ("2024-05-15 18:20:44 +0200", "2024-05-15T16:20:44.000000Z"),
        ("2024-05-15 16:20:44", "2024-05-15T16:20:44.000000Z"),
        (1715790044, "2024-05-15T16:20:44.000000Z"),
        (None, None),
        ("", None),
    ],
)
def test_payload_timestamps_become_rfc3339_utc(value: object, expected: str | None) -> None:
    assert Fields({"at": value}).time("at") == expected


@pytest.mark.parametrize("value", ["yesterday", True, [1], "2024-13-01T00:00:00Z"])
def test_unreadable_payload_timestamps_name_the_field(value: object) -> None:
    with pytest.raises(cdevents.PayloadError) as caught:
        Fields({"run": {"at": value}}).node("run").time("at")
    assert caught.value.field == "run.at"


def test_fields_read_nested_values_and_name_what_is_missing() -> None:
    fields = Fields({"a": {"b": [{"c": 1}, {"c": "x"}], "n": 7, "s": "", "t": True}})
    assert fields.ident("a.n") == "7"
    assert fields.maybe_text("a.s") is None
    assert fields.maybe_text("a.missing") is None
    assert [item.ident("c") for item in fields.nodes("a.b")] == ["1", "x"]
    calls: list[tuple[Callable[[], object], str]] = [
        (lambda: fields.text("a.s"), "a.s"),
        (lambda: fields.ident("a.t"), "a.t"),
        (lambda: fields.node("a.n"), "a.n"),
        (lambda: fields.nodes("a.n"), "a.n"),
        (lambda: fields.maybe_text("a.n"), "a.n"),
        (lambda: fields.node("a").nodes("b")[0].text("c"), "a.b[0].c"),
    ]
    for call, field in calls:
        with pytest.raises(cdevents.PayloadError) as caught:
            call()
        assert caught.value.field == field


def test_json_bytes_is_compact_utf8_and_survives_lone_surrogates() -> None:
    assert json_bytes({"a": "é"}) == '{"a":"é"}'.encode()
    assert json.loads(json_bytes({"a": "\ud800"})) == {"a": "\ud800"}


def test_chain_labels_are_exported() -> None:
    assert cdevents.CHAIN_LABEL == "cemesh.dev/chain-id"
    assert cdevents.EVENT_LABEL == "cemesh.dev/event-id"

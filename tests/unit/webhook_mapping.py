"""What the GitHub and GitLab mapping tests share: their payload fixtures, and a translation
checked the same way for both (the raw event first and unchanged; every CDEvent valid against
ours and the official schema, its CloudEvent attributes those of the parsed CDEvent)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cdevents
from cdevents.binding import Translation
from tests.unit.test_cdevents_conformance import conformance_available, official_problems

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"


@dataclass(frozen=True)
class Webhook:
    translate: Callable[[str, str, dict[str, Any]], Translation]
    fixtures: Path
    delivery: str

    def payload(self, name: str) -> dict[str, Any]:
        data: dict[str, Any] = json.loads((self.fixtures / f"{name}.json").read_text())
        return data

    def mapped(self, event_name: str, body: dict[str, Any]) -> list[cdevents.CDEvent]:
        """Translate, check every CDEvent (ours and the official schema), return them parsed."""
        translation = self.translate(event_name, self.delivery, body)
        assert translation.raw.id == self.delivery
        assert translation.raw.json() == body
        assert translation.events[0] is translation.raw
        out = []
        for ce in translation.cdevents:
            event = cdevents.from_cloudevent(ce)
            assert not conformance_available() or official_problems(ce.json()) == []
            assert (ce.id, ce.type, ce.source, ce.subject, ce.time) == (
                event.id,
                event.type,
                event.source,
                event.subject_id,
                event.timestamp,
            )
            out.append(event)
        return out

    def one(self, event_name: str, body: dict[str, Any]) -> cdevents.CDEvent:
        events = self.mapped(event_name, body)
        assert len(events) == 1
        return events[0]

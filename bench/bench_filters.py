"""Trigger matching throughput with 1, 100 and 1,000 triggers of mixed filter dialects.

What it answers: does the number of triggers on a broker change what routing one event costs?
(issue 4, target: 1,000 triggers cost less than 20% of the throughput with 1, i.e. a `ratio`
of at least 0.8). It measures events/s through the memory broker's matching
(`brokers.memory.TriggerIndex.matching`) and through `brokers.filterindex.FilterIndex`, the
richer index proposed for it, and, for scale, evaluating every filter of 1,000 triggers.

The workload is what a mesh of that size looks like: 120 event types, 90 sources, a quarter of
events with JSON data; triggers mostly on an exact `type` plus another dialect (exact or prefix
`source`, CESQL, an `any`, a CEL data filter), some CESQL-only ones that name their type inside
the expression, some on a type or source prefix, and a few with no type at all (CESQL on
extensions, `not`, `suffix`) which every event must run. Trigger `i` is the same in every
configuration, and the events are the same for every configuration.

Rows (bench.report.Row): events/s with, as baseline, the same matcher with 1 trigger (the
target reads `ratio >= 0.8` at 1,000); then filter evaluations and matches per event at 1,000,
which explain the figures. Run: `python -m bench.bench_filters` (or `python -m bench filters`).
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any, Final

from bench.report import Row
from brokers.delivery import Destination
from brokers.event import Event
from brokers.filterindex import FilterIndex
from brokers.filters import Filter, Predicate, compile_trigger_filter
from brokers.memory import TriggerIndex
from brokers.triggers import TriggerSpec

SIZES: Final = (1, 100, 1000)
EVENTS: Final = 2000
SECONDS: Final = 0.4
"""Time per measurement; the best of `REPEATS` is kept (the least disturbed by the machine)."""
REPEATS: Final = 3
TARGET_RATIO: Final = 0.8

DOMAINS: Final = tuple(
    f"{area}{n}" for area in ("orders", "billing", "shipping", "crm", "builds") for n in range(4)
)
ENTITIES: Final = ("item", "invoice", "customer", "pipeline", "artifact")
VERBS: Final = ("created", "updated", "deleted", "finished")
TYPES: Final = tuple(f"com.example.{d}.{e}.{v}" for d in DOMAINS for e in ENTITIES for v in VERBS)
SOURCES: Final = tuple(
    f"/{system}/{region}/{n}"
    for system in ("orders", "billing", "shipping", "crm", "github", "gitlab")
    for region in ("eu", "us", "ap")
    for n in range(5)
)
# Trigger kinds per 200 triggers, most common first (trigger i has kind KINDS[i % 200]).
MIX: Final = (
    ("type", 66),
    ("type+source", 30),
    ("type+source-prefix", 30),
    ("type+cesql", 24),
    ("cesql-with-type", 14),
    ("type+any", 10),
    ("type+data", 10),
    ("type-prefix", 6),
    ("source-prefix", 2),
    ("untyped-cesql", 4),
    ("untyped-not", 2),
    ("untyped-suffix", 2),
)


def _kinds() -> list[str]:
    kinds = [kind for kind, count in MIX for _ in range(count)]
    random.Random(4).shuffle(kinds)
    kinds.remove("type")
    return ["type", *kinds]  # the 1-trigger case is the most common kind of trigger


def trigger_specs(count: int) -> list[dict[str, Any]]:
    """The Trigger specs (filter part) of the first `count` triggers; deterministic."""
    kinds, rng = _kinds(), random.Random(11)
    specs = []
    for i in range(count):
        kind = kinds[i % len(kinds)]
        t, source = rng.choice(TYPES), rng.choice(SOURCES)
        exact_type = {"exact": {"type": t}}
        spec: dict[str, Any]
        if kind == "type":
            spec = {"filter": {"attributes": {"type": t}}}
        elif kind == "type+source":
            spec = {"filter": {"attributes": {"type": t, "source": source}}}
        elif kind == "type+source-prefix":
            spec = {"filters": [exact_type, {"prefix": {"source": source.rsplit("/", 1)[0]}}]}
        elif kind == "type+cesql":
            expression = rng.choice(["priority >= 3", "subject LIKE 'item-1%'", "region = 'eu'"])
            spec = {"filters": [exact_type, {"cesql": expression}]}
        elif kind == "cesql-with-type":
            spec = {"filters": [{"cesql": f"type = '{t}' AND (priority > 2 OR region = 'us')"}]}
        elif kind == "type+any":
            any_of = [{"suffix": {"subject": "7"}}, {"exact": {"region": "ap"}}]
            spec = {"filters": [exact_type, {"any": any_of}]}
        elif kind == "type+data":
            spec = {"filters": [exact_type, {"data": "data.amount > 500"}]}
        elif kind == "type-prefix":
            spec = {"filters": [{"prefix": {"type": t.rsplit(".", 1)[0] + "."}}]}
        elif kind == "source-prefix":
            spec = {"filters": [{"prefix": {"source": source.rsplit("/", 1)[0] + "/"}}]}
        elif kind == "untyped-cesql":
            tenant = f"tenant{rng.randint(0, 49)}"
            spec = {"filters": [{"cesql": f"tenant = '{tenant}' AND priority > 2"}]}
        elif kind == "untyped-not":
            subject = {"exact": {"subject": f"item-{rng.randint(0, 199)}"}}
            spec = {"filters": [subject, {"not": {"prefix": {"source": "/github/"}}}]}
        else:
            spec = {"filters": [{"suffix": {"subject": f"-{rng.randint(0, 99)}"}}]}
        specs.append(spec)
    return specs


def triggers(count: int) -> list[TriggerSpec]:
    return [
        TriggerSpec(
            "default",
            f"t{i}",
            "default",
            Destination(uri=f"http://127.0.0.1:9/t{i}"),
            compile_trigger_filter(spec),
            raw_spec=spec,
        )
        for i, spec in enumerate(trigger_specs(count))
    ]


def events(count: int = EVENTS) -> list[Event]:
    """Events of varied types, sources, subjects and extensions; a quarter with JSON data."""
    rng = random.Random(23)
    out = []
    for i in range(count):
        attributes: dict[str, object] = {
            "specversion": "1.0",
            "id": str(i),
            "type": rng.choice(TYPES),
            "source": rng.choice(SOURCES),
            "subject": f"item-{rng.randint(0, 199)}",
        }
        if rng.random() < 0.6:
            attributes["priority"] = rng.randint(1, 5)
        if rng.random() < 0.6:
            attributes["region"] = rng.choice(["eu", "us", "ap"])
        if rng.random() < 0.5:
            attributes["tenant"] = f"tenant{rng.randint(0, 49)}"
        data = None
        if rng.random() < 0.25:
            attributes["datacontenttype"] = "application/json"
            data = json.dumps({"amount": rng.randint(0, 1000), "currency": "EUR"}).encode()
        out.append(Event.create(attributes, data))
    return out


def throughput(match: Callable[[Event], object], stream: Sequence[Event]) -> float:
    """Events per second through `match`, best of REPEATS runs of about SECONDS each."""
    best = 0.0
    for _ in range(REPEATS):
        done, started = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - started) < SECONDS:
            for event in stream:
                match(event)
            done += len(stream)
        best = max(best, done / elapsed)
    return best


def _linear(specs: Sequence[TriggerSpec]) -> Callable[[Event], list[TriggerSpec]]:
    def match(event: Event) -> list[TriggerSpec]:
        return [t for t in specs if t.filter.matches(event)]

    return match


def _counting(specs: Sequence[TriggerSpec], counter: list[int]) -> list[tuple[str, Filter]]:
    """The triggers' filters with every predicate call counted (exact lookups cost none)."""

    def wrap(predicate: Predicate) -> Predicate:
        def counted(event: Event) -> bool:
            counter[0] += 1
            return predicate(event)

        return counted

    return [
        (t.name, replace(t.filter, predicate=wrap(t.filter.predicate or (lambda _e: True))))
        for t in specs
    ]


def evaluations(specs: Sequence[TriggerSpec], stream: Sequence[Event]) -> tuple[float, float]:
    """Filter evaluations per event: (an index on exact `type` only, FilterIndex).

    The first is what a type-only index runs: every trigger of the event's type, plus every
    trigger without an exact type (brokers.memory.TriggerIndex before FilterIndex).
    """
    per_type = Counter(t.filter.exact.get("type") for t in specs)
    untyped = per_type.pop(None, 0)
    typed = sum(per_type.get(e.type, 0) + untyped for e in stream)
    counter = [0]
    index = FilterIndex(_counting(specs, counter))
    for event in stream:
        index.matching(event)
    return typed / len(stream), counter[0] / len(stream)


def run() -> list[Row]:
    """One row per (matcher, number of triggers), plus evaluations per event at the largest."""
    stream = events()
    matchers: dict[str, Callable[[list[TriggerSpec]], Callable[[Event], object]]] = {
        "brokers.memory.TriggerIndex": lambda ts: TriggerIndex(ts).matching,
        "brokers.filterindex.FilterIndex": lambda ts: (
            FilterIndex((t, t.filter) for t in ts).matching
        ),
    }
    rows: list[Row] = []
    for label, build in matchers.items():
        baseline = 0.0
        for size in SIZES:
            value = throughput(build(triggers(size)), stream)
            baseline = baseline or value
            last = size == SIZES[-1]
            rows.append(
                Row(
                    "filters",
                    f"match, {size} trigger{'s' if size > 1 else ''}, {label}",
                    value,
                    "ev/s",
                    "same, 1 trigger",
                    baseline,
                    f">= {TARGET_RATIO:.2f}x" if last else "",
                    value >= TARGET_RATIO * baseline if last else None,
                )
            )
    largest = triggers(SIZES[-1])
    linear = throughput(_linear(largest), stream)
    indexed = rows[-1].value
    rows.append(
        Row(
            "filters",
            f"match, {SIZES[-1]} triggers, every filter run",
            linear,
            "ev/s",
            "FilterIndex, same triggers",
            indexed,
        )
    )
    by_type, by_filters = evaluations(largest, stream)
    for label, count in (("index on type only", by_type), ("FilterIndex", by_filters)):
        rows.append(
            Row(
                "filters",
                f"filter evaluations per event, {SIZES[-1]} triggers, {label}",
                count,
                "evals/ev",
                "triggers",
                float(SIZES[-1]),
            )
        )
    matched = sum(len(FilterIndex((t, t.filter) for t in largest).matching(e)) for e in stream)
    rows.append(
        Row("filters", f"matches per event, {SIZES[-1]} triggers", matched / len(stream), "/ev")
    )
    return rows


def main() -> int:
    from bench.report import render_markdown

    print(render_markdown(run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())

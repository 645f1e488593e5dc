"""Issue 12 item 8: filters cannot be evaded or stall the mesh.

A CEL data filter that exhausts CEL's iteration budget is counted and logged, not a silent
miss; LIKE patterns and CESQL expressions are bounded at load, with a message naming the limit."""

from __future__ import annotations

import json
import logging

import pytest

from brokers import datafilter
from brokers.cesql.errors import CesqlParseError
from brokers.cesql.evaluator import parse
from brokers.cesql.like import like_matcher
from brokers.cesql.parser import MAX_EXPRESSION_LENGTH, MAX_LIKE_PATTERN
from brokers.datafilter import compile_data_filter
from brokers.event import Event


def order(items: list[dict[str, int]]) -> Event:
    attributes = {
        "specversion": "1.0",
        "id": "o-1",
        "source": "/shop",
        "type": "order",
        "datacontenttype": "application/json",
    }
    return Event.create(attributes, json.dumps({"items": items}).encode())


def test_padding_past_the_cel_budget_is_counted_and_logged(
    caplog: pytest.LogCaptureFixture,
) -> None:
    expensive = compile_data_filter("data.items.exists(i, i.price > 1000)", "trigger t")
    assert expensive(order([{"price": 5000}]))
    before = datafilter.stats.budget_exceeded
    datafilter.stats._warned = -60.0
    padded = order([{"price": 1}] * 20_000 + [{"price": 5000}])
    with caplog.at_level(logging.WARNING, logger="brokers.datafilter"):
        assert not expensive(padded)
    assert datafilter.stats.budget_exceeded == before + 1
    assert any("iteration budget" in r.getMessage() for r in caplog.records)


def test_a_long_like_pattern_is_refused_at_load() -> None:
    parse("subject LIKE '" + "_" * MAX_LIKE_PATTERN + "'")
    with pytest.raises(CesqlParseError, match=f"at most {MAX_LIKE_PATTERN}"):
        parse("subject LIKE '" + "_" * 5000 + "'")


def test_wildcard_runs_are_a_length_check() -> None:
    matches = like_matcher("a%" + "_" * 200 + "%z")
    assert matches("a" + "x" * 200 + "z")
    assert not matches("a" + "x" * 199 + "z")
    assert matches("a" + "é" * 8000 + "z")


def test_a_huge_or_chain_is_refused_at_load() -> None:
    accepted = " OR ".join(f"type = 'x{n}'" for n in range(900))
    assert len(accepted) <= MAX_EXPRESSION_LENGTH
    parse(accepted)
    huge = " OR ".join(f"type = 'x{n}'" for n in range(30_000))
    with pytest.raises(CesqlParseError, match=f"at most {MAX_EXPRESSION_LENGTH}"):
        parse(huge)

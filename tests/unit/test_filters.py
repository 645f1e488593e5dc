"""Trigger filters: every dialect, missing attributes, nesting, contradictions, error paths, and
the index that must agree with running every filter."""

from __future__ import annotations

import importlib.util
import itertools
import json
import random
from pathlib import Path
from typing import Any

import pytest

from brokers.errors import ConfigError
from brokers.event import Event
from brokers.filterindex import MAX_SIGNATURES, FilterIndex
from brokers.filters import (
    MATCH_ALL,
    Filter,
    FilterError,
    compile_attributes,
    compile_filters,
    compile_trigger_filter,
)
from brokers.triggers import load_config

HAS_CEL = importlib.util.find_spec("cel_expr_python") is not None
needs_cel = pytest.mark.skipif(not HAS_CEL, reason="cel-expr-python is not installed")


def _event(data: bytes | None = None, **attributes: object) -> Event:
    base: dict[str, object] = {
        "specversion": "1.0",
        "id": "1",
        "source": "/orders/eu",
        "type": "com.example.order.created",
    }
    base.update(attributes)
    return Event.create({k: v for k, v in base.items() if v is not None}, data)


def _filters(*entries: Any) -> Filter:
    return compile_filters(list(entries))


def _error(entries: Any) -> str:
    with pytest.raises(FilterError) as caught:
        compile_filters(entries)
    return str(caught.value)


# -- legacy filter.attributes


def test_legacy_is_exact_case_sensitive_and_anded() -> None:
    f = compile_attributes({"type": "com.example.order.created", "source": "/orders/eu"})
    assert f.exact == {"type": "com.example.order.created", "source": "/orders/eu"}
    assert f.predicate is None
    assert f.matches(_event())
    assert not f.matches(_event(source="/orders/us"))
    assert not f.matches(_event(type="com.example.ORDER.created"))


def test_legacy_empty_value_means_present_and_non_empty() -> None:
    f = compile_attributes({"region": ""})
    assert f.exact == {}
    assert f.matches(_event(region="eu"))
    assert not f.matches(_event())
    assert not f.matches(_event(region=""))


def test_legacy_missing_attribute_never_matches() -> None:
    assert not compile_attributes({"region": "eu"}).matches(_event())


def test_legacy_compares_canonical_strings_of_typed_extensions() -> None:
    assert compile_attributes({"priority": "5"}).matches(_event(priority=5))
    assert compile_attributes({"urgent": "true"}).matches(_event(urgent=True))
    assert not compile_attributes({"urgent": "True"}).matches(_event(urgent=True))


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        ({"Type": "x"}, "'Type' is not a valid attribute name"),
        ({"1type": "x"}, "'1type' is not a valid attribute name"),
        ({"priority": 5}, "filter.attributes.priority: the value must be a string"),
        (["type"], "filter.attributes must be a mapping"),
    ],
)
def test_legacy_rejects_invalid(attributes: Any, message: str) -> None:
    with pytest.raises(FilterError, match=message):
        compile_attributes(attributes)


def test_trigger_spec_prefers_filters_over_filter() -> None:
    spec = {
        "filter": {"attributes": {"type": "a"}},
        "filters": [{"exact": {"type": "b"}}],
    }
    f = compile_trigger_filter(spec)
    assert f.exact == {"type": "b"}
    assert compile_trigger_filter({}) is MATCH_ALL
    with pytest.raises(FilterError, match="only 'attributes'"):
        compile_trigger_filter({"filter": {"attributes": {}, "exact": {}}})


# -- exact, prefix, suffix


def test_exact_matches_one_attribute_and_is_indexable() -> None:
    f = _filters({"exact": {"type": "com.example.order.created"}})
    assert f.exact == {"type": "com.example.order.created"}
    assert f.predicate is None
    assert f.matches(_event())
    assert not f.matches(_event(type="com.example.order.created.v2"))


def test_exact_parts_and_an_all_of_exacts_all_go_to_exact() -> None:
    f = _filters(
        {"exact": {"type": "com.example.order.created"}},
        {"all": [{"exact": {"source": "/orders/eu"}}, {"exact": {"region": "eu"}}]},
    )
    assert f.exact == {"type": "com.example.order.created", "source": "/orders/eu", "region": "eu"}
    assert f.matches(_event(region="eu"))
    assert not f.matches(_event())


@pytest.mark.parametrize("dialect", ["exact", "prefix", "suffix"])
def test_missing_attribute_never_matches(dialect: str) -> None:
    f = _filters({dialect: {"region": "e"}})
    assert not f.matches(_event())
    assert not f.matches(_event(subject="e"))


def test_prefix_and_suffix() -> None:
    prefix = _filters({"prefix": {"source": "/orders/"}})
    suffix = _filters({"suffix": {"type": ".created"}})
    assert prefix.prefix == {"source": "/orders/"}
    assert prefix.exact == {}
    assert prefix.matches(_event())
    assert not prefix.matches(_event(source="/billing/orders/"))
    assert suffix.matches(_event())
    assert not suffix.matches(_event(type="com.example.order.created.v2"))


def test_prefix_and_suffix_on_typed_extensions_use_the_canonical_string() -> None:
    assert _filters({"prefix": {"priority": "1"}}).matches(_event(priority=12))
    assert _filters({"suffix": {"urgent": "ue"}}).matches(_event(urgent=True))


def test_contradictory_exacts_match_nothing() -> None:
    f = _filters({"exact": {"type": "a"}}, {"exact": {"type": "b"}})
    assert not f.matches(_event(type="a"))
    assert not f.matches(_event(type="b"))
    assert "contradictory" in f.description
    nested = _filters({"all": [{"exact": {"type": "a"}}, {"all": [{"exact": {"type": "b"}}]}]})
    assert not nested.matches(_event(type="a"))


def test_same_exact_twice_is_fine() -> None:
    f = _filters({"exact": {"type": "a"}}, {"all": [{"exact": {"type": "a"}}]})
    assert f.exact == {"type": "a"}
    assert f.matches(_event(type="a"))


# -- all, any, not


def test_any_matches_when_one_branch_does() -> None:
    f = _filters({"any": [{"exact": {"region": "eu"}}, {"prefix": {"source": "/billing"}}]})
    assert f.matches(_event(region="eu"))
    assert f.matches(_event(source="/billing/x"))
    assert not f.matches(_event())
    assert f.exact == {}


def test_any_keeps_exact_values_shared_by_every_branch() -> None:
    f = _filters(
        {
            "any": [
                {"all": [{"exact": {"type": "t"}}, {"exact": {"source": "a"}}]},
                {"all": [{"exact": {"type": "t"}}, {"exact": {"source": "b"}}]},
            ]
        }
    )
    assert f.exact == {"type": "t"}
    assert f.matches(_event(type="t", source="b"))
    assert not f.matches(_event(type="t", source="c"))
    assert not f.matches(_event(type="u", source="a"))


def test_any_with_a_contradictory_branch_uses_the_others() -> None:
    never = {"all": [{"exact": {"type": "a"}}, {"exact": {"type": "b"}}]}
    f = _filters({"any": [never, {"exact": {"type": "c"}}]})
    assert f.matches(_event(type="c"))
    assert not f.matches(_event(type="a"))
    assert not _filters({"any": [never, never]}).matches(_event(type="a"))


def test_not_negates_and_a_missing_attribute_then_matches() -> None:
    f = _filters({"not": {"exact": {"region": "eu"}}})
    assert not f.matches(_event(region="eu"))
    assert f.matches(_event(region="us"))
    assert f.matches(_event())  # Knative: not(no match) is a match
    assert f.exact == {}


def test_deep_nesting() -> None:
    f = _filters(
        {"exact": {"type": "com.example.order.created"}},
        {
            "any": [
                {
                    "all": [
                        {"prefix": {"source": "/orders/"}},
                        {"not": {"suffix": {"source": "/us"}}},
                    ]
                },
                {"cesql": "priority > 3"},
            ]
        },
    )
    assert f.exact == {"type": "com.example.order.created"}
    assert f.matches(_event(source="/orders/eu"))
    assert not f.matches(_event(source="/orders/us"))
    assert f.matches(_event(source="/orders/us", priority=4))
    assert not f.matches(_event(source="/x", priority=3))
    assert not f.matches(_event(type="other", source="/orders/eu"))


# -- cesql


def test_cesql_matches_only_on_true() -> None:
    f = _filters({"cesql": "subject LIKE 'order-%' AND priority >= 2"})
    assert f.matches(_event(subject="order-1", priority=2))
    assert not f.matches(_event(subject="order-1", priority=1))


def test_cesql_evaluation_error_is_no_match() -> None:
    missing = _filters({"cesql": "priority > 3"})
    assert not missing.matches(_event())
    not_boolean = _filters({"cesql": "priority + 1"})
    assert not not_boolean.matches(_event(priority=1))
    bad_cast = _filters({"cesql": "INT(subject) > 1"})
    assert not bad_cast.matches(_event(subject="abc"))


def test_cesql_required_values_become_index_hints() -> None:
    f = _filters({"cesql": "type = 'com.example.order.created' AND source LIKE '/orders/%'"})
    assert f.exact == {"type": "com.example.order.created"}
    assert f.prefix == {"source": "/orders/"}
    assert f.matches(_event())
    assert not f.matches(_event(source="/billing"))
    like_as_equal = _filters({"cesql": "'x' = subject AND type LIKE 'com.example.order.created'"})
    assert like_as_equal.exact == {"subject": "x", "type": "com.example.order.created"}


@pytest.mark.parametrize(
    "expression",
    [
        "type = 'a' OR source = 'b'",  # not required
        "'05' = priority",  # CESQL casts '05' to the attribute's type: 5 matches
        "NOT (type = 'a')",
        "type LIKE 'a_%'",  # a wildcard inside the prefix
        "type LIKE '%a'",
        "type <> 'a'",
        "type = 1",
    ],
)
def test_cesql_without_index_hints(expression: str) -> None:
    f = _filters({"cesql": expression})
    assert f.exact == {}
    assert f.prefix == {}


def test_cesql_hints_on_extensions_compare_canonical_strings() -> None:
    f = _filters({"cesql": "region = 'eu' AND priority = '5' AND urgent LIKE 'tr%'"})
    assert f.exact == {"region": "eu", "priority": "5"}
    assert f.prefix == {"urgent": "tr"}


_HINTED = [
    "type = 't1' AND source LIKE '/a/%'",
    "'t2' = type AND subject LIKE 's_'",
    "priority = '5' OR region = 'eu'",
    "priority = '05' AND region LIKE 'e%'",
    "'5' = priority",
    "urgent = 'TRUE'",
    "urgent = 'true' AND source LIKE '/b/2'",
    "region LIKE '' AND type = 't3'",
    "source LIKE '/a/%' AND EXISTS region AND priority > 1",
]


@pytest.mark.parametrize("expression", _HINTED)
def test_cesql_hints_never_change_the_result(expression: str) -> None:
    from brokers.cesql import parse

    raw = parse(expression)
    f = _filters({"cesql": expression})
    for event in _random_events(300):
        assert f.matches(event) == raw.matches(event.attributes), (expression, event.attributes)


def test_cesql_contradictory_hints_match_nothing() -> None:
    assert not _filters({"cesql": "type = 'a' AND type = 'b'"}).matches(_event(type="a"))
    assert not _filters({"exact": {"type": "a"}}, {"cesql": "type = 'b'"}).matches(_event(type="a"))


def test_cesql_parse_error_names_path_and_position() -> None:
    message = _error([{"exact": {"type": "a"}}, {"any": [{"cesql": "type = "}]}])
    assert message.startswith("filters[1].any[0].cesql: ")
    assert "position 7" in message


@pytest.mark.parametrize("body", ["", "  ", 3, None])
def test_cesql_must_be_a_non_empty_string(body: Any) -> None:
    assert "non-empty CESQL" in _error([{"cesql": body}])


# -- data (CEL over JSON data)


@needs_cel
def test_data_filter_on_json_data() -> None:
    f = _filters({"data": 'data.total > 100 && data.customer.tier == "gold"'})
    gold = json.dumps({"total": 150.5, "customer": {"tier": "gold"}}).encode()
    assert f.matches(_event(gold, datacontenttype="application/json"))
    assert f.matches(_event(gold))  # no datacontenttype: JSON by the CloudEvents JSON format
    assert f.matches(_event(gold, datacontenttype="application/cloudevents+json"))
    silver = json.dumps({"total": 150, "customer": {"tier": "silver"}}).encode()
    assert not f.matches(_event(silver))


@needs_cel
@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (None, None),
        (b"not json", "application/json"),
        (b'{"total": 150}', "text/plain"),
        (b"\xff\xfe", None),
        (b'{"other": 1}', None),  # a missing key: a CEL evaluation error
        (b'{"total": "150"}', None),  # a type mismatch
        (b"[1, 2]", None),
        (b'{"total": 123456789012345678901234567890}', None),  # outside CEL's int64
    ],
)
def test_data_filter_unusable_data_is_a_quiet_non_match(
    data: bytes | None, content_type: str | None
) -> None:
    f = _filters({"data": "data.total > 100"})
    assert not f.matches(_event(data, datacontenttype=content_type))


@needs_cel
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("data.total >", "filters[0].data: line 1 column 13: Syntax error"),
        ("total > 1", "undeclared reference to 'total'"),
        ("data.total + 1", "must be a boolean expression (this one is int)"),
        ('data.name + "x"', "must be a boolean expression (this one is string)"),
        ("1 + 1", "must be a boolean expression (this one is int)"),
        ("", "must be a non-empty CEL expression"),
        (["data.x"], "must be a non-empty CEL expression"),
    ],
)
def test_data_filter_compile_errors(body: Any, message: str) -> None:
    text = _error([{"data": body}])
    assert message in text
    assert "\n" not in text


@needs_cel
def test_data_filter_dyn_result_must_be_true() -> None:
    f = _filters({"data": "data.flag"})
    assert f.matches(_event(b'{"flag": true}'))
    assert not f.matches(_event(b'{"flag": "true"}'))
    assert not f.matches(_event(b'{"flag": 1}'))


@needs_cel
def test_data_is_parsed_once_per_event(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = 0
    loads = json.loads

    def counting(text: Any) -> Any:
        nonlocal calls
        calls += 1
        return loads(text)

    monkeypatch.setattr("json.loads", counting)  # what brokers.datafilter calls
    filters = [_filters({"data": f"data.n > {i}"}) for i in range(3)]
    first, second = _event(b'{"n": 2}'), _event(b'{"n": 0}')
    assert [f.matches(first) for f in filters] == [True, True, False]
    assert [f.matches(second) for f in filters] == [False, False, False]
    assert [f.matches(first) for f in filters] == [True, True, False]
    assert calls == 3


# -- structural errors, with their paths


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ("type=a", "filters must be a list"),
        (
            [{"exact": {"type": "a"}, "prefix": {"source": "b"}}],
            "filters[0]: an entry must use exactly one dialect (found: exact, prefix)",
        ),
        ([{}], "filters[0]: an entry must use exactly one dialect (found: none)"),
        (["exact"], "filters[0]: an entry must be a mapping"),
        ([{"regex": {"type": "a"}}], "filters[0].regex: unknown dialect"),
        (
            [{"exact": {"type": "a", "source": "b"}}],
            "filters[0].exact: needs exactly one attribute",
        ),
        ([{"exact": {}}], "filters[0].exact: needs exactly one attribute"),
        ([{"exact": {"Type": "a"}}], "filters[0].exact: 'Type' is not a valid attribute name"),
        ([{"exact": {"ce-type": "a"}}], "'ce-type' is not a valid attribute name"),
        ([{"exact": {"priority": 5}}], "filters[0].exact.priority: the value must be a string"),
        ([{"exact": {"type": ""}}], "filters[0].exact.type: the value must not be empty"),
        ([{"prefix": {"source": ""}}], "filters[0].prefix.source: the value must not be empty"),
        ([{"suffix": {"source": ""}}], "filters[0].suffix.source: the value must not be empty"),
        ([{"all": []}], "filters[0].all: must be a non-empty list"),
        ([{"any": {"exact": {"type": "a"}}}], "filters[0].any: must be a non-empty list"),
        ([{"not": [{"exact": {"type": "a"}}]}], "filters[0].not: an entry must be a mapping"),
        (
            [
                {"exact": {"type": "a"}},
                {"all": [{"exact": {"type": "a"}}, {"not": {"prefix": {"source": ""}}}]},
            ],
            "filters[1].all[1].not.prefix.source: the value must not be empty",
        ),
        (
            [
                {
                    "any": [
                        {"exact": {"type": "a"}},
                        {"any": [{"cesql": "a", "exact": {"type": "b"}}]},
                    ]
                }
            ],
            "filters[0].any[1].any[0]: an entry must use exactly one dialect (found: cesql, exact)",
        ),
    ],
)
def test_invalid_filters_name_the_path(entries: Any, message: str) -> None:
    assert message in _error(entries)


def test_config_loading_names_the_file_and_the_trigger(tmp_path: Path) -> None:
    (tmp_path / "triggers.yaml").write_text(
        """
apiVersion: eventing.knative.dev/v1
kind: Trigger
metadata: {name: audit}
spec:
  broker: default
  filters:
    - exact: {type: com.example.order.created}
    - any:
        - cesql: "source LIKE"
  subscriber: {uri: "http://127.0.0.1:9/audit"}
""",
        "utf-8",
    )
    with pytest.raises(ConfigError) as caught:
        load_config(tmp_path)
    message = str(caught.value)
    assert "triggers.yaml" in message
    assert "Trigger audit" in message
    assert "filters[1].any[0].cesql:" in message


# -- the index agrees with evaluating every filter


_SPECS: list[dict[str, Any]] = [
    {"filter": {"attributes": {"type": "t1"}}},
    {"filter": {"attributes": {"type": "t1", "source": "/a/1"}}},
    {"filter": {"attributes": {"type": "t2", "region": ""}}},
    {"filter": {"attributes": {"priority": "5"}}},
    {"filters": [{"exact": {"type": "t2"}}, {"prefix": {"source": "/a/"}}]},
    {"filters": [{"exact": {"type": "t3"}}, {"cesql": "priority > 3"}]},
    {"filters": [{"exact": {"source": "/b/2"}}]},
    {"filters": [{"exact": {"subject": "s1"}}, {"exact": {"type": "t1"}}]},
    {"filters": [{"prefix": {"source": "/b/"}}]},
    {"filters": [{"prefix": {"source": "/b/2"}}]},
    {"filters": [{"prefix": {"type": "t"}}, {"suffix": {"source": "/1"}}]},
    {"filters": [{"suffix": {"type": "3"}}]},
    {"filters": [{"not": {"exact": {"type": "t1"}}}]},
    {"filters": [{"any": [{"exact": {"type": "t1"}}, {"exact": {"type": "t3"}}]}]},
    {"filters": [{"cesql": "type = 't2' AND subject LIKE 's%'"}]},
    {"filters": [{"cesql": "source LIKE '/a/%' AND EXISTS region"}]},
    {"filters": [{"cesql": "region = 'eu' AND priority = '5'"}]},
    {"filters": [{"cesql": "'5' = priority"}]},
    {"filters": [{"cesql": "type = 't1' AND type = 't2'"}]},
    {"filters": [{"exact": {"region": "eu"}}, {"exact": {"type": "t3"}}]},
    {"filters": [{"exact": {"urgent": "true"}}]},
    {},
]
if HAS_CEL:
    _SPECS += [
        {"filters": [{"exact": {"type": "t2"}}, {"data": "data.n > 1"}]},
        {"filters": [{"data": "has(data.n)"}]},
    ]


def _random_events(count: int) -> list[Event]:
    rng = random.Random(7)
    events = []
    for i in range(count):
        attributes: dict[str, object] = {
            "type": rng.choice(["t1", "t2", "t3", "t4"]),
            "source": rng.choice(["/a/1", "/a/2", "/b/2", "/b/23", "/c"]),
            "subject": rng.choice(["s1", "s2", "x", "sx", None]),
        }
        for name, values in (
            ("region", ["eu", "us", "", 5]),
            ("priority", [1, 4, 5, "5", "05"]),
            ("urgent", [True, False, "TRUE"]),
        ):
            if rng.random() < 0.5:
                attributes[name] = rng.choice(values)
        data = rng.choice([None, b'{"n": 2}', b'{"n": 0}', b"nope"])
        events.append(_event(data, id=str(i), **attributes))
    return events


@pytest.mark.parametrize("limit", [MAX_SIGNATURES, 1])
def test_index_agrees_with_running_every_filter(
    monkeypatch: pytest.MonkeyPatch, limit: int
) -> None:
    monkeypatch.setattr("brokers.filterindex.MAX_SIGNATURES", limit)
    filters = [compile_trigger_filter(spec) for spec in _SPECS]
    index = FilterIndex(list(enumerate(filters)))
    events = _random_events(400)
    matched = 0
    for event in events:
        expected = sorted(i for i, f in enumerate(filters) if f.matches(event))
        assert sorted(index.matching(event)) == expected, event.attributes
        matched += len(expected)
    assert matched > len(events)  # the data set exercises matches, not only misses


def test_index_scans_only_what_it_cannot_look_up() -> None:
    filters = [compile_trigger_filter(spec) for spec in _SPECS]
    index = FilterIndex(list(enumerate(filters)))
    # suffix on type, not, any of two types, '5' = priority, the empty spec, has(data.n); a
    # filter that can never match is not filed at all
    assert index.scanned == 5 + HAS_CEL


def test_index_without_filters() -> None:
    index: FilterIndex[str] = FilterIndex([])
    assert index.matching(_event()) == []
    everything = FilterIndex([("all", MATCH_ALL)])
    assert everything.matching(_event()) == ["all"]


def test_many_signatures_stay_bounded() -> None:
    names = [f"x{i}" for i in range(MAX_SIGNATURES + 4)]
    entries = [
        (pair, compile_attributes({"type": "t", pair[0]: "1", pair[1]: "1"}))
        for pair in itertools.combinations(names, 2)
    ]
    index = FilterIndex(entries)
    event = _event(type="t", x0="1", x1="1", x5="1")
    assert sorted(index.matching(event)) == [("x0", "x1"), ("x0", "x5"), ("x1", "x5")]


def test_index_agrees_on_the_benchmark_workload() -> None:
    from bench.bench_filters import events, triggers

    specs, stream = triggers(1000), events(300)
    index = FilterIndex((t.name, t.filter) for t in specs)
    for event in stream:
        expected = sorted(t.name for t in specs if t.filter.matches(event))
        assert sorted(index.matching(event)) == expected

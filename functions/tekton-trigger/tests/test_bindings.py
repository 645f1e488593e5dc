"""The binding-path language and the bindings file, without events flowing: what parses, what
is refused at start (with the key named), and how values are written."""

import datetime as dt
import re

import pytest

from function import bindings, errors, paths, pipelinerun

EventView, PathExpr, Template = paths.EventView, paths.PathExpr, paths.Template
parse_bindings = bindings.parse_bindings
BadEvent, BindingsError = errors.BadEvent, errors.BindingsError
label_value, run_name = pipelinerun.label_value, pipelinerun.run_name


def _view(data, **attributes):
    base = {"id": "e-1", "source": "/s", "type": "t", "specversion": "1.0"}
    return EventView({**base, **attributes}, data)


@pytest.mark.parametrize(
    ("template", "data", "expected"),
    [
        ("$(body.a)", {"a": "x"}, "x"),
        ("$(body.a.b.c)", {"a": {"b": {"c": "deep"}}}, "deep"),
        ("$(body.items.1)", {"items": ["zero", "one"]}, "one"),
        ("$(body.n)", {"n": 42}, "42"),
        ("$(body.f)", {"f": 1.5}, "1.5"),
        ("$(body.t)", {"t": True}, "true"),
        ("$(body.z)", {"z": None}, "null"),
        ("$(body.o)", {"o": {"k": [1, "é"]}}, '{"k":[1,"é"]}'),
        ("$(body)", {"a": 1}, '{"a":1}'),
        ("pr-$(body.n)-$(body.s)", {"n": 7, "s": "x"}, "pr-7-x"),
        ("$(body.a\\.b)", {"a.b": "dotted"}, "dotted"),
        ("$$(params.x) and $(body.a)", {"a": "y"}, "$(params.x) and y"),
        ("no expressions", None, "no expressions"),
        ("$(context.id)/$(context.type)", None, "e-1/t"),
    ],
)
def test_templates_render(template, data, expected):
    assert Template.parse(template).render(_view(data)) == expected


def test_json_text_data_is_parsed():
    assert Template.parse("$(body.a)").render(_view('{"a": "b"}')) == "b"
    assert Template.parse("$(body.a)").render(_view(b'{"a": "b"}')) == "b"


def test_time_is_rfc3339_utc():
    when = dt.datetime(2026, 11, 22, 10, 0, 1, tzinfo=dt.UTC)
    assert (
        Template.parse("$(context.time)").render(_view(None, time=when)) == "2026-11-22T10:00:01Z"
    )


def test_extensions_are_the_other_attributes():
    view = _view(None, sender="octocat")
    assert Template.parse("$(extensions.sender)").render(view) == "octocat"
    with pytest.raises(BadEvent, match=r"no extension attribute 'other'"):
        Template.parse("$(extensions.other)").render(view)


@pytest.mark.parametrize(
    ("template", "data", "message"),
    [
        ("$(body.a.b)", {"a": {}}, r"\$\(body\.a\.b\): body\.a has no key 'b'"),
        ("$(body.a.b)", {"a": "s"}, r"body\.a is str, not an object or array"),
        ("$(body.a.b)", {"a": None}, r"body\.a is null"),
        ("$(body.items.2)", {"items": [1]}, r"body\.items has no element 2"),
        ("$(body.items.x)", {"items": [1]}, r"body\.items has no element x"),
        ("$(context.subject)", {}, r"no attribute 'subject'"),
        ("$(body.a)", None, r"the event has no data"),
    ],
)
def test_missing_paths_are_named(template, data, message):
    with pytest.raises(BadEvent, match=message):
        Template.parse(template).render(_view(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("$(header.x)", "a path starts with body, context, extensions"),
        ("$(context.nope)", "context paths are context.NAME"),
        ("$(context.id.x)", "context paths are context.NAME"),
        ("$(extensions.Bad)", r"extension paths are extensions.NAME"),
        ("$(extensions.id)", r"id is a context attribute: \$\(context.id\)"),
        ("$(body..a)", "empty key"),
        ("$(body.a", "unterminated"),
    ],
)
def test_bad_paths_are_refused_when_parsed(text, message):
    with pytest.raises(ValueError, match=message):
        Template.parse(text)


def test_a_path_keeps_its_keys():
    assert PathExpr.parse("body.a\\.b.0").keys == ("a.b", "0")


def _bindings(*items):
    return parse_bindings({"bindings": list(items)}, "b.yaml")


ONE = {"name": "b", "type": "t", "pipeline": "p"}


@pytest.mark.parametrize(
    ("binding", "message"),
    [
        ({**ONE, "pipline": "x"}, r"binding 'b': unknown key\(s\) pipline"),
        ({"name": "b", "type": "t"}, "exactly one of 'pipeline' and 'pipelineRef'"),
        ({**ONE, "pipelineRef": {"name": "p"}}, "exactly one of"),
        ({**ONE, "pipeline": "Not_A_Name"}, "not a valid object name"),
        ({**ONE, "namespace": "a.b"}, "DNS-1123 label"),
        ({**ONE, "params": [{"name": "a"}]}, r"params\[0\] must have exactly 'name' and 'value'"),
        ({**ONE, "params": [{"name": "a", "value": 1}]}, "quote numbers"),
        ({**ONE, "params": [{"name": "a", "value": "$(nope)"}]}, r"params\[a\]\.value"),
        ({**ONE, "params": [{"name": "a", "value": "x"}] * 2}, "unique"),
        ({**ONE, "timeouts": {"pipeline": "1 hour"}}, "Go duration"),
        ({**ONE, "timeouts": {"whole": "1h"}}, "pipeline, tasks and finally"),
        ({**ONE, "labels": {"cemesh.dev/event-id": "x"}}, "reserved"),
        ({**ONE, "labels": {"bad key!": "x"}}, "labels key"),
        ({**ONE, "workspaces": [{"emptyDir": {}}]}, "with name"),
        ({"type": "t", "pipeline": "p"}, r"bindings\[0\]: 'name' must be"),
    ],
)
def test_bad_bindings_are_refused_naming_binding_and_key(binding, message):
    with pytest.raises(BindingsError, match=message):
        _bindings(binding)


def test_the_file_shape_is_checked():
    with pytest.raises(BindingsError, match="one key, 'bindings'"):
        parse_bindings({"bindings": [ONE], "extra": 1}, "b.yaml")
    with pytest.raises(BindingsError, match="non-empty list"):
        parse_bindings({"bindings": []}, "b.yaml")
    with pytest.raises(BindingsError, match="more than one binding with type t"):
        _bindings(ONE, {**ONE, "name": "c"})


def test_first_matching_binding_wins_and_prefixes_match():
    bindings = _bindings(
        {"name": "exact", "type": "a.b.c", "pipeline": "p1"},
        {"name": "any-b", "type": "a.b.*", "pipeline": "p2"},
        {"name": "all", "type": "*", "pipeline": "p3"},
    )
    assert bindings.for_type("a.b.c").name == "exact"
    assert bindings.for_type("a.b.d").name == "any-b"
    assert bindings.for_type("z").name == "all"


def test_pipeline_ref_is_passed_and_names_the_prefix():
    (binding,) = _bindings(
        {"name": "remote", "type": "t", "pipelineRef": {"resolver": "git", "params": []}}
    ).bindings
    assert binding.pipeline_ref == {"resolver": "git", "params": []}
    assert binding.name_prefix == "remote"
    assert binding.pipeline_name == "remote"


@pytest.mark.parametrize(
    "prefix", ["build-and-test", "Build And Test", "x" * 80, "---", "été", "a.b_c"]
)
def test_run_names_are_short_dns_labels(prefix):
    name = run_name(prefix, "https://github.com/o/r", "delivery-1")
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name)
    assert len(name) <= 63
    assert name == run_name(prefix, "https://github.com/o/r", "delivery-1")
    assert name != run_name(prefix, "https://github.com/o/r", "delivery-2")


def test_source_and_id_do_not_run_together():
    assert run_name("p", "/a", "b/c") != run_name("p", "/a/b", "c")


@pytest.mark.parametrize(
    "value",
    ["5328c37f-bb7e-4bb7-84ea-9f5f85e4a7ce", "https://x/y?z", "x" * 100, "///", "", "ok"],
)
def test_label_values_are_valid(value):
    label = label_value(value)
    assert len(label) <= 63
    assert re.fullmatch(r"(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?", label)
    if re.fullmatch(r"[A-Za-z0-9-]{0,63}", value) and not value.startswith("-"):
        assert label == value

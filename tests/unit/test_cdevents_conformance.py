"""Conformance of `cdevents` with the official CDEvents 0.5.1 schemas and examples.

jsonschema is used here only, as the referee: our validator must agree with the official
schemas (registered by `$id`, so their `$ref`s to the links schemas resolve). The other
`test_cdevents_*` modules import `official_problems` from here; without the shared data they
still check with our validator, and only the cross-check with the schemas is skipped.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

import cdevents
from cdevents import build
from cdevents.events import REGISTRY, RepositoryChange
from cdevents.validate import AnyOf, Arr, Obj, Shape, Str, document_shape, problems

REPO = Path(__file__).resolve().parents[2]
SHARED = Path(os.environ.get("CEMESH_SHARED", REPO.parent / "shared"))
CONFORMANCE = SHARED / "conformance" / "cdevents-0.5.1"
EXAMPLES = sorted((CONFORMANCE / "conformance").glob("*.json"))


def conformance_available() -> bool:
    return (CONFORMANCE / "schemas").is_dir()


def require_conformance() -> None:
    if not conformance_available():
        pytest.skip(
            f"official CDEvents 0.5.1 schemas not found in {CONFORMANCE} (set CEMESH_SHARED)"
        )


@functools.cache
def _validators() -> dict[str, Draft202012Validator]:
    schemas = [json.loads(path.read_text()) for path in (CONFORMANCE / "schemas").rglob("*.json")]
    registry: Registry[Any] = Registry().with_resources(
        (schema["$id"], Resource.from_contents(schema)) for schema in schemas
    )
    by_type: dict[str, Draft202012Validator] = {}
    for schema in schemas:
        context = schema.get("properties", {}).get("context")
        if context is not None:
            Draft202012Validator.check_schema(schema)
            by_type[context["properties"]["type"]["enum"][0]] = Draft202012Validator(
                schema, registry=registry
            )
    return by_type


def official_schema(event_type: str) -> Draft202012Validator:
    require_conformance()
    return _validators()[event_type]


def official_document(event_type: str) -> dict[str, Any]:
    """The official JSON schema of `event_type` as a document (an object, never `true`)."""
    schema = official_schema(event_type).schema
    assert isinstance(schema, dict), f"the schema of {event_type} is not an object"
    return schema


def official_problems(doc: Any, event_type: str | None = None) -> list[str]:
    """What the official schema of `event_type` (default: the doc's own type) says is wrong."""
    kind = event_type or doc["context"]["type"]
    errors = official_schema(kind).iter_errors(doc)
    return [f"{error.json_path}: {error.message}" for error in errors]


def example(name: str) -> dict[str, Any]:
    require_conformance()
    data: dict[str, Any] = json.loads((CONFORMANCE / "conformance" / f"{name}.json").read_text())
    return data


# -- examples ---------------------------------------------------------------------------------


def test_there_are_45_types_and_45_examples() -> None:
    require_conformance()
    assert len(REGISTRY) == 45
    assert len(EXAMPLES) == 45
    assert len(_validators()) == 45
    assert {kind.type for kind in REGISTRY.values()} == set(_validators())


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda path: path.stem)
def test_every_official_example_parses_validates_and_round_trips(path: Path) -> None:
    doc = json.loads(path.read_text())
    assert problems(doc) == []
    event = cdevents.parse(doc)
    assert event.to_json() == doc
    assert cdevents.validate(event.to_json()).type == doc["context"]["type"]
    # and through the CloudEvent binding
    ce = cdevents.to_cloudevent(event)
    assert (ce.id, ce.source, ce.type) == (event.id, event.source, event.type)
    assert (ce.time, ce.subject, ce.datacontenttype) == (
        event.timestamp,
        event.subject_id,
        "application/json",
    )
    assert ce.json() == doc
    assert cdevents.from_cloudevent(ce) == event


# -- our table against the schemas ------------------------------------------------------------


@functools.cache
def _links_schemas() -> dict[str, dict[str, Any]]:
    paths = (CONFORMANCE / "schemas" / "links").glob("*.json")
    return {path.stem: json.loads(path.read_text()) for path in paths}


def _official_shape(schema: dict[str, Any]) -> dict[str, Any]:
    """A schema fragment reduced to what our shapes express."""
    if "$ref" in schema:
        return _official_shape(_links_schemas()[schema["$ref"].rsplit("/", 1)[-1]])
    if "anyOf" in schema and all(option.get("type") == "string" for option in schema["anyOf"]):
        # ticket fields: anyOf [known values, any string] is a string
        free = [option for option in schema["anyOf"] if "enum" not in option]
        return _official_shape(free[0])
    if "anyOf" in schema:
        return {"anyOf": [_official_shape(option) for option in schema["anyOf"]]}
    if schema.get("type") == "object":
        return {
            "object": {
                name: _official_shape(sub) for name, sub in schema.get("properties", {}).items()
            },
            "required": sorted(schema.get("required", [])),
            "open": schema.get("additionalProperties", True) is not False,
        }
    if schema.get("type") == "array":
        return {"array": _official_shape(schema["items"])}
    return {
        "string": schema.get("enum"),
        "minLength": schema.get("minLength", 0),
        "format": schema.get("format"),
    }


def _our_shape(shape: Shape) -> dict[str, Any]:
    if isinstance(shape, Obj):
        return {
            "object": {name: _our_shape(sub) for name, sub in shape.fields.items()},
            "required": sorted(shape.required),
            "open": shape.open,
        }
    if isinstance(shape, Str):
        enum = list(shape.enum) if shape.enum is not None else None
        return {"string": enum, "minLength": shape.min_length, "format": shape.format}
    if isinstance(shape, Arr):
        return {"array": _our_shape(shape.items)}
    if isinstance(shape, AnyOf):
        return {"anyOf": [_our_shape(option) for option in shape.options]}
    raise AssertionError(f"no field has the shape {shape!r}")


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_our_subject_and_context_shapes_are_the_official_ones(name: str) -> None:
    event_type = REGISTRY[name]
    schema = official_document(event_type.type)
    ours, theirs = document_shape(event_type).fields, schema["properties"]
    assert _our_shape(ours["subject"]) == _official_shape(theirs["subject"])
    # the context too (links included), but `type`: theirs has one value, ours the registry
    context, official = _our_shape(ours["context"]), _official_shape(theirs["context"])
    assert context["object"].pop("type") == {"string": None, "minLength": 1, "format": None}
    assert official["object"].pop("type")["string"] == [event_type.type]
    assert context == official


# -- builders ---------------------------------------------------------------------------------


def _required_only(schema: dict[str, Any], value: Any) -> Any:
    if isinstance(value, dict) and schema.get("type") == "object":
        keep = schema.get("required", [])
        return {
            k: _required_only(schema["properties"][k], v) for k, v in value.items() if k in keep
        }
    return value


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_builder_output_passes_the_official_schema(name: str) -> None:
    event_type = REGISTRY[name]
    sample = example(name.replace(".", "_"))
    builder = build.BUILDERS[name]
    content_schema = official_document(event_type.type)["properties"]["subject"]
    content_schema = content_schema["properties"]["content"]
    full = builder(
        source="/event/source/123",
        subject_id="mySubject123",
        content=sample["subject"]["content"],
        subject_source="/event/source/123",
        chain_id="4c8cb7dd-3448-41de-8768-eec704e2829b",
        links=[build.relation_link("5328c37f"), build.path_link("5328c37f"), build.end_link()],
        schema_uri="https://myorg.com/schema/custom",
        custom_data={"k": "v"},
        custom_data_content_type="application/json",
    )
    minimal = builder(
        source="/event/source/123",
        subject_id="mySubject123",
        content=_required_only(content_schema, sample["subject"]["content"]),
    )
    for event in (full, minimal):
        doc = event.to_json()
        assert official_problems(doc) == []
        assert doc["context"]["specversion"] == "0.5.1"
        assert doc["context"]["type"] == event_type.type
        assert cdevents.parse(doc) == event
    assert full.content == sample["subject"]["content"]
    assert full.id != minimal.id  # a fresh uuid4 each time


def test_create_by_name_fills_the_context() -> None:
    event = cdevents.create(
        "pipelinerun.started",
        source="https://ci.example.com",
        subject_id="run-1",
        content={"pipelineName": "build", "uri": "https://ci.example.com/runs/1"},
    )
    assert event.type == "dev.cdevents.pipelinerun.started.0.3.0"
    assert event.timestamp.endswith("Z")
    assert official_problems(event.to_json()) == []


def test_builders_never_keep_the_callers_dicts() -> None:
    content: RepositoryChange = {"repository": {"id": "octo-org/hello-world"}}
    event = build.change_merged(source="/s", subject_id="1", content=content)
    content["repository"]["id"] = "changed"
    assert event.content == {"repository": {"id": "octo-org/hello-world"}}
    event.to_json()["subject"]["content"]["repository"]["id"] = "changed too"
    assert event.content["repository"]["id"] == "octo-org/hello-world"


# -- broken events: our validator and the official schemas agree -----------------------------

Mutation = Callable[[dict[str, Any]], None]


def _set(path: str, value: Any) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value

    return mutate


def _drop(path: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node: Any = doc
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        del node[last]

    return mutate


# (case, example, mutation, the JSON path our first problem must name; None: still valid)
BROKEN: list[tuple[str, str, Mutation, str | None]] = [
    ("missing context.id", "change_merged", _drop("context.id"), "$.context.id"),
    (
        "missing context.timestamp",
        "build_started",
        _drop("context.timestamp"),
        "$.context.timestamp",
    ),
    ("missing context", "branch_created", _drop("context"), "$.context"),
    ("missing subject.content", "change_merged", _drop("subject.content"), "$.subject.content"),
    ("missing subject.id", "artifact_signed", _drop("subject.id"), "$.subject.id"),
    (
        "missing required content",
        "pipelinerun_started",
        _drop("subject.content.uri"),
        "$.subject.content.uri",
    ),
    (
        "missing artifactId",
        "service_deployed",
        _drop("subject.content.artifactId"),
        "$.subject.content.artifactId",
    ),
    (
        "missing ticket creator",
        "ticket_created",
        _drop("subject.content.creator"),
        "$.subject.content.creator",
    ),
    (
        "missing nested required",
        "artifact_packaged",
        _drop("subject.content.change.id"),
        "$.subject.content.change.id",
    ),
    (
        "missing link from",
        "change_merged",
        _drop("context.links.1.from"),
        "$.context.links[1].from",
    ),
    (
        "missing relation linkKind",
        "change_merged",
        _drop("context.links.0.linkKind"),
        "$.context.links[0].linkKind",
    ),
    (
        "bad outcome",
        "pipelinerun_finished",
        _set("subject.content.outcome", "ok"),
        "$.subject.content.outcome",
    ),
    (
        "bad severity",
        "testsuiterun_finished",
        _set("subject.content.severity", "urgent"),
        "$.subject.content.severity",
    ),
    (
        "bad test case type",
        "testcaserun_started",
        _set("subject.content.testCase.type", "smoke"),
        "$.subject.content.testCase.type",
    ),
    (
        "bad output type",
        "testoutput_published",
        _set("subject.content.outputType", "pdf"),
        "$.subject.content.outputType",
    ),
    (
        "bad linkType",
        "change_merged",
        _set("context.links.0.linkType", "START"),
        "$.context.links[0]",
    ),
    ("bad ticket subject type", "ticket_closed", _set("subject.type", "issue"), "$.subject.type"),
    (
        "unknown type",
        "change_merged",
        _set("context.type", "dev.cdevents.change.frozen.0.3.0"),
        "$.context.type",
    ),
    ("extra top-level", "change_merged", _set("extra", 1), "$.extra"),
    ("extra in context", "change_merged", _set("context.version", "0.5.1"), "$.context.version"),
    ("extra in subject", "change_merged", _set("subject.type", "change"), "$.subject.type"),
    (
        "extra in content",
        "pipelinerun_finished",
        _set("subject.content.url", "https://x"),
        "$.subject.content.url",
    ),
    (
        "extra in nested content",
        "change_merged",
        _set("subject.content.repository.name", "r"),
        "$.subject.content.repository.name",
    ),
    (
        "extra in test case",
        "testcaserun_finished",
        _set("subject.content.testCase.owner", "me"),
        "$.subject.content.testCase.owner",
    ),
    (
        "extra in a link",
        "change_merged",
        _set("context.links.0.weight", 1),
        "$.context.links[0].weight",
    ),
    ("empty context.id", "change_merged", _set("context.id", ""), "$.context.id"),
    ("empty subject.id", "branch_deleted", _set("subject.id", ""), "$.subject.id"),
    (
        "empty nested id",
        "service_upgraded",
        _set("subject.content.environment.id", ""),
        "$.subject.content.environment.id",
    ),
    ("id is a number", "change_merged", _set("context.id", 42), "$.context.id"),
    ("content is a string", "build_queued", _set("subject.content", "x"), "$.subject.content"),
    (
        "assignees hold numbers",
        "ticket_updated",
        _set("subject.content.assignees", [1]),
        "$.subject.content.assignees[0]",
    ),
    (
        "labels is a string",
        "ticket_created",
        _set("subject.content.labels", "bug"),
        "$.subject.content.labels",
    ),
    ("links is an object", "change_merged", _set("context.links", {}), "$.context.links"),
    ("link is a string", "change_merged", _set("context.links.0", "TRIGGER"), "$.context.links[0]"),
    ("customData is a number", "incident_detected", _set("customData", 5), "$.customData"),
    ("customData is a list", "incident_detected", _set("customData", [1]), "$.customData"),
    (
        "customDataContentType is a number",
        "incident_reported",
        _set("customDataContentType", 1),
        "$.customDataContentType",
    ),
    (
        "tags is a string",
        "change_merged",
        _set("context.links.0.tags", "x"),
        "$.context.links[0].tags",
    ),
    # still valid, by both
    ("customData as a string", "incident_detected", _set("customData", "aGVsbG8="), None),
    ("extra key inside a link target", "change_merged", _set("context.links.0.target.x", 1), None),
    (
        "relation target without contextId",
        "change_merged",
        _set("context.links.0.target", {}),
        None,
    ),
    ("any tags", "change_merged", _set("context.links.0.tags", {"n": [1, {"a": None}]}), None),
    (
        "open trigger object",
        "testsuiterun_started",
        _set("subject.content.trigger.by", "bot"),
        None,
    ),
    ("ticket subject type", "ticket_closed", _set("subject.type", "ticket"), None),
    ("unknown ticket priority", "ticket_closed", _set("subject.content.priority", "p0"), None),
    ("free taskrun outcome", "taskrun_finished", _set("subject.content.outcome", "flaky"), None),
]


@pytest.mark.parametrize(
    ("case", "name", "mutate", "path"), BROKEN, ids=[case for case, *_ in BROKEN]
)
def test_our_validator_agrees_with_the_official_schema(
    case: str, name: str, mutate: Mutation, path: str | None
) -> None:
    doc = copy.deepcopy(example(name))
    original_type = doc["context"]["type"]
    mutate(doc)
    ours = problems(doc)
    theirs = official_problems(doc, original_type)
    assert bool(ours) == bool(theirs), (ours, theirs)
    if path is None:
        assert ours == []
    else:
        assert ours[0].path == path, ours
        with pytest.raises(cdevents.ValidationError, match=re.escape(path)):
            cdevents.parse(doc)


def test_a_non_object_is_rejected_by_both() -> None:
    docs: list[object] = [[], "x", None, 1]
    for doc in docs:
        assert [p.path for p in problems(doc)] == ["$"]
        assert official_problems(doc, "dev.cdevents.change.merged.0.3.0") != []


# -- where we are deliberately stricter or more lenient --------------------------------------

STRICTER: list[tuple[str, Mutation, str]] = [
    ("change_merged", _set("context.timestamp", "2023-03-20 14:27:05"), "$.context.timestamp"),
    ("change_merged", _set("context.timestamp", "2023-02-30T14:27:05Z"), "$.context.timestamp"),
    ("pipelinerun_started", _set("subject.content.uri", "not a uri"), "$.subject.content.uri"),
    ("change_merged", _set("context.source", "has spaces"), "$.context.source"),
    ("change_merged", _set("context.specversion", "1.0.0"), "$.context.specversion"),
    ("change_merged", _set("context.specversion", "latest"), "$.context.specversion"),
]


@pytest.mark.parametrize(("name", "mutate", "path"), STRICTER)
def test_we_check_formats_and_the_spec_version(name: str, mutate: Mutation, path: str) -> None:
    doc = copy.deepcopy(example(name))
    mutate(doc)
    assert [p.path for p in problems(doc)] == [path]
    assert official_problems(doc) == []  # the schemas leave formats unasserted


def test_a_compatible_type_version_is_accepted_and_kept() -> None:
    doc = copy.deepcopy(example("change_merged"))
    doc["context"]["type"] = "dev.cdevents.change.merged.0.2.0"
    doc["context"]["specversion"] = "0.4.1"
    event = cdevents.parse(doc)
    assert event.type == "dev.cdevents.change.merged.0.2.0"
    assert event.context["specversion"] == "0.4.1"
    assert event.event_type is REGISTRY["change.merged"]
    assert official_problems(doc, "dev.cdevents.change.merged.0.3.0") != []


def test_another_major_version_is_refused() -> None:
    doc = copy.deepcopy(example("change_merged"))
    doc["context"]["type"] = "dev.cdevents.change.merged.1.0.0"
    assert [p.path for p in problems(doc)] == ["$.context.type"]

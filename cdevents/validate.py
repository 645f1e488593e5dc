"""Validation of CDEvents in our own code, equivalent to the official 0.5.1 JSON schemas.

Why not jsonschema at run time: the schemas are not ours to ship, a schema engine is a heavy
dependency for 45 small flat shapes, and its errors are hard to turn into one clear line. The
shapes are compiled once from the TypedDicts of `cdevents.events`; every problem names its JSON
path (`$.subject.content.environment.id`).

Where we differ from the schemas, on purpose (tests pin each point):
- formats are checked (`date-time` as RFC 3339, `uri` absolute, `uri-reference` RFC 3986
  characters), because the CloudEvent binding needs a real timestamp and URI (the test*
  schemas give `source` no format, and neither do we);
- `context.specversion` must be a version of the same major as 0.5.1;
- a type whose version differs from ours but has the same major (say
  `dev.cdevents.change.merged.0.2.0`) is accepted and checked against our 0.5.1 content.
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import json
import re
import types
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import (
    Annotated,
    Any,
    Final,
    Literal,
    NotRequired,
    Required,
    Union,
    cast,
    get_args,
    get_origin,
    get_type_hints,
    is_typeddict,
)

from cdevents.errors import Problem, ValidationError
from cdevents.events import REGISTRY, SPEC_VERSION, CDEvent, EventType, major, parse_type
from cdevents.shapes import Context, Format, MinLength, Open

# -- shapes ----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Str:
    min_length: int = 0
    enum: tuple[str, ...] | None = None
    format: str | None = None


@dataclass(frozen=True, slots=True)
class Arr:
    items: Shape


@dataclass(frozen=True, slots=True)
class Obj:
    fields: Mapping[str, Shape] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    open: bool = False


@dataclass(frozen=True, slots=True)
class AnyOf:
    options: tuple[Shape, ...]


@dataclass(frozen=True, slots=True)
class AnyValue:
    pass


Shape = Str | Arr | Obj | AnyOf | AnyValue


def shape_of(annotation: object) -> Shape:
    """Compile a type annotation of `cdevents.events` into the shape checked at run time."""
    return _compile(annotation)


@functools.cache
def _compile(annotation: Any) -> Shape:
    origin = get_origin(annotation)
    args = get_args(annotation)
    if annotation is str:
        return Str()
    if annotation is Any:
        return AnyValue()
    if origin is Annotated:
        return _with_markers(shape_of(args[0]), args[1:])
    if origin in (Required, NotRequired):
        return shape_of(args[0])
    if origin is Literal:
        return Str(enum=tuple(str(arg) for arg in args))
    if origin is list:
        return Arr(shape_of(args[0]))
    if origin is dict:
        return Obj(open=True)
    if origin in (Union, types.UnionType):
        return AnyOf(tuple(shape_of(arg) for arg in args))
    if is_typeddict(annotation):
        hints = get_type_hints(annotation, include_extras=True)
        return Obj(
            {name: shape_of(hint) for name, hint in hints.items()},
            frozenset(annotation.__required_keys__),
        )
    raise TypeError(f"no shape for annotation {annotation!r}")


def _with_markers(shape: Shape, markers: tuple[Any, ...]) -> Shape:
    for marker in markers:
        if isinstance(marker, MinLength) and isinstance(shape, Str):
            shape = replace(shape, min_length=marker.value)
        elif isinstance(marker, Format) and isinstance(shape, Str):
            shape = replace(shape, format=marker.name)
        elif isinstance(marker, Open) and isinstance(shape, Obj):
            shape = replace(shape, open=True)
        else:
            raise TypeError(f"marker {marker!r} does not apply to {shape!r}")
    return shape


# -- formats ---------------------------------------------------------------------------------

_DATE_TIME: Final = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt]([01]\d|2[0-3]):([0-5]\d):([0-5]\d|60)(\.\d+)?"
    r"([Zz]|[+-]([01]\d|2[0-3]):[0-5]\d)"
)
_URI_CHARS: Final = r"(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})*"
_URI_REFERENCE: Final = re.compile(_URI_CHARS)
_URI: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:" + _URI_CHARS)


def _format_problem(name: str, value: str) -> str | None:
    if name == "date-time":
        match = _DATE_TIME.fullmatch(value)
        try:
            if match is None:
                raise ValueError(value)
            dt.date(int(match[1]), int(match[2]), int(match[3]))
        except ValueError:
            return "must be an RFC 3339 date-time such as 2024-05-01T12:00:00Z"
        return None
    if name == "uri" and not _URI.fullmatch(value):
        return "must be an absolute URI (RFC 3986)"
    if name == "uri-reference" and not _URI_REFERENCE.fullmatch(value):
        return "must be a URI reference (RFC 3986)"
    return None


# -- checking --------------------------------------------------------------------------------

_IDENTIFIER: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _key(path: str, key: str) -> str:
    return f"{path}.{key}" if _IDENTIFIER.fullmatch(key) else f"{path}[{json.dumps(key)}]"


def check(shape: Shape, value: object, path: str, out: list[Problem]) -> None:
    """Append to `out` every way `value` (at JSON path `path`) does not fit `shape`."""
    if isinstance(shape, Str):
        _check_str(shape, value, path, out)
    elif isinstance(shape, Arr):
        if not isinstance(value, list):
            out.append(Problem(path, "must be an array"))
            return
        for index, item in enumerate(value):
            check(shape.items, item, f"{path}[{index}]", out)
    elif isinstance(shape, Obj):
        _check_obj(shape, value, path, out)
    elif isinstance(shape, AnyOf):
        _check_any_of(shape, value, path, out)


def _check_str(shape: Str, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, str):
        out.append(Problem(path, "must be a string"))
    elif shape.enum is not None and value not in shape.enum:
        out.append(Problem(path, f"must be one of {', '.join(shape.enum)}; got {value!r}"))
    elif len(value) < shape.min_length:
        out.append(Problem(path, "must not be empty"))
    elif shape.format is not None and (reason := _format_problem(shape.format, value)):
        out.append(Problem(path, f"{reason}; got {value!r}"))


def _check_obj(shape: Obj, value: object, path: str, out: list[Problem]) -> None:
    if not isinstance(value, dict):
        out.append(Problem(path, "must be an object"))
        return
    for name, field_shape in shape.fields.items():
        if name in value:
            check(field_shape, value[name], _key(path, name), out)
        elif name in shape.required:
            out.append(Problem(_key(path, name), "is required"))
    if not shape.open:
        for name in value:
            if name not in shape.fields:
                out.append(Problem(_key(path, name), "is not an allowed property here"))


def _check_any_of(shape: AnyOf, value: object, path: str, out: list[Problem]) -> None:
    attempts: list[list[Problem]] = []
    for option in shape.options:
        found: list[Problem] = []
        check(option, value, path, found)
        if not found:
            return
        attempts.append(found)
    tags = _tags(shape)
    if tags is not None and isinstance(value, dict):
        key, values = tags
        if value.get(key) in values:  # a link says which shape it has: report that one's faults
            out.extend(attempts[values.index(value[key])])
            return
        out.append(Problem(path, f"must be an object whose {key} is one of {', '.join(values)}"))
        return
    out.append(Problem(path, f"must be {_kinds(shape)}"))


def _tags(shape: AnyOf) -> tuple[str, list[str]] | None:
    """The field (such as `linkType`) whose single allowed value tells the options apart."""
    found: list[tuple[str, str]] = []
    for option in shape.options:
        if not isinstance(option, Obj):
            return None
        tag = next(
            (
                (name, field.enum[0])
                for name, field in option.fields.items()
                if isinstance(field, Str) and field.enum is not None and len(field.enum) == 1
            ),
            None,
        )
        if tag is None:
            return None
        found.append(tag)
    keys = {key for key, _ in found}
    return (found[0][0], [value for _, value in found]) if len(keys) == 1 else None


def _kinds(shape: AnyOf) -> str:
    names = {Str: "a string", Arr: "an array", Obj: "an object"}
    kinds = [names.get(type(option), "a value") for option in shape.options]
    return " or ".join(dict.fromkeys(kinds))


# -- documents -------------------------------------------------------------------------------


def _object(annotation: object) -> Obj:
    shape = shape_of(annotation)
    if not isinstance(shape, Obj):
        raise TypeError(f"{annotation!r} is not an object type")
    return shape


_CONTEXT: Final = _object(Context)
_CUSTOM: Final[Mapping[str, Shape]] = {
    "customData": AnyOf((Obj(open=True), Str())),
    "customDataContentType": Str(),
}
_SPEC_MAJOR: Final = major(SPEC_VERSION)


@functools.cache
def document_shape(event_type: EventType[Any] | None) -> Obj:
    """The whole-event shape of one type (None: any content, when the type is unknown)."""
    context, source = _CONTEXT, Str(min_length=1, format="uri-reference")
    if event_type is not None and event_type.loose_source:
        context = replace(_CONTEXT, fields={**_CONTEXT.fields, "source": Str(min_length=1)})
        source = Str()
    subject: dict[str, Shape] = {
        "id": Str(min_length=1),
        "source": source,
        "content": Obj(open=True) if event_type is None else shape_of(event_type.content),
    }
    if event_type is None or event_type.subject_type is not None:
        enum = None if event_type is None else (event_type.subject_type or "",)
        subject["type"] = Str(min_length=1, enum=enum)
    subject_shape = Obj(subject, frozenset({"id", "content"}))
    return Obj(
        {"context": context, "subject": subject_shape, **_CUSTOM},
        frozenset({"context", "subject"}),
    )


def _event_type(doc: dict[str, Any], out: list[Problem]) -> EventType[Any] | None:
    context = doc.get("context")
    ce_type = context.get("type") if isinstance(context, dict) else None
    if not isinstance(ce_type, str) or not ce_type:
        return None  # reported by the context shape
    parsed = parse_type(ce_type)
    known = REGISTRY.get(parsed.name) if parsed else None
    if parsed is None or known is None:
        out.append(Problem("$.context.type", f"is not a CDEvents {SPEC_VERSION} type: {ce_type!r}"))
        return None
    if parsed.major != major(known.version):
        out.append(
            Problem(
                "$.context.type", f"version {parsed.version} is not compatible with {known.type}"
            )
        )
        return None
    return known


def _problems(doc: object) -> tuple[list[Problem], EventType[Any] | None]:
    if not isinstance(doc, dict):
        return [Problem("$", "must be an object")], None
    out: list[Problem] = []
    event_type = _event_type(doc, out)
    check(document_shape(event_type), doc, "$", out)
    context = doc.get("context")
    spec = context.get("specversion") if isinstance(context, dict) else None
    if isinstance(spec, str) and spec and major(spec) != _SPEC_MAJOR:
        out.append(
            Problem("$.context.specversion", f"{spec!r} is not compatible with {SPEC_VERSION}")
        )
    return out, event_type


def problems(doc: object) -> list[Problem]:
    """Every reason `doc` (a parsed JSON value) is not a valid CDEvent; empty when valid."""
    return _problems(doc)[0]


def validate(doc: object) -> EventType[Any]:
    """Check a CDEvent JSON value; returns its type, raises `ValidationError` naming the path."""
    found, event_type = _problems(doc)
    if found or event_type is None:
        raise ValidationError(found or [Problem("$.context.type", "is missing")])
    return event_type


def parse(doc: object) -> CDEvent:
    """Validate a CDEvent JSON value and return it as a `CDEvent` (the input is not kept)."""
    validate(doc)
    value = copy.deepcopy(cast(dict[str, Any], doc))
    return CDEvent(
        context=value["context"],
        subject=value["subject"],
        custom_data=value.get("customData"),
        custom_data_content_type=value.get("customDataContentType"),
    )

"""The binding-path language: templates with `$(path)` expressions read from an event.

Templates (Tekton TriggerBinding style): text with `$(path)` expressions, `$$(` for a literal
`$(`. A path is a root and dot-separated keys; `\\.` is a literal dot inside a key; a key that is
a number indexes an array:

- `$(body)`: the event data, parsed as JSON; `$(body.a.b)`, `$(body.items.0)`: a member.
- `$(context.NAME)`: a CloudEvents context attribute, NAME one of specversion, id, source,
  type, subject, time, datacontenttype, dataschema.
- `$(extensions.NAME)`: an extension attribute (any other attribute, NAME `[a-z0-9]+`).

A string is inserted as is; anything else as compact JSON (`42`, `true`, `null`, `{"a":1}`), so
a param is always a string unless the binding writes an array or object value. A path the event
lacks is an error naming the path and where it stopped (`BadEvent`, reason `MissingPath`).
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import BadEvent

ROOTS: Final = ("body", "context", "extensions")
CONTEXT_ATTRIBUTES: Final = (
    "specversion",
    "id",
    "source",
    "type",
    "subject",
    "time",
    "datacontenttype",
    "dataschema",
)
EXTENSION_NAME: Final = re.compile(r"^[a-z0-9]+$")


# ---------------------------------------------------------------- the event, as paths see it


class EventView:
    """The parts of a CloudEvent that paths read, with its data parsed once on demand."""

    def __init__(self, attributes: Mapping[str, Any], data: Any) -> None:
        self.attributes = dict(attributes)
        self._data = data
        self._body: Any = None
        self._parsed = False

    @classmethod
    def of(cls, event: Any) -> EventView:
        """From a cloudevents SDK event (what func-python puts in `scope["event"]`)."""
        return cls(event.get_attributes(), event.get_data())

    @property
    def body(self) -> Any:
        """The data as JSON; BadEvent when there is none or it is not JSON."""
        if not self._parsed:
            data = self._data
            if data is None:
                raise BadEvent("the event has no data, so body paths cannot be read", "NoData")
            if isinstance(data, bytes | bytearray | str):
                try:
                    data = json.loads(data)
                except ValueError:
                    kind = self.attributes.get("datacontenttype") or "unknown"
                    raise BadEvent(
                        f"the event data ({kind}) is not JSON, so body paths cannot be read",
                        "DataNotJSON",
                    ) from None
            self._body, self._parsed = data, True
        return self._body

    def resolve(self, path: PathExpr) -> Any:
        if path.root == "body":
            node: Any = self.body
            for depth, key in enumerate(path.keys):
                node = _member(node, key, path, depth)
            return node
        name = path.keys[0]
        value = self.attributes.get(name)
        if value is None:
            what = "attribute" if path.root == "context" else "extension attribute"
            raise BadEvent(f"$({path.text}): the event has no {what} '{name}'", "MissingPath")
        return value


def _member(node: Any, key: str, path: PathExpr, depth: int) -> Any:
    here = ".".join(["body", *path.keys[:depth]])
    if isinstance(node, Mapping):
        if key in node:
            return node[key]
        raise BadEvent(f"$({path.text}): {here} has no key '{key}'", "MissingPath")
    if isinstance(node, list):
        if key.isdigit() and int(key) < len(node):
            return node[int(key)]
        raise BadEvent(f"$({path.text}): {here} has no element {key}", "MissingPath")
    kind = "null" if node is None else type(node).__name__
    raise BadEvent(f"$({path.text}): {here} is {kind}, not an object or array", "MissingPath")


def as_text(value: Any) -> str:
    """How a resolved value is written into a string."""
    if isinstance(value, str):
        return value
    if isinstance(value, dt.datetime):
        text = value.astimezone(dt.UTC).isoformat()
        return text.replace("+00:00", "Z")
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# ---------------------------------------------------------------- templates


@dataclass(frozen=True, slots=True)
class PathExpr:
    text: str
    root: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> PathExpr:
        keys: list[str] = []
        current = ""
        i = 0
        while i < len(text):
            if text.startswith("\\.", i):
                current, i = current + ".", i + 2
            elif text[i] == ".":
                keys.append(current)
                current, i = "", i + 1
            else:
                current, i = current + text[i], i + 1
        keys.append(current)
        root, rest = keys[0], tuple(keys[1:])
        if root not in ROOTS:
            raise ValueError(f"$({text}): a path starts with {', '.join(ROOTS)}")
        if any(not key for key in rest):
            raise ValueError(f"$({text}): empty key in the path")
        if root == "context" and (len(rest) != 1 or rest[0] not in CONTEXT_ATTRIBUTES):
            names = ", ".join(CONTEXT_ATTRIBUTES)
            raise ValueError(f"$({text}): context paths are context.NAME, NAME one of {names}")
        if root == "extensions" and (len(rest) != 1 or not EXTENSION_NAME.match(rest[0])):
            raise ValueError(f"$({text}): extension paths are extensions.NAME, NAME [a-z0-9]+")
        if root == "extensions" and rest[0] in CONTEXT_ATTRIBUTES:
            raise ValueError(f"$({text}): {rest[0]} is a context attribute: $(context.{rest[0]})")
        return cls(text, root, rest)


@dataclass(frozen=True, slots=True)
class Template:
    """Text with `$(path)` expressions, parsed when the bindings load."""

    source: str
    parts: tuple[str | PathExpr, ...]

    @classmethod
    def parse(cls, source: str) -> Template:
        parts: list[str | PathExpr] = []
        literal, i = "", 0
        while i < len(source):
            if source.startswith("$$(", i):
                literal, i = literal + "$(", i + 3
            elif source.startswith("$(", i):
                end = source.find(")", i + 2)
                if end < 0:
                    raise ValueError(f"unterminated $( in {source!r}")
                if literal:
                    parts.append(literal)
                parts.append(PathExpr.parse(source[i + 2 : end]))
                literal, i = "", end + 1
            else:
                literal, i = literal + source[i], i + 1
        if literal:
            parts.append(literal)
        return cls(source, tuple(parts))

    def render(self, event: EventView) -> str:
        return "".join(p if isinstance(p, str) else as_text(event.resolve(p)) for p in self.parts)

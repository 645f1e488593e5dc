"""Trigger filters: Knative's legacy `filter.attributes`, the `filters` dialects, and `data`.

The dialects (DESIGN section 4; docs/filters.md is the user's guide):

* legacy `filter.attributes`: exact, case-sensitive, ANDed; a value `""` means "present and
  non-empty";
* `filters` (Knative's SubscriptionsAPI; wins over `filter` when both are set), a list ANDed
  together whose entries each use exactly one dialect: `exact`, `prefix`, `suffix` (one
  attribute each, compared on its canonical string; a missing attribute never matches), `all`,
  `any` (non-empty lists of entries), `not` (one entry) and `cesql` (a CESQL v1 expression; an
  evaluation error is no match);
* `data` (cemesh's own, see brokers/datafilter.py): a CEL expression over the event's JSON data,
  because no Knative dialect can look at the data and routing on it is what Argo Events, Dapr and
  TriggerMesh users move over with.

A compiled `Filter` is `exact`, the attribute values every matching event must have, plus a
`predicate` for everything else. `exact` is kept apart because it is the cheap, indexable part:
RabbitMQ binds a trigger's queue with `x-match: all` on it so the exchange drops what cannot
match, and `FilterIndex` (brokers/filterindex.py) looks triggers up by it, so 1,000 triggers do
not mean 1,000 evaluations per event. It therefore collects every exact constraint that holds at
the top level: legacy attributes, `filters[*].exact`, exacts inside a top-level `all`, and those
shared by every branch of an `any`. `prefix` is the same kind of hint for `prefix` filters (also
checked by the predicate, so `exact` and `predicate` alone decide a match).

Everything is validated and compiled once, when config loads: errors are `FilterError`s naming
the path (`filters[1].any[0].cesql: ...`, triggers.py adds the file and trigger), and matching
runs closures built for the filter's shape, allocating nothing per event on the common paths.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from brokers.event import Event, attribute_text
from brokers.filterbase import FilterError, Predicate

__all__ = [
    "DIALECTS",
    "MATCH_ALL",
    "NEVER",
    "Filter",
    "FilterError",
    "Predicate",
    "compile_attributes",
    "compile_filters",
    "compile_trigger_filter",
]

log = logging.getLogger(__name__)

# Knative's webhook: lower-case letters and digits, starting with a letter. Stricter than a
# CloudEvents extension name, but the same files apply to a cluster, which would refuse others.
_ATTRIBUTE_NAME: Final = re.compile(r"[a-z][a-z0-9]*")
DIALECTS: Final = ("exact", "prefix", "suffix", "all", "any", "not", "cesql", "data")


def _always(_event: Event) -> bool:
    return True


def _never(_event: Event) -> bool:
    return False


# -- checks: one closure per shape, so matching an event is a few calls and no allocation.
# Attribute values are str for every core attribute; extensions may be int or bool, compared on
# their canonical string (`attribute_text`), as HTTP headers and AMQP carry them.


def _exact_check(name: str, value: str) -> Predicate:
    def exact(event: Event) -> bool:
        got = event.attributes.get(name)
        if isinstance(got, str):
            return got == value
        return got is not None and attribute_text(got) == value

    return exact


def _prefix_check(name: str, prefix: str) -> Predicate:
    def starts_with(event: Event) -> bool:
        got = event.attributes.get(name)
        if isinstance(got, str):
            return got.startswith(prefix)
        return got is not None and attribute_text(got).startswith(prefix)

    return starts_with


def _suffix_check(name: str, suffix: str) -> Predicate:
    def ends_with(event: Event) -> bool:
        got = event.attributes.get(name)
        if isinstance(got, str):
            return got.endswith(suffix)
        return got is not None and attribute_text(got).endswith(suffix)

    return ends_with


def _present_check(name: str) -> Predicate:
    def present(event: Event) -> bool:
        got = event.attributes.get(name)
        return got is not None and attribute_text(got) != ""

    return present


def _all_of(checks: Sequence[Predicate]) -> Predicate:
    """AND of checks, unrolled for the short lists almost every filter has."""
    if not checks:
        return _always
    if len(checks) == 1:
        return checks[0]
    if len(checks) == 2:
        first, second = checks

        def both(event: Event) -> bool:
            return first(event) and second(event)

        return both
    frozen = tuple(checks)

    def every(event: Event) -> bool:
        for check in frozen:  # noqa: SIM110 - all(genexpr) allocates a generator per event
            if not check(event):
                return False
        return True

    return every


@dataclass(frozen=True, slots=True)
class Filter:
    """A compiled trigger filter: it matches when every `exact` value and `predicate` hold."""

    predicate: Predicate | None = None
    exact: Mapping[str, str] = field(default_factory=dict)
    description: str = "all events"
    prefix: Mapping[str, str] = field(default_factory=dict)
    """Prefixes every matching event's attributes have; implied by `predicate`, for indexes."""
    _match: Predicate = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        checks = [_exact_check(name, value) for name, value in self.exact.items()]
        if self.predicate is not None:
            checks.append(self.predicate)
        object.__setattr__(self, "_match", _all_of(checks))

    def matches(self, event: Event) -> bool:
        return self._match(event)

    def residual(self, indexed: Sequence[str]) -> Predicate | None:
        """What is left to check once an index has matched the `indexed` exact attributes.

        None when nothing is left (the filter is made only of those exact values).
        """
        checks = [_exact_check(n, v) for n, v in self.exact.items() if n not in indexed]
        if self.predicate is not None:
            checks.append(self.predicate)
        return _all_of(checks) if checks else None


MATCH_ALL: Final = Filter()
NEVER: Final = Filter(_never, {}, "no event (contradictory exact filters)")


def compile_trigger_filter(spec: Mapping[str, Any]) -> Filter:
    """Compile a Trigger spec's `filters` (preferred) or legacy `filter.attributes`."""
    if spec.get("filters"):
        return compile_filters(spec["filters"])
    legacy = spec.get("filter")
    if legacy:
        if not isinstance(legacy, Mapping) or set(legacy) - {"attributes"}:
            raise FilterError("filter: only 'attributes' is allowed")
        return compile_attributes(legacy.get("attributes") or {})
    return MATCH_ALL


def compile_attributes(attributes: Mapping[str, Any]) -> Filter:
    """Legacy dialect: exact, case-sensitive, ANDed; `""` means present and non-empty."""
    if not isinstance(attributes, Mapping):
        raise FilterError("filter.attributes must be a mapping")
    exact: dict[str, str] = {}
    present: list[Predicate] = []
    for name, value in attributes.items():
        where = f"filter.attributes.{name}"
        _check_name(name, "filter.attributes")
        if not isinstance(value, str):
            raise FilterError(f"{where}: the value must be a string (quote it in YAML)")
        if value == "":
            present.append(_present_check(name))
        else:
            exact[name] = value
    described = ", ".join(
        f"{k} present" if v == "" else f"{k}={v!r}" for k, v in attributes.items()
    )
    return Filter(_all_of(present) if present else None, exact, described or "all events")


def compile_filters(filters: Any) -> Filter:
    """SubscriptionsAPI `filters`: a list of entries ANDed together."""
    if not isinstance(filters, list):
        raise FilterError("filters must be a list")
    part = _conjunction([_entry(e, f"filters[{i}]") for i, e in enumerate(filters)])
    if part.never:
        return NEVER
    predicate = _all_of(part.checks) if part.checks else None
    return Filter(predicate, part.exact, part.description or "all events", part.prefix)


@dataclass(slots=True)
class _Part:
    """One compiled entry: its exact hints, prefix hints, remaining checks and description."""

    description: str
    exact: dict[str, str] = field(default_factory=dict)
    prefix: dict[str, str] = field(default_factory=dict)
    checks: list[Predicate] = field(default_factory=list)
    never: bool = False

    def predicate(self) -> Predicate:
        """The whole entry as one predicate (for use under `any` and `not`)."""
        if self.never:
            return _never
        return _all_of([*(_exact_check(n, v) for n, v in self.exact.items()), *self.checks])


def _entry(entry: Any, where: str) -> _Part:
    if not isinstance(entry, Mapping):
        raise FilterError(f"{where}: an entry must be a mapping with one dialect")
    if len(entry) != 1:
        found = ", ".join(sorted(map(str, entry))) or "none"
        raise FilterError(f"{where}: an entry must use exactly one dialect (found: {found})")
    ((dialect, body),) = entry.items()
    where = f"{where}.{dialect}"
    if dialect == "exact":
        name, value = _single_attribute(body, where)
        return _Part(f"{name}={value!r}", exact={name: value})
    if dialect == "prefix":
        name, value = _single_attribute(body, where)
        return _Part(
            f"{name} starts with {value!r}",
            prefix={name: value},
            checks=[_prefix_check(name, value)],
        )
    if dialect == "suffix":
        name, value = _single_attribute(body, where)
        return _Part(f"{name} ends with {value!r}", checks=[_suffix_check(name, value)])
    if dialect == "all":
        return _conjunction(_entries(body, where), "all")
    if dialect == "any":
        return _disjunction(_entries(body, where))
    if dialect == "not":
        inner = _entry(body, where)
        return _Part(f"not({inner.description})", checks=[_negation(inner.predicate())])
    if dialect == "cesql":
        return _cesql(body, where)
    if dialect == "data":
        from brokers.datafilter import compile_data_filter  # only loaded when a trigger uses it

        return _Part(f"data({body!r})", checks=[compile_data_filter(body, where)])
    raise FilterError(f"{where}: unknown dialect (expected one of: {', '.join(DIALECTS)})")


def _entries(body: Any, where: str) -> list[_Part]:
    if not isinstance(body, list) or not body:
        raise FilterError(f"{where}: must be a non-empty list of filters")
    return [_entry(item, f"{where}[{i}]") for i, item in enumerate(body)]


def _conjunction(parts: Sequence[_Part], label: str = "") -> _Part:
    """AND: exact and prefix hints merge; two exact values for one attribute never match."""
    out = _Part(" AND ".join(p.description for p in parts))
    if label:
        out.description = f"{label}({out.description})"
    for part in parts:
        out.never = out.never or part.never
        for name, value in part.exact.items():
            if out.exact.setdefault(name, value) != value:
                out.never = True
        for name, value in part.prefix.items():
            # Either prefix is implied; keep the longer one, it narrows an index lookup more.
            if len(value) > len(out.prefix.get(name, "")):
                out.prefix[name] = value
        out.checks.extend(part.checks)
    return out


def _disjunction(parts: Sequence[_Part]) -> _Part:
    """OR: only hints shared by every live branch still hold, so only those are kept."""
    live = [p for p in parts if not p.never]
    if len(live) == 1:
        return live[0]
    description = f"any({' OR '.join(p.description for p in parts)})"
    if not live:
        return _Part(description, never=True)
    first, rest = live[0], live[1:]
    exact = {n: v for n, v in first.exact.items() if all(p.exact.get(n) == v for p in rest)}
    predicates = tuple(p.predicate() for p in live)

    def any_of(event: Event) -> bool:
        for predicate in predicates:  # noqa: SIM110 - no generator per event
            if predicate(event):
                return True
        return False

    return _Part(description, exact=exact, checks=[any_of])


def _negation(predicate: Predicate) -> Predicate:
    def negated(event: Event) -> bool:
        return not predicate(event)

    return negated


def _cesql(body: Any, where: str) -> _Part:
    if not isinstance(body, str) or not body.strip():
        raise FilterError(f"{where}: must be a non-empty CESQL expression")
    from brokers.cesql import CesqlParseError, parse

    try:
        expression = parse(body)
    except CesqlParseError as exc:
        raise FilterError(f"{where}: {exc}") from None
    evaluate = expression.matches

    def cesql(event: Event) -> bool:
        # CESQL is total: evaluation errors are values and `matches` is False on any of them.
        # Anything raised is an engine bug; it must not stop routing of the other triggers.
        try:
            return evaluate(event.attributes)
        except Exception:
            log.warning(
                "CESQL %r failed on event %s; treated as no match", body, event.id, exc_info=True
            )
            return False

    part = _Part(f"cesql({body!r})", checks=[cesql])
    _cesql_hints(body, part)
    return part


# Core attributes are always strings; extensions may also be integers or booleans.
_STRING_ATTRIBUTES: Final = frozenset(
    {"id", "source", "specversion", "type", "subject", "datacontenttype", "dataschema", "time"}
)
_LIKE_WILDCARDS: Final = re.compile(r"[%_\\]")


def _cesql_hints(text: str, part: _Part) -> None:
    """Record the exact values and prefixes a CESQL expression requires, for indexes.

    Only conjuncts of a top-level AND count (each must be true for the whole to be true), and
    only shapes that mean exactly what `exact` and `prefix` mean: `attr = 'text'` (CESQL casts
    the left operand to the right one's type, so this compares the attribute's canonical
    string), `'text' = attr` on a core attribute (always a string; on an extension CESQL would
    cast the text to the attribute's type instead), and `attr LIKE 'text'` / `'text%'` (LIKE
    compares the canonical string). The expression still runs in full: the hints only let an
    index skip events that cannot match, and let RabbitMQ bind on `type = '...'`.
    """
    from brokers.cesql import parser as tree

    root = tree.parse_tree(text)
    conjuncts = root.operands if isinstance(root, tree.Logical) and root.op == "AND" else (root,)
    for node in conjuncts:
        if isinstance(node, tree.Binary) and node.op == "=":
            left, right = node.left, node.right
            if (
                isinstance(left, tree.Literal)
                and isinstance(right, tree.Attribute)
                and right.name in _STRING_ATTRIBUTES
            ):
                left, right = right, left
            if (
                isinstance(left, tree.Attribute)
                and isinstance(right, tree.Literal)
                and isinstance(right.value, str)
            ):
                _require(part, left.name, right.value)
        elif (
            isinstance(node, tree.Like)
            and not node.negated
            and isinstance(node.operand, tree.Attribute)
        ):
            name, pattern = node.operand.name, node.pattern
            if not _LIKE_WILDCARDS.search(pattern):
                _require(part, name, pattern)
            elif (
                pattern.endswith("%")
                and not _LIKE_WILDCARDS.search(pattern[:-1])
                and len(pattern) - 1 > len(part.prefix.get(name, ""))
            ):
                part.prefix[name] = pattern[:-1]


def _require(part: _Part, name: str, value: str) -> None:
    if part.exact.setdefault(name, value) != value:
        part.never = True


def _single_attribute(body: Any, where: str) -> tuple[str, str]:
    if not isinstance(body, Mapping) or len(body) != 1:
        raise FilterError(f"{where}: needs exactly one attribute")
    ((name, value),) = body.items()
    _check_name(name, where)
    if not isinstance(value, str):
        raise FilterError(f"{where}.{name}: the value must be a string (quote it in YAML)")
    if not value:
        raise FilterError(
            f'{where}.{name}: the value must not be empty (legacy filter.attributes uses "" '
            "for 'present'; use cesql 'EXISTS name' here)"
        )
    return name, value


def _check_name(name: Any, where: str) -> None:
    if not isinstance(name, str) or not _ATTRIBUTE_NAME.fullmatch(name):
        raise FilterError(
            f"{where}: {name!r} is not a valid attribute name "
            "(lower-case letters and digits, starting with a letter)"
        )

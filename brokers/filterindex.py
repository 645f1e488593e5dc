"""Find the triggers whose filters match an event without running every filter.

Why: a broker with 1,000 triggers must not evaluate 1,000 filters per event. Most filters
require exact attribute values (a `type`, often a `source` too), so a filter is filed under the
values its `Filter.exact` requires and an event only meets the filters filed under its own
values: one dict lookup per distinct set of exact attribute names in use ("signature"), then the
residual predicate of each candidate (none at all for pure exact filters).

Filters with no exact value but a prefix (`Filter.prefix`, e.g. `prefix: {source: ...}` or a
CESQL `source LIKE 'x%'`) are filed under that prefix and found with one lookup per distinct
prefix length. Only what has neither (a bare `suffix`, `not`, an `any` over different types, a
CESQL or data expression with no such conjunct) is evaluated for every event.

`matching` returns candidates in no particular order: each trigger has its own queue.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, Generic, TypeVar

from brokers.event import AttributeValue, Event, attribute_text
from brokers.filterbase import Predicate
from brokers.filters import NEVER, Filter

T = TypeVar("T")

MAX_SIGNATURES: Final = 8
"""Past this many distinct exact-name sets, rarer ones are filed under one attribute only, so
the lookups per event stay bounded (their other exact values become residual checks)."""
PREFERRED: Final = ("type", "source", "subject")
"""Attributes to file a filter under when it cannot use all of its exact ones: most selective
in practice first."""


class _Bucket(Generic[T]):
    """Items filed under one key: those that need no further check, and the others."""

    __slots__ = ("checked", "plain")

    def __init__(self) -> None:
        self.plain: list[T] = []
        self.checked: list[tuple[T, Predicate]] = []

    def add(self, item: T, residual: Predicate | None) -> None:
        if residual is None:
            self.plain.append(item)
        else:
            self.checked.append((item, residual))


class FilterIndex(Generic[T]):
    """Items (triggers) indexed by their filters; `matching(event)` returns those that match."""

    def __init__(self, entries: Iterable[tuple[T, Filter]]) -> None:
        entries = list(entries)
        self._single: dict[str, dict[str, _Bucket[T]]] = {}
        self._multi: dict[tuple[str, ...], dict[tuple[str, ...], _Bucket[T]]] = {}
        self._prefixed: dict[str, tuple[list[int], dict[str, _Bucket[T]]]] = {}
        self._scan: list[tuple[T, Predicate]] = []
        common = {
            names
            for names, _ in Counter(
                tuple(sorted(f.exact)) for _, f in entries if f.exact
            ).most_common(MAX_SIGNATURES)
        }
        for item, filt in entries:
            if filt is NEVER:
                continue  # contradictory exact values: nothing to look up, nothing to run
            names = tuple(sorted(filt.exact))
            if names and names not in common:
                names = (next((n for n in PREFERRED if n in filt.exact), names[0]),)
            if names:
                self._file_exact(item, filt, names)
            elif filt.prefix:
                self._file_prefix(item, filt)
            else:
                self._scan.append((item, filt.matches))
        self._single_items = tuple(self._single.items())
        self._multi_items = tuple(self._multi.items())
        self._prefixed_items = tuple(
            (name, tuple(lengths), table) for name, (lengths, table) in self._prefixed.items()
        )
        self._scan_items = tuple(self._scan)

    def _file_exact(self, item: T, filt: Filter, names: tuple[str, ...]) -> None:
        if len(names) == 1:
            table = self._single.setdefault(names[0], {})
            key = filt.exact[names[0]]
            table.setdefault(key, _Bucket()).add(item, filt.residual(names))
        else:
            multi = self._multi.setdefault(names, {})
            values = tuple(filt.exact[n] for n in names)
            multi.setdefault(values, _Bucket()).add(item, filt.residual(names))

    def _file_prefix(self, item: T, filt: Filter) -> None:
        name = next((n for n in PREFERRED if n in filt.prefix), min(filt.prefix))
        prefix = filt.prefix[name]
        lengths, table = self._prefixed.setdefault(name, ([], {}))
        if len(prefix) not in lengths:
            lengths.append(len(prefix))
            lengths.sort()
        table.setdefault(prefix, _Bucket()).add(item, filt.matches)

    @property
    def scanned(self) -> int:
        """How many filters run for every event (a cost figure for logs and benchmarks)."""
        return len(self._scan)

    def matching(self, event: Event) -> list[T]:
        attributes = event.attributes
        out: list[T] = []
        for name, table in self._single_items:
            value = attributes.get(name)
            if value is None:
                continue
            bucket = table.get(value if isinstance(value, str) else attribute_text(value))
            if bucket is not None:
                _collect(bucket, event, out)
        for names, multi in self._multi_items:
            key = _values(attributes, names)
            if key is not None:
                bucket = multi.get(key)
                if bucket is not None:
                    _collect(bucket, event, out)
        for name, lengths, prefixes in self._prefixed_items:
            value = attributes.get(name)
            if value is None:
                continue
            text = value if isinstance(value, str) else attribute_text(value)
            for length in lengths:
                if length > len(text):
                    break
                bucket = prefixes.get(text[:length])
                if bucket is not None:
                    _collect(bucket, event, out)
        for item, predicate in self._scan_items:
            if predicate(event):
                out.append(item)
        return out


def _collect(bucket: _Bucket[T], event: Event, out: list[T]) -> None:
    if bucket.plain:
        out.extend(bucket.plain)
    for item, residual in bucket.checked:
        if residual(event):
            out.append(item)


def _values(
    attributes: Mapping[str, AttributeValue], names: Sequence[str]
) -> tuple[str, ...] | None:
    values: list[str] = []
    for name in names:
        value = attributes.get(name)
        if value is None:
            return None
        values.append(value if isinstance(value, str) else attribute_text(value))
    return tuple(values)

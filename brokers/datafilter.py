"""The `data` filter dialect: a CEL expression over the event's JSON data (cemesh's own).

    filters:
      - exact: {type: com.example.order.created}
      - data: 'data.total > 100 && data.customer.tier == "gold"'

Why: no Knative dialect can look at the data, and routing on it (amounts, statuses, labels) is
what Argo Events, Dapr and TriggerMesh users expect. Why CEL rather than JSONPath or JMESPath:
those select values, CEL decides (comparisons, `&&`, `exists()`, `has()`, `matches()`), it is
what Kubernetes (ValidatingAdmissionPolicy) and Dapr already ask users to write, and it is
non-Turing-complete, so a filter cannot loop or allocate without bound.

Why cel-expr-python (`from cel_expr_python import cel`): it is the CEL team's own binding of the
reference C++ implementation (so the semantics are those of cel-go and cel-cpp, conformance
tested upstream), it type-checks at compile time (undeclared names and non-boolean results are
load errors here), it returns evaluation errors as values instead of raising, and it was the
fastest of the candidates measured on a two-condition filter: ~4 µs per evaluation against ~13
µs for common-expression-language (Rust `cel` crate, which also pulls a CLI stack of typer, rich
and prompt-toolkit into a server) and ~180 µs for cel-python (pure Python). It ships wheels for
Linux x86_64/aarch64 and macOS arm64; where it is missing, only triggers that use `data` fail to
load, which is why it is imported when the first one is compiled.

Semantics: the expression sees one variable, `data`, the JSON value of the data (object, list,
string, number...). It must be a boolean expression; the event matches only when it evaluates to
`true`. No data, data whose `datacontenttype` is not JSON, data that does not parse, or an
evaluation error (a missing key, a type mismatch) is a non-match, logged at debug level, never
an exception. The exception is CEL's iteration budget (cel-cpp's default, about 10,000
comprehension iterations per evaluation): an event that exhausts it was not decided, so it is a
non-match that is counted (`cemesh_data_filter_budget_exceeded_total`) and logged as a warning.
The data is parsed at most once per event, whatever the number of data filters:
the last event's CEL activation is cached (events are immutable and routed one at a time).
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any, Final

from brokers.event import Event, is_json_content_type
from brokers.filterbase import FilterError, Predicate

log = logging.getLogger(__name__)

_CEL_ERROR: Final = re.compile(r"<input>:(\d+):(\d+): ([^\n]*)")


class _Cel:
    """The shared CEL environment and the cached activation of the last event seen."""

    def __init__(self) -> None:
        try:
            from cel_expr_python import cel  # type: ignore[import-untyped]
        except ImportError as exc:  # pragma: no cover - depends on the platform's wheels
            raise FilterError(
                f"the data dialect needs the cel-expr-python package ({exc})"
            ) from None
        self.cel: Any = cel
        self.env: Any = cel.NewEnv(variables={"data": cel.Type.DYN})
        self.error_type: Any = cel.Type.ERROR
        self.bool_type: Any = cel.Type.BOOL
        self.dyn_type: Any = cel.Type.DYN
        # (event, activation or None): one slot, replaced as a whole so readers never see a
        # half-updated pair; holding the event keeps its identity from being reused.
        self.last: tuple[Event | None, Any] = (None, None)

    def activation(self, event: Event) -> Any:
        """The CEL activation for `event`'s data, or None when it has no JSON data."""
        cached_event, cached = self.last
        if cached_event is event:
            return cached
        activation = self._activation(event)
        self.last = (event, activation)
        return activation

    def _activation(self, event: Event) -> Any:
        if event.data is None:
            log.debug("data filter: event %s has no data; no match", event.id)
            return None
        content_type = event.datacontenttype
        if not is_json_content_type(content_type):
            log.debug(
                "data filter: event %s has %s data, not JSON; no match", event.id, content_type
            )
            return None
        try:
            value = json.loads(event.data)
            return self.env.Activation(data={"data": value})
        except Exception as exc:  # ValueError from json, CEL's own on unrepresentable values
            log.debug("data filter: event %s data is not usable JSON (%s); no match", event.id, exc)
            return None


_shared: _Cel | None = None


def _environment() -> _Cel:
    global _shared
    if _shared is None:
        _shared = _Cel()
    return _shared


def compile_data_filter(body: Any, where: str) -> Predicate:
    """Compile one `data` entry; raises FilterError with `where` on any compile error."""
    if not isinstance(body, str) or not body.strip():
        raise FilterError(f"{where}: must be a non-empty CEL expression")
    cel = _environment()
    try:
        program = cel.env.compile(body)
    except Exception as exc:  # the binding raises RuntimeError("INVALID_ARGUMENT: ...")
        raise FilterError(f"{where}: {_describe(str(exc))}") from None
    result_type = program.return_type()
    if not (result_type == cel.bool_type or result_type == cel.dyn_type):
        raise FilterError(
            f"{where}: must be a boolean expression (this one is {result_type.name().lower()})"
        )
    evaluate, activation_of, error_type = program.eval, cel.activation, cel.error_type

    def data_filter(event: Event) -> bool:
        activation = activation_of(event)
        if activation is None:
            return False
        try:
            result = evaluate(activation)
        except Exception as exc:  # the binding reports most errors as values
            if "budget" in str(exc).lower():
                _over_budget(body, event)
            else:
                log.debug("data filter %r raised on event %s: %s; no match", body, event.id, exc)
            return False
        value = result.value()
        if value is True:
            return True
        if result.type() == error_type:
            log.debug("data filter %r on event %s: %s; no match", body, event.id, value)
        return False

    return data_filter


@dataclass(slots=True)
class DataFilterStats:
    """Evaluations that could not decide, for `cemesh_data_filter_budget_exceeded_total`."""

    budget_exceeded: int = 0
    _warned: float = -60.0


stats = DataFilterStats()
WARN_EVERY: Final = 10.0


def _over_budget(body: str, event: Event) -> None:
    """CEL stopped evaluating (its iteration budget): not a decision.
    Counted and logged as a warning, never a silent miss: an event padded with cheap items to
    hide an expensive one is seen."""
    stats.budget_exceeded += 1
    now = time.monotonic()
    if now - stats._warned >= WARN_EVERY:
        stats._warned = now
        log.warning(
            "data filter %r exceeded CEL's iteration budget on event %s (source %s): counted "
            "as no match (%d so far)",
            body,
            event.id,
            event.source,
            stats.budget_exceeded,
        )


def _describe(message: str) -> str:
    """CEL's multi-line compile error as one line: `line 1 column 8: ...`."""
    found = _CEL_ERROR.findall(message)
    if not found:
        return message.strip().splitlines()[0] if message.strip() else "invalid CEL expression"
    parts = (f"line {line} column {column}: {text}" for line, column, text in found)
    return "; ".join(parts).replace(" (in container '')", "")

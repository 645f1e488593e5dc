"""What compiled CESQL runs per event: attribute access with its type conversion, the
short-circuit AND/OR over boolean closures, EXISTS, and IN over a set of constants.
"""

from __future__ import annotations

from collections.abc import Callable
from types import MappingProxyType
from typing import Final, TypeAlias

from brokers.cesql.errors import CesqlError
from brokers.cesql.functions import (
    CASTS,
    CASTS_BY_PYTHON_TYPE,
    Attributes,
    Failure,
    Type,
    Value,
)

Evaluator: TypeAlias = Callable[[Attributes], Value]
_IntFn: TypeAlias = Callable[[Attributes], int]
_BoolFn: TypeAlias = Callable[[Attributes], bool]
_StrFn: TypeAlias = Callable[[Attributes], str]

MAX_DEPTH: Final = 128
"""Deepest syntax tree `parse` compiles; bounds the stack evaluation needs."""

_EMPTY: Final[Attributes] = MappingProxyType({})
_PRIMITIVES: Final = frozenset({str, int, bool})


def _attribute(name: str, target: Type = Type.ANY) -> Evaluator:
    """Read attribute `name`, cast to `target`: the commonest leaf, so one closure does both."""
    missing = CesqlError("missingAttribute", f"the event has no attribute {name!r}")
    if target is Type.ANY:

        def read(attributes: Attributes) -> Value:
            try:
                value = attributes[name]
            except KeyError:
                raise Failure(missing) from None
            return value if type(value) in _PRIMITIVES else str(value)

        return read
    python_type = {Type.STRING: str, Type.INTEGER: int, Type.BOOLEAN: bool}[target]
    convert = CASTS[target]

    def read_as(attributes: Attributes) -> Value:
        try:
            value = attributes[name]
        except KeyError:
            raise Failure(missing) from None
        if type(value) is python_type:
            return value
        return convert(value if type(value) in _PRIMITIVES else str(value))

    return read_as


def _all(fns: tuple[_BoolFn, ...]) -> _BoolFn:
    """AND, short-circuit: the operands from the left, up to the first false one."""
    if len(fns) == 2:
        first, second = fns
        return lambda attributes: first(attributes) and second(attributes)
    if len(fns) == 3:
        first, second, third = fns
        return lambda attributes: first(attributes) and second(attributes) and third(attributes)

    def run(attributes: Attributes) -> bool:
        for fn in fns:  # noqa: SIM110 - all() over a generator is ~0.2 µs slower
            if not fn(attributes):
                return False
        return True

    return run


def _any(fns: tuple[_BoolFn, ...]) -> _BoolFn:
    """OR, short-circuit: the operands from the left, up to the first true one."""
    if len(fns) == 2:
        first, second = fns
        return lambda attributes: first(attributes) or second(attributes)
    if len(fns) == 3:
        first, second, third = fns
        return lambda attributes: first(attributes) or second(attributes) or third(attributes)

    def run(attributes: Attributes) -> bool:
        for fn in fns:  # noqa: SIM110 - any() over a generator is ~0.2 µs slower
            if fn(attributes):
                return True
        return False

    return run


def _exists(name: str) -> Evaluator:
    def run(attributes: Attributes) -> bool:
        return name in attributes

    return run


def _in_tables(
    values: list[Value],
) -> dict[type, tuple[frozenset[Value], CesqlError | None]]:
    """For each type the left operand may have: the set's elements cast to it, up to the first
    one that cannot be (and that element's cast error), so that a set lookup answers exactly
    what the left-to-right scan would."""
    tables: dict[type, tuple[frozenset[Value], CesqlError | None]] = {}
    for python_type, convert in CASTS_BY_PYTHON_TYPE.items():
        members: list[Value] = []
        error: CesqlError | None = None
        for value in values:
            try:
                members.append(convert(value))
            except Failure as failure:
                error = failure.error
                break
        tables[python_type] = (frozenset(members), error)
    return tables

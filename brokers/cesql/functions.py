"""CESQL values at run time: the three types, their casts and zero values, and the built-ins.

Values are plain Python `bool`, `int` and `str` (an event's attributes already come in those
types, so evaluation never boxes anything). Because `bool` is a subclass of `int` in Python,
every type test here is `type(x) is ...`, never `isinstance`.

The casts are the ones of spec section 3.7, strictly: a String becomes an Integer only if it is
an optional sign and ASCII decimal digits within 32 bits (Python's `int()` would also take
`" 1_0 "` or Arabic-Indic digits), and a Boolean only if it is `true` or `false` in any case.

The built-ins are spec 3.5 (string and math functions) plus the casting functions the TCK and
both SDKs provide (`INT`, `BOOL`, `STRING`, `IS_INT`, `IS_BOOL`). A function receives its
arguments already cast to its parameter types; it reports a failure by raising `Failure`
carrying the value the spec wants it to return (`LEFT('abc', -2)` is `'abc'` plus an error).
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Final, TypeAlias

from brokers.cesql.errors import CesqlError

Value: TypeAlias = str | int | bool
Attributes: TypeAlias = Mapping[str, Value]

INT32_MIN: Final = -(2**31)
INT32_MAX: Final = 2**31 - 1


class Type(enum.Enum):
    BOOLEAN = "Boolean"
    INTEGER = "Integer"
    STRING = "String"
    ANY = "Any"  # an attribute: its type is only known when the event is


ZERO: Final[Mapping[Type, Value]] = {
    Type.BOOLEAN: False,
    Type.INTEGER: 0,
    Type.STRING: "",
    # spec 3.2: when the type of a subexpression cannot be determined, assume Boolean
    Type.ANY: False,
}


class Failure(Exception):
    """Carries one evaluation error up the compiled closures to `Expression.evaluate`.

    `value` is what the failing operator yields when it is the root of the expression; it only
    matters for the few operators whose error value is not the zero value of their type, and
    `origin` (the syntax node that failed) tells the root which operator that was.
    """

    def __init__(
        self, error: CesqlError, value: Value | None = None, origin: object | None = None
    ) -> None:
        super().__init__(error.message)
        self.error = error
        self.value = value
        self.origin = origin


def type_of(value: Value) -> Type:
    if type(value) is bool:
        return Type.BOOLEAN
    if type(value) is int:
        return Type.INTEGER
    return Type.STRING


def show(value: Value) -> str:
    """A value as CESQL would write it, for error messages."""
    if isinstance(value, str):
        return repr(value if len(value) <= 40 else value[:37] + "...")
    if type(value) is bool:
        return "TRUE" if value else "FALSE"
    return str(value)


def _cast_failure(value: Value, target: Type) -> Failure:
    return Failure(CesqlError("cast", f"cannot cast {show(value)} to {target.value}"))


def to_int(value: Value) -> int:
    if type(value) is int:
        return value
    if type(value) is bool:
        return 1 if value else 0
    assert type(value) is str
    digits = value[1:] if value[:1] in ("+", "-") else value
    if digits.isdigit() and digits.isascii():
        if len(digits) < 10:  # surely within 32 bits
            return int(value)
        significant = digits.lstrip("0") or "0"  # int() refuses over 4300 digits
        if len(significant) <= 10:
            number = -int(significant) if value[0] == "-" else int(significant)
            if INT32_MIN <= number <= INT32_MAX:
                return number
    raise _cast_failure(value, Type.INTEGER)


def to_bool(value: Value) -> bool:
    if type(value) is bool:
        return value
    if type(value) is int:
        return value != 0
    assert type(value) is str
    lowered = value.lower()
    if lowered == "true":
        return True
    if lowered == "false":
        return False
    raise _cast_failure(value, Type.BOOLEAN)


def to_str(value: Value) -> str:
    if type(value) is str:
        return value
    if type(value) is bool:
        return "true" if value else "false"
    return str(value)


CASTS: Final[Mapping[Type, Callable[[Value], Value]]] = {
    Type.BOOLEAN: to_bool,
    Type.INTEGER: to_int,
    Type.STRING: to_str,
}
CASTS_BY_PYTHON_TYPE: Final[Mapping[type, Callable[[Value], Value]]] = {
    bool: to_bool,
    int: to_int,
    str: to_str,
}


def can_cast(value: Value, cast: Callable[[Value], Value]) -> bool:
    try:
        cast(value)
    except Failure:
        return False
    return True


# -- built-in functions


@dataclass(frozen=True, slots=True)
class Function:
    name: str
    params: tuple[Type, ...]
    returns: Type
    impl: Callable[..., Value]
    variadic: Type | None = None  # type of the arguments after `params`, if any

    def accepts(self, arity: int) -> bool:
        fixed = len(self.params)
        return arity == fixed or (self.variadic is not None and arity > fixed)

    def param_type(self, index: int) -> Type:
        if index < len(self.params):
            return self.params[index]
        assert self.variadic is not None
        return self.variadic


def _function_error(message: str, value: Value) -> Failure:
    return Failure(CesqlError("functionEvaluation", message), value)


# TRIM removes Unicode White_Space only (spec 3.5.1); str.strip() would also remove the control
# characters U+001C..U+001F, which the spec says must stay.
_UNICODE_WHITESPACE: Final = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)


def _trim(text: str) -> str:
    return text.strip(_UNICODE_WHITESPACE)


def _concat_ws(delimiter: str, *parts: str) -> str:
    return delimiter.join(parts)


def _left(text: str, count: int) -> str:
    if count < 0:
        raise _function_error(f"LEFT: negative length {count}", text)
    return text[:count]


def _right(text: str, count: int) -> str:
    if count < 0:
        raise _function_error(f"RIGHT: negative length {count}", text)
    return text[len(text) - count :] if count < len(text) else text


def _substring(text: str, pos: int, length: int | None = None) -> str:
    if pos > len(text) or pos < -len(text):
        raise _function_error(
            f"SUBSTRING: position {pos} is outside a {len(text)}-character string", ""
        )
    if length is not None and length < 0:
        raise _function_error(f"SUBSTRING: negative length {length}", "")
    if pos == 0:
        return ""
    start = pos - 1 if pos > 0 else len(text) + pos
    return text[start:] if length is None else text[start : start + length]


def _abs(number: int) -> int:
    if number == INT32_MIN:
        raise Failure(CesqlError("math", f"ABS({INT32_MIN}) overflows 32 bits"), INT32_MAX)
    return abs(number)


def _is_int(value: Value) -> bool:
    return can_cast(value, to_int)


def _is_bool(value: Value) -> bool:
    return can_cast(value, to_bool)


_S, _I, _B, _A = Type.STRING, Type.INTEGER, Type.BOOLEAN, Type.ANY

_FUNCTIONS: Final = (
    Function("LENGTH", (_S,), _I, len),
    Function("CONCAT", (), _S, lambda *parts: "".join(parts), variadic=_S),
    Function("CONCAT_WS", (_S,), _S, _concat_ws, variadic=_S),
    Function("LOWER", (_S,), _S, str.lower),
    Function("UPPER", (_S,), _S, str.upper),
    Function("TRIM", (_S,), _S, _trim),
    Function("LEFT", (_S, _I), _S, _left),
    Function("RIGHT", (_S, _I), _S, _right),
    Function("SUBSTRING", (_S, _I), _S, _substring),
    Function("SUBSTRING", (_S, _I, _I), _S, _substring),
    Function("ABS", (_I,), _I, _abs),
    Function("INT", (_A,), _I, to_int),
    Function("BOOL", (_A,), _B, to_bool),
    Function("STRING", (_A,), _S, to_str),
    Function("IS_INT", (_A,), _B, _is_int),
    Function("IS_BOOL", (_A,), _B, _is_bool),
)
BUILTINS: Final[Mapping[str, tuple[Function, ...]]] = {
    name: tuple(f for f in _FUNCTIONS if f.name == name) for name in {f.name for f in _FUNCTIONS}
}


def resolve(name: str, arity: int) -> Function | None:
    """The built-in `name` (upper case) callable with `arity` arguments, if there is one."""
    for function in BUILTINS.get(name, ()):
        if function.accepts(arity):
            return function
    return None

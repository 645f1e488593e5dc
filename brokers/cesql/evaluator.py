"""Compile a CESQL syntax tree into Python closures, and run them against events.

Why closures: a trigger's expression is parsed once and evaluated for every event, so every
decision that depends only on the text is taken once, by `parse`: which cast each operand
needs (static types), which overload of a function is called, the LIKE matcher, the members of
a literal IN set, and the value of every constant sub-expression (folded, errors included).
What is left for `evaluate` is a few nested calls on plain `str`/`int`/`bool` values.

Errors (spec 3.3 and 4.1). Evaluation is fail-fast, the mode the spec recommends for filters:
the first error stops it, and it is the one error reported. An operator whose operand failed
yields the zero value of its own type, so a failed evaluation yields the zero value of the
expression's type (`false` for a bare attribute, spec 3.2) - except when the failing operator
is the root, which yields what the spec makes it yield (`LEFT('abc', -2)` is `'abc'`,
`ABS(-2147483648)` is `2147483647`). This is what the TCK checks: `true AND (1 != 1 / 0)` is
false with a math error, `NOT missing` is false with a missingAttribute error.

Choices the spec leaves open:

* Integer overflow of `+ - * /` and unary `-` is a math error, and the result is clamped to the
  32-bit range, as spec 3.5.2 does for `ABS` (the SDKs wrap around silently; a filter should
  not match on a wrapped value);
* `IN` compares left to right and stops at the first equal element, like the OR chain it
  abbreviates; an element that cannot be cast to the left operand's type is a cast error;
* attribute values that are not str/int/bool are read as their `str()` (spec 3.2).

Calls to unknown functions, or with a wrong number of arguments, are found here but are not
parse errors: the TCK expects a missingFunction error at evaluation. They are listed, with every
other error a constant sub-expression is bound to raise, in `Expression.static_errors`, so a
config loader can reject such a filter up front.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from brokers.cesql.compiler import Compiler
from brokers.cesql.errors import CesqlError
from brokers.cesql.functions import ZERO, Attributes, Failure, Value
from brokers.cesql.parser import Node, parse_tree
from brokers.cesql.runtime import Evaluator


@dataclass(frozen=True, slots=True)
class EvalResult:
    """The two outputs of an evaluation (spec 1): a value, and the errors met on the way."""

    value: Value
    errors: tuple[CesqlError, ...] = ()


_TRUE: Final = EvalResult(True)
_FALSE: Final = EvalResult(False)


@dataclass(frozen=True, slots=True)
class Expression:
    """A parsed CESQL expression: evaluate it as many times as needed, from any thread.

    Two expressions parsed from the same text are equal (and hash alike).
    """

    text: str
    static_errors: tuple[CesqlError, ...] = field(compare=False)
    """Errors found at parse time that evaluation reports whenever it reaches them."""
    _run: Evaluator = field(repr=False, compare=False)
    _root: Node = field(repr=False, compare=False)
    _zero: Value = field(repr=False, compare=False)

    def evaluate(self, attributes: Attributes) -> EvalResult:
        """Evaluate against an event's context attributes (extensions included)."""
        try:
            value = self._run(attributes)
        except Failure as failure:
            if failure.origin is self._root and failure.value is not None:
                return EvalResult(failure.value, (failure.error,))
            return EvalResult(self._zero, (failure.error,))
        if value is True:
            return _TRUE
        if value is False:
            return _FALSE
        return EvalResult(value)

    def matches(self, attributes: Attributes) -> bool:
        """Filter semantics (spec 1.2, Knative): true only for a Boolean true and no error."""
        try:
            return self._run(attributes) is True
        except Failure:
            return False

    def __str__(self) -> str:
        return self.text


def parse(text: str) -> Expression:
    """Parse and compile `text`. Raises CesqlParseError if it is not a CESQL expression."""
    tree = parse_tree(text)
    compiler = Compiler()
    code = compiler.compile(tree, 0)
    if code.error is not None:
        compiler.static_errors.append(code.error)
    return Expression(text, tuple(compiler.static_errors), code.fn, tree, ZERO[code.type])

"""The CESQL compiler: a syntax tree into nested Python closures.

Every decision that depends only on the text is taken here, once: the casts each operand needs
(static types), which overload of a function is called, the LIKE matcher, the members of a
literal IN set, and the value of every constant sub-expression (folded, errors included). The
choices the spec leaves open, and how errors propagate, are described in `evaluator`.
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, cast

from brokers.cesql.errors import CesqlError, CesqlParseError
from brokers.cesql.functions import (
    CASTS,
    CASTS_BY_PYTHON_TYPE,
    INT32_MAX,
    INT32_MIN,
    Attributes,
    Failure,
    Type,
    Value,
    resolve,
    type_of,
)
from brokers.cesql.like import like_matcher
from brokers.cesql.parser import (
    Attribute,
    Binary,
    Call,
    Exists,
    In,
    Like,
    Literal,
    Logical,
    Negate,
    Node,
    Not,
)
from brokers.cesql.runtime import (
    _EMPTY,
    MAX_DEPTH,
    Evaluator,
    _all,
    _any,
    _attribute,
    _BoolFn,
    _exists,
    _in_tables,
    _IntFn,
    _StrFn,
)


@dataclass(frozen=True, slots=True)
class Code:
    fn: Evaluator
    type: Type  # the static type of what fn returns
    const: bool = False  # fn does not read the event
    error: CesqlError | None = None  # for a constant: the error it always raises
    attribute: str | None = None  # fn just reads this attribute


def _constant(value: Value) -> Code:
    def run(_: Attributes) -> Value:
        return value

    return Code(run, type_of(value), const=True)


def _failing(error: CesqlError, type_: Type, value: Value | None, origin: object) -> Code:
    def run(_: Attributes) -> Value:
        raise Failure(error, value, origin)

    return Code(run, type_, const=True, error=error)


def _fold(fn: Evaluator, type_: Type) -> Code:
    """A constant sub-expression, evaluated now: its value, or the error it always raises."""
    try:
        value = fn(_EMPTY)
    except Failure as failure:
        return _failing(failure.error, type_, failure.value, failure.origin)
    return _constant(value)


def _ints(code: Code) -> _IntFn:
    assert code.type is Type.INTEGER
    return cast(_IntFn, code.fn)


def _bools(code: Code) -> _BoolFn:
    assert code.type is Type.BOOLEAN
    return cast(_BoolFn, code.fn)


def _strs(code: Code) -> _StrFn:
    assert code.type is Type.STRING
    return cast(_StrFn, code.fn)


def _overflow(result: int, origin: object) -> Failure:
    clamped = max(INT32_MIN, min(INT32_MAX, result))
    return Failure(CesqlError("math", f"integer overflow ({result})"), clamped, origin)


def _divide(x: int, y: int) -> int:
    if y == 0:
        raise Failure(CesqlError("math", "division by zero"))
    quotient = abs(x) // abs(y)  # truncated division: rounded towards zero
    return quotient if (x < 0) == (y < 0) else -quotient


def _modulo(x: int, y: int) -> int:
    if y == 0:
        raise Failure(CesqlError("math", "modulo by zero"))
    remainder = abs(x) % abs(y)  # takes the sign of the dividend
    return -remainder if x < 0 else remainder


_ARITHMETIC: Final[dict[str, Callable[[int, int], int]]] = {
    "+": operator.add,
    "-": operator.sub,
    "*": operator.mul,
    "/": _divide,
    "%": _modulo,
}
_CASTING_FUNCTIONS: Final = frozenset({"INT", "BOOL", "STRING"})
_ORDERING: Final[dict[str, Callable[[int, int], bool]]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


class Compiler:
    def __init__(self) -> None:
        self.static_errors: list[CesqlError] = []

    def compile(self, node: Node, depth: int) -> Code:
        if depth > MAX_DEPTH:
            raise CesqlParseError(f"expression nested more than {MAX_DEPTH} levels deep", node.pos)
        depth += 1
        match node:
            case Literal(value=value):
                return _constant(value)
            case Attribute(name=name):
                return Code(_attribute(name), Type.ANY, attribute=name)
            case Exists(name=name):
                return Code(_exists(name), Type.BOOLEAN)
            case Not(operand=operand):
                return self._not(self.compile(operand, depth))
            case Negate():
                return self._negate(node, self.compile(node.operand, depth))
            case Logical():
                return self._logical(node, [self.compile(o, depth) for o in node.operands])
            case Binary():
                left = self.compile(node.left, depth)
                right = self.compile(node.right, depth)
                return self._binary(node, left, right)
            case Like():
                return self._like(node, self.compile(node.operand, depth))
            case In():
                left = self.compile(node.operand, depth)
                items = [self.compile(item, depth) for item in node.items]
                return self._in(node, left, items)
            case Call():
                return self._call(node, depth)
        raise AssertionError(f"unknown node {node!r}")  # pragma: no cover

    def _finish(self, children: Sequence[Code], fn: Evaluator, type_: Type) -> Code:
        if all(child.const for child in children):
            return _fold(fn, type_)
        self.static_errors.extend(child.error for child in children if child.error is not None)
        return Code(fn, type_)

    def _cast(self, code: Code, target: Type) -> Code:
        """`code`, its value cast to `target` (an impossible cast is a cast error)."""
        if target is Type.ANY or code.type is target:
            return code
        if code.attribute is not None:
            return Code(_attribute(code.attribute, target), target)
        convert = CASTS[target]
        fn = code.fn

        def run(attributes: Attributes) -> Value:
            return convert(fn(attributes))

        if code.const:
            return _fold(run, target)
        return Code(run, target)

    def _not(self, operand: Code) -> Code:
        operand = self._cast(operand, Type.BOOLEAN)
        fn = _bools(operand)

        def run(attributes: Attributes) -> bool:
            return not fn(attributes)

        return self._finish([operand], run, Type.BOOLEAN)

    def _negate(self, node: Negate, operand: Code) -> Code:
        operand = self._cast(operand, Type.INTEGER)
        fn = _ints(operand)

        def run(attributes: Attributes) -> int:
            value = fn(attributes)
            if value == INT32_MIN:
                raise _overflow(-value, node)
            return -value

        return self._finish([operand], run, Type.INTEGER)

    def _logical(self, node: Logical, operands: list[Code]) -> Code:
        operands = [self._cast(operand, Type.BOOLEAN) for operand in operands]
        fns = tuple(_bools(operand) for operand in operands)
        run = _all(fns) if node.op == "AND" else _any(fns)
        return self._finish(operands, run, Type.BOOLEAN)

    def _binary(self, node: Binary, left: Code, right: Code) -> Code:
        op = node.op
        if op in ("=", "!=", "<>"):
            return self._equality(left, right, negated=op != "=")
        if op == "XOR":
            left, right = self._cast(left, Type.BOOLEAN), self._cast(right, Type.BOOLEAN)
            xor_left, xor_right = _bools(left), _bools(right)

            def xor(attributes: Attributes) -> bool:
                return xor_left(attributes) != xor_right(attributes)

            return self._finish([left, right], xor, Type.BOOLEAN)
        left, right = self._cast(left, Type.INTEGER), self._cast(right, Type.INTEGER)
        int_left, int_right = _ints(left), _ints(right)
        if op in _ORDERING:
            compare = _ORDERING[op]
            ordering: Callable[[Attributes], bool]
            if right.const and right.error is None and not left.const:
                bound = int_right(_EMPTY)

                def ordering(attributes: Attributes) -> bool:
                    return compare(int_left(attributes), bound)

            else:

                def ordering(attributes: Attributes) -> bool:
                    return compare(int_left(attributes), int_right(attributes))

            return self._finish([left, right], ordering, Type.BOOLEAN)
        compute = _ARITHMETIC[op]

        def arithmetic(attributes: Attributes) -> int:
            result = compute(int_left(attributes), int_right(attributes))
            if INT32_MIN <= result <= INT32_MAX:
                return result
            raise _overflow(result, node)

        return self._finish([left, right], arithmetic, Type.INTEGER)

    def _equality(self, left: Code, right: Code, *, negated: bool) -> Code:
        # `=` is ambiguous (spec 3.7): the right operand's type decides the left one's cast.
        run: Callable[[Attributes], bool]
        if right.type is Type.ANY:
            left_fn, right_fn = left.fn, right.fn

            def run(attributes: Attributes) -> bool:
                x = left_fn(attributes)
                y = right_fn(attributes)
                if type(x) is not type(y):
                    x = CASTS_BY_PYTHON_TYPE[type(y)](x)
                return (x != y) if negated else (x == y)

            return self._finish([left, right], run, Type.BOOLEAN)
        left = self._cast(left, right.type)
        left_fn = left.fn
        if right.const and right.error is None and not left.const:
            constant = right.fn(_EMPTY)

            if negated:

                def run(attributes: Attributes) -> bool:
                    return left_fn(attributes) != constant

            else:

                def run(attributes: Attributes) -> bool:
                    return left_fn(attributes) == constant

        else:
            right_fn = right.fn

            if negated:

                def run(attributes: Attributes) -> bool:
                    return left_fn(attributes) != right_fn(attributes)

            else:

                def run(attributes: Attributes) -> bool:
                    return left_fn(attributes) == right_fn(attributes)

        return self._finish([left, right], run, Type.BOOLEAN)

    def _like(self, node: Like, operand: Code) -> Code:
        operand = self._cast(operand, Type.STRING)
        fn = _strs(operand)
        matches = like_matcher(node.pattern)
        run: Callable[[Attributes], bool]
        if node.negated:

            def run(attributes: Attributes) -> bool:
                return not matches(fn(attributes))

        else:

            def run(attributes: Attributes) -> bool:
                return matches(fn(attributes))

        return self._finish([operand], run, Type.BOOLEAN)

    def _in(self, node: In, operand: Code, items: list[Code]) -> Code:
        # The left operand's type is the target of the elements' casts (spec 3.7).
        left_fn = operand.fn
        found, not_found = not node.negated, node.negated
        run: Callable[[Attributes], bool]
        if all(item.const and item.error is None for item in items):
            tables = _in_tables([item.fn(_EMPTY) for item in items])

            def run(attributes: Attributes) -> bool:
                x = left_fn(attributes)
                members, error = tables[type(x)]
                if x in members:
                    return found
                if error is not None:
                    raise Failure(error)
                return not_found

        else:
            item_fns = tuple(item.fn for item in items)

            def run(attributes: Attributes) -> bool:
                x = left_fn(attributes)
                convert = CASTS_BY_PYTHON_TYPE[type(x)]
                for item_fn in item_fns:
                    y = item_fn(attributes)
                    if type(y) is not type(x):
                        y = convert(y)
                    if x == y:
                        return found
                return not_found

        return self._finish([operand, *items], run, Type.BOOLEAN)

    def _call(self, node: Call, depth: int) -> Code:
        function = resolve(node.name, len(node.args))
        if function is None:
            error = CesqlError(
                "missingFunction", f"no function {node.name} taking {len(node.args)} argument(s)"
            )
            # spec 3.5: "the return value is false"; the arguments are never evaluated.
            return _failing(error, Type.BOOLEAN, False, node)
        args = [
            self._cast(self.compile(arg, depth), function.param_type(index))
            for index, arg in enumerate(node.args)
        ]
        if function.name in _CASTING_FUNCTIONS:
            return self._cast(args[0], function.returns)  # INT(x) is the implicit cast of x
        impl = function.impl
        run: Evaluator
        if len(args) == 1:
            only = args[0].fn

            def run(attributes: Attributes) -> Value:
                value = only(attributes)
                try:
                    return impl(value)
                except Failure as failure:
                    failure.origin = node
                    raise

        else:
            fns = tuple(arg.fn for arg in args)

            def run(attributes: Attributes) -> Value:
                values = [fn(attributes) for fn in fns]
                try:
                    return impl(*values)
                except Failure as failure:
                    failure.origin = node
                    raise

        return self._finish(args, run, function.returns)

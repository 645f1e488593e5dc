"""Parse CESQL tokens into a syntax tree, following the precedence of spec section 3.6.

Precedence, tightest first: function calls; unary `NOT` and `-`; `LIKE`; `EXISTS`; `IN`;
`*` `/` `%`; `+` `-`; comparisons; `AND` `OR` `XOR`. Equal precedence is evaluated left to
right. Two consequences differ from everyday SQL and from the Go/Java SDKs (whose ANTLR
grammars let a unary operator swallow the rest of the expression and make AND/OR/XOR
right-associative), so they are worth knowing when writing filters:

* `NOT a = b` is `(NOT a) = b`; write `NOT (a = b)`;
* `a OR b AND c` is `(a OR b) AND c`; parenthesise mixed AND/OR.

Syntax rules the grammar fixes and the parser enforces: integer literals are 32-bit (an
optional sign belongs to the literal, so `-2147483648` is valid); the LIKE pattern must be a
string literal; an IN set is never empty; a unary `+` only exists as the sign of a literal.
Chains of AND (or of OR) become one node with many operands, so long generated filters do not
make deep trees; nesting is bounded so that neither parsing nor evaluation can exhaust the stack.

Names are case-insensitive like keywords: attribute names are lower-cased (`EXISTS SOURCE`
addresses `source`, as in the TCK), function names upper-cased.
"""

from __future__ import annotations

import re
import typing
from dataclasses import dataclass
from typing import Final

from brokers.cesql.errors import CesqlParseError
from brokers.cesql.lexer import Token, TokenKind, tokenize

MAX_NESTING: Final = 64
"""Deepest nesting of parentheses, unary operators and calls `parse` accepts."""

_INT32_MAX: Final = 2**31 - 1
_ATTRIBUTE_NAME: Final = re.compile(r"[a-z0-9]+")
_FUNCTION_NAME: Final = re.compile(r"[A-Z][A-Z_]*")

_LOGICAL: Final = 1
_COMPARISON: Final = 2
_ADDITIVE: Final = 3
_MULTIPLICATIVE: Final = 4
_IN: Final = 5
_LIKE: Final = 6
_BINARY_PRECEDENCE: Final = {
    "AND": _LOGICAL,
    "OR": _LOGICAL,
    "XOR": _LOGICAL,
    "=": _COMPARISON,
    "!=": _COMPARISON,
    "<>": _COMPARISON,
    "<": _COMPARISON,
    "<=": _COMPARISON,
    ">": _COMPARISON,
    ">=": _COMPARISON,
    "+": _ADDITIVE,
    "-": _ADDITIVE,
    "*": _MULTIPLICATIVE,
    "/": _MULTIPLICATIVE,
    "%": _MULTIPLICATIVE,
}

# Nodes compare by identity (eq=False): the evaluator uses a node as the token that tells an
# error raised by the root operator itself from one raised below it.


@dataclass(frozen=True, slots=True, eq=False)
class Literal:
    value: str | int | bool
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Attribute:
    name: str
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Exists:
    name: str
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Not:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Negate:
    operand: Node
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Binary:
    op: str  # * / % + - = != <> < <= > >= XOR
    left: Node
    right: Node
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Logical:
    op: typing.Literal["AND", "OR"]
    operands: tuple[Node, ...]
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Like:
    operand: Node
    pattern: str
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class In:
    operand: Node
    items: tuple[Node, ...]
    negated: bool
    pos: int


@dataclass(frozen=True, slots=True, eq=False)
class Call:
    name: str  # upper-cased
    args: tuple[Node, ...]
    pos: int


Node = Literal | Attribute | Exists | Not | Negate | Binary | Logical | Like | In | Call


MAX_EXPRESSION_LENGTH: Final = 64 * 1024
"""Longest expression accepted (about 4,000 OR-ed comparisons, loaded in under a second): a
filter is compiled on every (re)load, and a 30,000-term chain would hold a load for seconds."""
MAX_LIKE_PATTERN: Final = 256
"""Longest LIKE pattern: with attributes bounded at ingress (8 KiB), a match stays linear and
small whatever the pattern's `_` wildcards."""


def parse_tree(text: str) -> Node:
    """The syntax tree of `text`. Raises CesqlParseError."""
    if len(text) > MAX_EXPRESSION_LENGTH:
        raise CesqlParseError(
            f"the expression is {len(text)} characters long, at most {MAX_EXPRESSION_LENGTH} "
            "are accepted (split it across triggers, or use IN)",
            MAX_EXPRESSION_LENGTH,
        )
    return _Parser(tokenize(text)).parse()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self._tokens = tokens
        self._index = 0
        self._depth = 0

    def parse(self) -> Node:
        node = self._expression(_LOGICAL)
        token = self._peek()
        if token.kind is not TokenKind.END:
            raise CesqlParseError(f"unexpected {token.describe()}", token.pos)
        return node

    # -- token access

    def _peek(self, ahead: int = 0) -> Token:
        return self._tokens[min(self._index + ahead, len(self._tokens) - 1)]

    def _next(self) -> Token:
        token = self._peek()
        self._index += 1
        return token

    def _expect(self, symbol: str) -> Token:
        token = self._next()
        if not token.is_symbol(symbol):
            raise CesqlParseError(f"expected '{symbol}', found {token.describe()}", token.pos)
        return token

    # -- grammar

    def _expression(self, min_precedence: int) -> Node:
        left = self._unary()
        while True:
            token = self._peek()
            negated = token.is_keyword("NOT")
            operator = self._peek(1) if negated else token
            if operator.is_keyword("LIKE") or operator.is_keyword("IN"):
                precedence = _LIKE if operator.text == "LIKE" else _IN
                if precedence < min_precedence:
                    return left
                self._index += 2 if negated else 1
                if operator.text == "LIKE":
                    left = self._like(left, negated, token.pos)
                else:
                    left = In(left, self._set(), negated, token.pos)
                continue
            if negated:
                raise CesqlParseError(
                    f"expected LIKE or IN after NOT, found {operator.describe()}", operator.pos
                )
            binding = (
                _BINARY_PRECEDENCE.get(token.text)
                if token.kind in (TokenKind.SYMBOL, TokenKind.KEYWORD)
                else None
            )
            if binding is None or binding < min_precedence:
                return left
            self._index += 1
            right = self._expression(binding + 1)
            left = _combine(token, left, right)

    def _unary(self) -> Node:
        self._depth += 1
        if self._depth > MAX_NESTING:
            raise CesqlParseError(
                f"expression nested more than {MAX_NESTING} levels deep", self._peek().pos
            )
        try:
            token = self._peek()
            if token.is_keyword("NOT"):
                self._index += 1
                return Not(self._unary(), token.pos)
            if token.is_symbol("-") or token.is_symbol("+"):
                number = self._peek(1)
                if number.kind is TokenKind.NUMBER:
                    self._index += 2
                    return Literal(_integer(number, negative=token.text == "-"), token.pos)
                if token.text == "+":
                    raise CesqlParseError(
                        "'+' is only allowed as the sign of an integer", token.pos
                    )
                self._index += 1
                return Negate(self._unary(), token.pos)
            return self._primary()
        finally:
            self._depth -= 1

    def _primary(self) -> Node:
        token = self._next()
        kind = token.kind
        if kind is TokenKind.NUMBER:
            return Literal(_integer(token, negative=False), token.pos)
        if kind is TokenKind.STRING:
            return Literal(token.value, token.pos)
        if token.is_keyword("TRUE") or token.is_keyword("FALSE"):
            return Literal(token.text == "TRUE", token.pos)
        if token.is_keyword("EXISTS"):
            return Exists(self._attribute_name(self._next()), token.pos)
        if token.is_symbol("("):
            node = self._expression(_LOGICAL)
            self._expect(")")
            return node
        if kind is TokenKind.NAME:
            if self._peek().is_symbol("("):
                return self._call(token)
            return Attribute(self._attribute_name(token), token.pos)
        raise CesqlParseError(f"unexpected {token.describe()}", token.pos)

    def _attribute_name(self, token: Token) -> str:
        name = token.text.lower()
        if token.kind is not TokenKind.NAME or not _ATTRIBUTE_NAME.fullmatch(name):
            raise CesqlParseError(
                f"expected an attribute name ([a-z0-9]+), found {token.describe()}", token.pos
            )
        return name

    def _call(self, name: Token) -> Call:
        function = name.text.upper()
        if not _FUNCTION_NAME.fullmatch(function):
            raise CesqlParseError(f"invalid function name {name.text!r}", name.pos)
        self._expect("(")
        args: list[Node] = []
        if not self._peek().is_symbol(")"):
            args.append(self._expression(_LOGICAL))
            while self._peek().is_symbol(","):
                self._index += 1
                args.append(self._expression(_LOGICAL))
        self._expect(")")
        return Call(function, tuple(args), name.pos)

    def _like(self, operand: Node, negated: bool, pos: int) -> Like:
        pattern = self._next()
        if pattern.kind is not TokenKind.STRING:
            raise CesqlParseError(
                f"the LIKE pattern must be a string literal, found {pattern.describe()}",
                pattern.pos,
            )
        if len(pattern.value) > MAX_LIKE_PATTERN:
            raise CesqlParseError(
                f"the LIKE pattern is {len(pattern.value)} characters long, at most "
                f"{MAX_LIKE_PATTERN} are accepted",
                pattern.pos,
            )
        return Like(operand, pattern.value, negated, pos)

    def _set(self) -> tuple[Node, ...]:
        self._expect("(")
        if self._peek().is_symbol(")"):
            raise CesqlParseError("an IN set needs at least one element", self._peek().pos)
        items = [self._expression(_LOGICAL)]
        while self._peek().is_symbol(","):
            self._index += 1
            items.append(self._expression(_LOGICAL))
        self._expect(")")
        return tuple(items)


def _combine(operator: Token, left: Node, right: Node) -> Node:
    if operator.text == "AND":
        return _chain("AND", left, right, operator.pos)
    if operator.text == "OR":
        return _chain("OR", left, right, operator.pos)
    return Binary(operator.text, left, right, operator.pos)


def _chain(op: typing.Literal["AND", "OR"], left: Node, right: Node, pos: int) -> Logical:
    # (a AND b) AND c evaluates exactly like a AND b AND c, short-circuits included.
    operands = left.operands if isinstance(left, Logical) and left.op == op else (left,)
    return Logical(op, (*operands, right), pos)


def _integer(token: Token, *, negative: bool) -> int:
    """The value of an integer literal; it must fit in 32 bits (spec 2.2)."""
    digits = token.text.lstrip("0") or "0"
    if len(digits) > 10:  # far out of range (and int() refuses over 4300 digits)
        raise CesqlParseError(f"integer literal {token.text[:20]}... is not 32-bit", token.pos)
    value = -int(digits) if negative else int(digits)
    if not -_INT32_MAX - 1 <= value <= _INT32_MAX:
        raise CesqlParseError(
            f"integer literal {'-' if negative else ''}{token.text} is not a 32-bit integer",
            token.pos,
        )
    return value

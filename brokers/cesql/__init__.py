"""CESQL v1, the CloudEvents SQL Expression Language, for `cesql` trigger filters.

Our own engine (stdlib only) because the filters run in the dispatcher for every event: an
expression is parsed and compiled once (`parse`) into closures, then evaluated cheaply
(`Expression.evaluate`, or `Expression.matches` for filter semantics). It passes the CESQL TCK.

    expr = parse("type = 'x' AND EXISTS subject")  # CesqlParseError(message, position)
    expr.evaluate({"type": "x", "subject": "s"})    # EvalResult(value=True, errors=())
    expr.matches({"type": "x"})                     # False: no subject

Modules: `lexer` (text to tokens), `parser` (tokens to a tree, spec precedence), `evaluator`
(tree to closures, error semantics), `functions` (types, casts, built-in functions), `errors`.
"""

from brokers.cesql.errors import CesqlError, CesqlParseError, ErrorKind
from brokers.cesql.evaluator import EvalResult, Expression, parse
from brokers.cesql.functions import Attributes, Value

__all__ = [
    "Attributes",
    "CesqlError",
    "CesqlParseError",
    "ErrorKind",
    "EvalResult",
    "Expression",
    "Value",
    "parse",
]

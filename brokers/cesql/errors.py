"""The two kinds of CESQL error, and why they have different shapes.

CESQL v1 (section 3.3) calls two different things "errors":

* a parse error means the text is not an expression at all. Nothing can be evaluated, so
  `parse()` raises `CesqlParseError` (a `ValueError`: config loaders treat it like any other
  invalid value and name the trigger that carries it);
* every other error happens while evaluating, and the language is total: an operator that
  fails still yields a value (the zero value of its type, or what the spec says) and the error
  travels *next to* that value. Those are plain values, `CesqlError`, collected in
  `EvalResult.errors`; nothing is raised to the caller.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

from brokers.errors import BrokerError

ErrorKind = Literal[
    "parse",
    "math",
    "cast",
    "missingFunction",
    "functionEvaluation",
    "missingAttribute",
    "generic",
]
"""The error types every CESQL engine must support (spec 3.3), spelled as in the TCK."""


@dataclass(frozen=True, slots=True)
class CesqlError:
    """One error met while evaluating an expression (spec 3.3). A value, never raised."""

    kind: ErrorKind
    message: str

    def __str__(self) -> str:
        return f"{self.kind}: {self.message}"


class CesqlParseError(BrokerError, ValueError):
    """The text is not a CESQL expression. `position` is the 0-based offset of the fault."""

    kind: Final = "parse"

    def __init__(self, message: str, position: int) -> None:
        super().__init__(f"{message} (at position {position})")
        self.message = message
        self.position = position

"""CESQL's LIKE (spec 3.4.3) without backtracking: a pattern cut at each `%` into
fixed-length segments, matched left to right; runs of `_` alone are a length check.
"""

from __future__ import annotations

import operator
import re
from collections.abc import Callable
from typing import cast


class _Segment:
    """A run of a LIKE pattern between two `%`: literal characters and `_` wildcards."""

    __slots__ = ("length", "literal", "regex", "wildcards")

    def __init__(self, chars: list[str | None]) -> None:  # None stands for `_`
        self.length = len(chars)
        self.wildcards = bool(chars) and all(c is None for c in chars)  # `___`: a length
        if None in chars:
            self.literal: str | None = None
            pattern = "".join("." if c is None else re.escape(c) for c in chars)
            self.regex: re.Pattern[str] | None = re.compile(pattern, re.DOTALL)
        else:
            self.literal = "".join(cast(list[str], chars))
            self.regex = None

    def at(self, text: str, pos: int) -> bool:
        if self.wildcards:
            return len(text) - pos >= self.length
        if self.regex is None:
            return text.startswith(cast(str, self.literal), pos)
        return self.regex.match(text, pos) is not None

    def find(self, text: str, start: int, end: int) -> int:
        if self.wildcards:
            return start if end - start >= self.length else -1
        if self.regex is None:
            return text.find(cast(str, self.literal), start, end)
        found = self.regex.search(text, start, end)
        return -1 if found is None else found.start()


def like_matcher(pattern: str) -> Callable[[str], bool]:
    """A function telling whether a string matches the LIKE `pattern` (spec 3.4.3).

    `%` is any run of characters, `_` one character, `\\%` and `\\_` those characters
    themselves; a backslash before anything else is a backslash. Matching is case-sensitive
    and never backtracks: the pattern is cut at each `%` into fixed-length segments, the first
    anchored at the start, the last at the end, and each one between them matched at its
    leftmost place, which is linear in the input for literal segments.
    """
    segments: list[list[str | None]] = [[]]
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and pattern[i + 1 : i + 2] in ("%", "_"):
            segments[-1].append(pattern[i + 1])
            i += 2
            continue
        if char == "%":
            segments.append([])
        else:
            segments[-1].append(None if char == "_" else char)
        i += 1
    parts = [_Segment(chars) for chars in segments]
    if len(parts) == 1:
        return _exact(parts[0])
    first, *middle, last = parts
    if first.literal is not None and last.literal is not None:
        return _anchored(first.literal, [m for m in middle if m.length], last.literal)
    return _general(first, middle, last)


def _exact(segment: _Segment) -> Callable[[str], bool]:
    if segment.literal is not None:
        literal = segment.literal
        return literal.__eq__
    regex = segment.regex
    assert regex is not None
    return lambda text: regex.fullmatch(text) is not None


def _anchored(prefix: str, middle: list[_Segment], suffix: str) -> Callable[[str], bool]:
    if not middle:
        if not suffix:
            return operator.methodcaller("startswith", prefix)
        if not prefix:
            return operator.methodcaller("endswith", suffix)
        minimum = len(prefix) + len(suffix)

        def matches(text: str) -> bool:
            return len(text) >= minimum and text.startswith(prefix) and text.endswith(suffix)

        return matches
    if not prefix and not suffix and len(middle) == 1 and middle[0].literal is not None:
        infix = middle[0].literal
        return lambda text: infix in text
    return _general(_Segment(list(prefix)), middle, _Segment(list(suffix)))


def _general(first: _Segment, middle: list[_Segment], last: _Segment) -> Callable[[str], bool]:
    minimum = first.length + sum(m.length for m in middle) + last.length

    def matches(text: str) -> bool:
        if len(text) < minimum or not first.at(text, 0):
            return False
        end = len(text) - last.length
        if not last.at(text, end):
            return False
        pos = first.length
        for segment in middle:
            found = segment.find(text, pos, end)
            if found < 0:
                return False
            pos = found + segment.length
        return True

    return matches

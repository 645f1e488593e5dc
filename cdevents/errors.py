"""Errors of the `cdevents` package.

One root (`CDEventsError`) so the gateway maps the family to HTTP in one place. Both leaves
name the place at fault, because every 400 must say what was wrong: `ValidationError` a JSON
path inside a CDEvent (`$.subject.content.outcome`), `PayloadError` a field of the CI system's
webhook (`pull_request.number`) or header (`X-GitHub-Delivery`).
"""

from __future__ import annotations

from dataclasses import dataclass


class CDEventsError(Exception):
    """Root of every error raised by `cdevents`."""


@dataclass(frozen=True, slots=True)
class Problem:
    """One reason a document is not a valid CDEvent, at a JSON path such as `$.context.id`."""

    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"


class ValidationError(CDEventsError):
    """A document is not a valid CDEvent; `problems` lists every reason, first one in `str()`."""

    def __init__(self, problems: list[Problem] | tuple[Problem, ...]) -> None:
        if not problems:
            raise ValueError("a ValidationError needs at least one problem")
        self.problems = tuple(problems)
        more = len(self.problems) - 1
        suffix = f" (and {more} more)" if more else ""
        super().__init__(f"{self.problems[0]}{suffix}")

    @property
    def path(self) -> str:
        """The JSON path of the first problem."""
        return self.problems[0].path


class PayloadError(CDEventsError):
    """A webhook payload does not parse or lacks a field a translation needs."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field

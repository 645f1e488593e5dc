"""`cemesh cesql EXPR [--event FILE]`: evaluate a CESQL expression the way a trigger would.

Users debug `cesql` filters with it: it prints what the engine computed and every error it met,
as JSON (`{"result": ..., "errors": [{"kind": ..., "message": ...}]}`), so that "why did my
trigger not fire" has an answer without deploying anything. A trigger matches only when
`result` is `true` and `errors` is empty.

Exit status: 0 when the expression was evaluated (with errors or not: evaluation errors are part
of the answer); 2 with one line on stderr when the expression does not parse or the event file
is unusable.

The module does not import gateway.cli, which registers it through `add_commands`, and also
runs as `python -m gateway.cli.cesql`.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

from brokers.cesql import CesqlParseError, parse
from brokers.codec import from_json_object
from brokers.errors import InvalidEvent
from brokers.event import Event
from gateway.cli import errors as cli_errors
from gateway.cli.errors import USAGE, CLIError

DEFAULT_EVENT: Final[dict[str, Any]] = {
    "specversion": "1.0",
    "id": "00000000-0000-0000-0000-000000000000",
    "source": "/cemesh/cli",
    "type": "dev.cemesh.cli.example",
}
"""The event used without --event: the required attributes only, so anything else is missing."""


def add_commands(subparsers: Any) -> None:
    """Register `cesql` on the `cemesh` command line (an argparse subparsers action)."""
    parser = subparsers.add_parser(
        "cesql",
        help="evaluate a CESQL expression against an event, as a trigger filter would",
        description=(
            "Print {result, errors} as JSON. Exit 0 when evaluated (errors included), "
            "2 when the expression does not parse."
        ),
    )
    parser.add_argument("expression", metavar="EXPR", help="a CESQL v1 expression")
    parser.add_argument(
        "--event",
        metavar="FILE",
        help="a structured-mode JSON CloudEvent ('-' for stdin); default: a minimal event "
        f"(type {DEFAULT_EVENT['type']}, source {DEFAULT_EVENT['source']})",
    )
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """The `cesql` command: print the evaluation as JSON; returns the exit status."""
    try:
        expression = parse(args.expression)
    except CesqlParseError as exc:
        raise _unusable(f"parse error: {exc}") from None
    event = _load_event(args.event)
    result = expression.evaluate(event.attributes)
    errors = [{"kind": error.kind, "message": error.message} for error in result.errors]
    print(json.dumps({"result": result.value, "errors": errors}))
    return 0


def _unusable(message: str) -> CLIError:
    """The command cannot evaluate anything: one line, `cemesh cesql: ...`, exit 2."""
    return CLIError(message, USAGE, command="cesql")


def _load_event(path: str | None) -> Event:
    if path is None:
        return from_json_object(DEFAULT_EVENT)
    try:
        text = sys.stdin.read() if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _unusable(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from None
    try:
        obj = json.loads(text)
    except ValueError as exc:
        raise _unusable(f"{path} is not JSON: {exc}") from None
    try:
        return from_json_object(obj)
    except InvalidEvent as exc:
        raise _unusable(f"{path} is not a valid CloudEvent: {exc}") from None


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cemesh")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cesql", *(sys.argv[1:] if argv is None else argv)])
    return cli_errors.run(lambda: run(args))


if __name__ == "__main__":
    sys.exit(main())

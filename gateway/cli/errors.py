"""The command line's one error: a message for the user and the exit status it ends with.

Why one type: every `cemesh` command ends an error the same way (one line on stderr, a status
scripts can test), so commands raise `CLIError` and only `main` prints and exits. Errors of
the layers below (a bad config file, an invalid event, a broker that cannot be reached) are
translated once, by `translated()`, rather than caught in each command.

Exit statuses: `USAGE` (2) for bad input or configuration, `FAILED` (1) when the mesh refused
or could not be reached (the admin commands), as the README documents.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Final

from brokers.errors import BrokerError

USAGE: Final = 2
FAILED: Final = 1
INTERRUPTED: Final = 130


class CLIError(Exception):
    """One line for the user (`cemesh[ COMMAND]: MESSAGE`) and the exit status."""

    def __init__(self, message: str, exit_code: int = USAGE, *, command: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code
        self.command = command

    def line(self) -> str:
        prog = f"cemesh {self.command}" if self.command else "cemesh"
        return f"{prog}: {self.message}"


@contextmanager
def translated() -> Iterator[None]:
    """Errors of `brokers` (config, events, brokers, state) as a `CLIError`, exit 2."""
    try:
        yield
    except BrokerError as exc:
        raise CLIError(str(exc), USAGE) from exc


def run(command: Callable[[], int]) -> int:
    """Run a command; a `CLIError` becomes its line on stderr and its exit status."""
    try:
        with translated():
            return command()
    except CLIError as exc:
        print(exc.line(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED

"""`Settings` from the command line's flags: shared by `up`, `render` and `topology`.

Its own module so the sub-command modules need not import `gateway.cli`, which imports them.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Final

from gateway.cli.errors import CLIError

if TYPE_CHECKING:
    from gateway.settings import Settings

FLAGS: Final = (
    "config",
    "functions",
    "host",
    "port",
    "broker_url",
    "state_url",
    "log_format",
    "tokens_file",
    "allow_open",
)
"""The `argparse` destinations that override a setting of the same name when given."""


def settings_from(args: argparse.Namespace) -> Settings:
    """The settings (environment, then these flags); an invalid one is a `CLIError`."""
    from pydantic import ValidationError

    from gateway.settings import Settings

    overrides = {key: value for key in FLAGS if (value := getattr(args, key, None)) is not None}
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise CLIError(
            f"invalid setting {'.'.join(map(str, first['loc']))}: {first['msg']}"
        ) from None

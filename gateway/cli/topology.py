"""`cemesh topology prune`: delete RabbitMQ queues of triggers no longer in the config.

Start-up reconciliation never deletes anything (a removed trigger's queue may still hold
events); this command lists what the config no longer uses and deletes it only with `--yes`.
"""

from __future__ import annotations

import argparse
import asyncio
from pathlib import Path
from typing import Any


def add_commands(sub: Any) -> None:
    topology = sub.add_parser("topology", help="RabbitMQ topology")
    topology_sub = topology.add_subparsers(dest="topology_command", required=True)
    prune = topology_sub.add_parser("prune", help="list, then delete, queues no trigger uses")
    prune.add_argument("--config", type=Path)
    prune.add_argument("--functions", type=Path)
    prune.add_argument(
        "--broker", dest="broker_url", help="amqp://... (default $CEMESH_BROKER_URL)"
    )
    prune.add_argument("--yes", action="store_true", help="delete what is listed")
    prune.set_defaults(run=cmd_prune)


def cmd_prune(args: argparse.Namespace) -> int:
    from gateway.cli.errors import CLIError
    from gateway.cli.settings import settings_from
    from gateway.mesh import load_mesh, make_broker

    settings = settings_from(args)
    if not settings.broker_url.startswith(("amqp://", "amqps://")):
        raise CLIError("topology prune needs a RabbitMQ broker (--broker amqp://...)")
    loaded = load_mesh(settings)
    broker: Any = make_broker(settings.broker_url, settings.broker_prefix)

    async def run() -> int:
        names: list[str] = await broker.plan_prune(loaded.config)
        if not names:
            print("nothing to prune")
            return 0
        for name in names:
            print(f"unused: {name}")
        if not args.yes:
            print(f"{len(names)} unused; run again with --yes to delete them")
            return 0
        deleted: int = await broker.prune(names)
        print(f"deleted {deleted}")
        return 0

    return asyncio.run(run())  # a BrokerError ends as one line, exit 2 (cli_errors)

"""`cemesh render`: write the Kubernetes manifests of the mesh (see gateway/deploy/render.py).

Imports of the mesh and renderer wait for the command to run: `cemesh send` stays light.

A trigger that eventing-rabbitmq cannot filter as the mesh does is a deployment that would
silently deliver the wrong events, so the `knative` target refuses it (exit 2, one line per
trigger naming the file and the trigger) unless `--allow-degraded` says the user accepts it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def add_commands(subparsers: Any) -> None:
    """Register `render` on the `cemesh` sub-command parser."""
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "render",
        help="write Kubernetes manifests for the mesh (Knative RabbitMQ broker or standalone)",
        description=(
            "knative: Knative Brokers of class RabbitMQBroker, their RabbitmqBrokerConfig and "
            "RabbitmqCluster, and Triggers from config/ and func.yaml subscriptions. "
            "standalone: the cemesh gateway/dispatcher as a Knative Service with its ConfigMap, "
            "a RabbitmqCluster, Redis and RBAC."
        ),
    )
    parser.add_argument("--target", required=True, choices=["knative", "standalone"])
    parser.add_argument("--config", type=Path, help="directory of Knative YAML (default: config)")
    parser.add_argument(
        "--functions", type=Path, help="directory of functions (default: functions)"
    )
    parser.add_argument(
        "--allow-degraded",
        action="store_true",
        help="knative: render triggers eventing-rabbitmq can only filter on their exact part",
    )
    parser.add_argument(
        "--namespace",
        help="namespace of the cluster-side objects (default: the mesh's default namespace)",
    )
    parser.add_argument(
        "--image",
        default=None,
        help="standalone: the image `func build` made from the repository root "
        "(default: cemesh:latest)",
    )
    parser.add_argument("-o", "--output", type=Path, required=True, help="directory to write")
    parser.set_defaults(run=cmd_render)


def cmd_render(args: argparse.Namespace) -> int:
    from gateway.cli.settings import settings_from
    from gateway.deploy.manifests import DEFAULT_IMAGE, RenderOptions
    from gateway.deploy.render import render, write
    from gateway.mesh import load_mesh

    settings = settings_from(args)
    loaded = load_mesh(settings)
    options = RenderOptions(
        namespace=args.namespace or settings.namespace, image=args.image or DEFAULT_IMAGE
    )
    rendered = render(args.target, loaded, options)
    if rendered.degraded and not args.allow_degraded:
        for item in rendered.degraded:
            print(f"cemesh: {item.line()} (refused: --allow-degraded accepts it)", file=sys.stderr)
        return 2
    for item in rendered.degraded:
        print(f"cemesh: degraded: {item.line()}", file=sys.stderr)
    paths = write(rendered, args.output)
    count = len(rendered.objects())
    print(f"wrote {count} objects for --target {args.target} to {args.output}:")
    for path in paths:
        print(f"  {path}")
    print(f"apply with: kubectl apply -k {args.output}")
    return 0

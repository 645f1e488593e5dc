"""The `cemesh` command line.

Errors end with one line on stderr and a non-zero exit (2 for bad input or configuration; the
admin commands use 1 when the mesh refused or could not be reached): commands raise `CLIError`
(gateway/cli/errors.py) and `main` alone prints it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Sequence
from pathlib import Path

from brokers.codec import from_http, to_binary, to_structured
from brokers.errors import InvalidEvent
from brokers.event import Event
from gateway.cli import cesql as cli_cesql
from gateway.cli import errors as cli_errors
from gateway.cli.admin import add_commands as add_admin_commands
from gateway.cli.errors import CLIError
from gateway.cli.render import add_commands as add_render_commands
from gateway.cli.settings import settings_from
from gateway.cli.topology import add_commands as add_topology_commands


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    return cli_errors.run(lambda: int(args.run(args)))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cemesh", description="CloudEvents integration mesh")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the mesh (gateway, broker, dispatcher, functions)")
    up.add_argument("--config", type=Path, help="directory of Knative YAML (default: config)")
    up.add_argument("--functions", type=Path, help="directory of functions (default: functions)")
    up.add_argument("--host", help="bind address (default: 127.0.0.1)")
    up.add_argument("--port", type=int, help="port (default: 8080)")
    up.add_argument(
        "--broker", dest="broker_url", help="memory:// or amqp://... (default memory://)"
    )
    up.add_argument(
        "--state", dest="state_url", help="memory:// or redis://... (default memory://)"
    )
    up.add_argument("--log-format", choices=["text", "json"], help="log format (default text)")
    up.add_argument("--tokens-file", type=Path, help="YAML of hashed bearer tokens")
    up.add_argument(
        "--allow-open",
        action="store_true",
        default=None,
        help="serve without tokens on a non-loopback address (anyone can publish)",
    )
    up.set_defaults(run=cmd_up)

    token = sub.add_parser("token", help="bearer tokens")
    token_sub = token.add_subparsers(dest="token_command", required=True)
    new = token_sub.add_parser("new", help="print a new token and its tokens-file entry")
    new.add_argument("--name", required=True)
    new.add_argument("--namespace", action="append", default=[], dest="namespaces")
    new.set_defaults(run=cmd_token_new)

    send = sub.add_parser("send", help="send one CloudEvent and print the answer")
    send.add_argument("url")
    send.add_argument("--type", required=True)
    send.add_argument("--source", required=True)
    send.add_argument("--id", default=None)
    send.add_argument("--subject", default=None)
    send.add_argument("--data", default=None, help="JSON text, or @FILE")
    send.add_argument("--datacontenttype", default=None)
    send.add_argument("--ext", action="append", default=[], metavar="NAME=VALUE")
    send.add_argument("--mode", choices=["binary", "structured"], default="binary")
    send.add_argument("--timeout", type=float, default=30.0)
    send.add_argument(
        "--token",
        default=os.environ.get("CEMESH_TOKEN"),
        help="bearer token (default: $CEMESH_TOKEN)",
    )
    send.set_defaults(run=cmd_send)
    cli_cesql.add_commands(sub)
    add_admin_commands(sub)  # state hook (issue 5): replay, events, dlq
    add_render_commands(sub)
    add_topology_commands(sub)
    return parser


def cmd_up(args: argparse.Namespace) -> int:
    from gateway.http.auth import load_tokens
    from gateway.http.server import serve, summary
    from gateway.mesh import load_mesh
    from gateway.observability.logs import configure

    settings = settings_from(args)
    configure(settings.log_level, settings.log_format)
    loaded = load_mesh(settings)
    tokens = load_tokens(settings.tokens_file)
    if not tokens and not settings.allow_open and not is_loopback(settings.host):
        raise CLIError(
            f"refusing to serve {settings.host} without tokens: set --tokens-file, "
            "or --allow-open to let anyone publish"
        )

    def announce() -> None:
        print(summary(settings, loaded), flush=True)
        if not tokens:
            print(
                f"cemesh: open mode, no tokens: anyone who reaches {settings.host} can publish",
                flush=True,
            )

    asyncio.run(serve(settings, loaded, announce))
    return 0


def is_loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def cmd_token_new(args: argparse.Namespace) -> int:
    from gateway.http.auth import new_token

    token, digest = new_token()
    namespaces = args.namespaces or ["default"]
    print(f"token: {token}")
    print("tokens-file entry (the token itself is not stored):")
    print(f"  - name: {args.name}\n    sha256: {digest}\n    namespaces: {namespaces}")
    return 0


def build_event(args: argparse.Namespace) -> Event:
    attributes: dict[str, object] = {
        "specversion": "1.0",
        "id": args.id or str(uuid.uuid4()),
        "source": args.source,
        "type": args.type,
    }
    if args.subject:
        attributes["subject"] = args.subject
    for item in args.ext:
        name, sep, value = item.partition("=")
        if not sep:
            raise CLIError(f"--ext takes NAME=VALUE, got '{item}'")
        attributes[name] = value
    data: bytes | None = None
    if args.data is not None:
        text = args.data
        if text.startswith("@"):
            try:
                text = Path(text[1:]).read_text("utf-8")
            except OSError as exc:
                raise CLIError(f"cannot read {text[1:]}: {exc.strerror}") from None
        content_type = args.datacontenttype or "application/json"
        if content_type == "application/json":
            try:
                json.loads(text)
            except ValueError as exc:
                raise CLIError(f"--data is not valid JSON: {exc}") from None
        attributes["datacontenttype"] = content_type
        data = text.encode("utf-8")
    return Event.create(attributes, data)


def cmd_send(args: argparse.Namespace) -> int:
    event = build_event(args)
    headers, body = to_binary(event) if args.mode == "binary" else to_structured(event)
    request_headers = dict(headers)
    if args.token:
        request_headers["Authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(args.url, data=body, method="POST", headers=request_headers)
    try:
        with urllib.request.urlopen(request, timeout=args.timeout) as response:
            status, reply_headers, payload = (
                response.status,
                dict(response.headers),
                response.read(),
            )
    except urllib.error.HTTPError as exc:
        status, reply_headers, payload = exc.code, dict(exc.headers), exc.read()
    except (urllib.error.URLError, OSError) as exc:
        raise CLIError(f"cannot reach {args.url}: {getattr(exc, 'reason', exc)}") from None
    print(f"{status} {event.id}")
    lowered = {k.lower(): v for k, v in reply_headers.items()}
    if payload:
        try:
            _, events = from_http(lowered, payload)
            for reply in events:
                print(json.dumps(reply.to_dict(), indent=2))
        except InvalidEvent:
            print(payload.decode("utf-8", "replace"))
    return 0 if 200 <= status < 300 else 1


if __name__ == "__main__":
    sys.exit(main())

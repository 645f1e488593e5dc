"""`cemesh replay`, `cemesh events` and `cemesh dlq ...`: clients of the admin API.

Why over HTTP (`--url`, default http://127.0.0.1:8080) rather than straight to Redis or
RabbitMQ: a running mesh is the only one that knows its config and, on the embedded default,
the only one that holds the state; going through the gateway also applies its admin tokens.
Standard library only, so the commands start fast. Each prints what it did; errors are one line
on stderr, exit 2 for bad input, 1 when the mesh refused or could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from gateway.cli import errors as cli_errors
from gateway.cli.errors import FAILED, USAGE, CLIError

DEFAULT_URL: Final = "http://127.0.0.1:8080"
_RELATIVE: Final = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)", re.IGNORECASE)
_ISO_DURATION: Final = re.compile(
    r"P(?:(\d+(?:\.\d+)?)D)?(?:T(?:(\d+(?:\.\d+)?)H)?(?:(\d+(?:\.\d+)?)M)?(?:(\d+(?:\.\d+)?)S)?)?",
    re.IGNORECASE,
)
_UNIT: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400}


Command = Callable[[argparse.Namespace], int]


def add_commands(subparsers: Any) -> None:
    """Register `replay`, `events` and `dlq` on the `cemesh` parser's subparsers."""
    replay = subparsers.add_parser(
        "replay", help="re-publish logged events of a broker (all triggers, or one)"
    )
    _common(replay)
    replay.add_argument("--broker", required=True, metavar="NS/NAME")
    start = replay.add_mutually_exclusive_group()
    start.add_argument(
        "--since", metavar="TIME", help="RFC 3339 time, or an age such as 10m, 2h, PT30M"
    )
    start.add_argument("--from", dest="from_id", metavar="ID", help="first log id (inclusive)")
    replay.add_argument("--until", metavar="TIME", help="RFC 3339 time, or an age")
    replay.add_argument("--type", help="only events of this type")
    replay.add_argument("--trigger", metavar="NAME", help="deliver to this trigger only")
    replay.add_argument("--limit", type=int, help="at most this many events")
    replay.add_argument("--dry-run", action="store_true", help="count only, publish nothing")
    replay.set_defaults(run=cmd_replay)

    events = subparsers.add_parser("events", help="show recent events of a broker, one a line")
    _common(events)
    events.add_argument("--broker", required=True, metavar="NS/NAME")
    events.add_argument("--limit", type=int, default=20, help="how many recent events (20)")
    events.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    events.set_defaults(run=cmd_events)

    dlq = subparsers.add_parser("dlq", help="dead letters of a trigger: list, show, replay, purge")
    actions = dlq.add_subparsers(dest="dlq_command", required=True)
    for action, text in (
        ("list", "list dead letters"),
        ("show", "print dead letters in full"),
        ("replay", "deliver dead letters again (to this trigger only)"),
        ("purge", "delete dead letters"),
    ):
        parser = actions.add_parser(action, help=text + " (all when no ID is given)")
        _common(parser)
        parser.add_argument("--trigger", required=True, metavar="NS/NAME")
        parser.add_argument("ids", nargs="*", metavar="ID")
        parser.set_defaults(run=DLQ_COMMANDS[action])


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--url",
        default=os.environ.get("CEMESH_URL", DEFAULT_URL),
        help=f"the gateway (default: $CEMESH_URL or {DEFAULT_URL})",
    )
    parser.add_argument(
        "--token",
        default=os.environ.get("CEMESH_TOKEN"),
        help="admin bearer token (default: $CEMESH_TOKEN)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")


# commands


def cmd_replay(args: argparse.Namespace) -> int:
    namespace, name = owner(args.broker, "--broker")
    body: dict[str, Any] = {"dry_run": args.dry_run}
    if args.since:
        body["since"] = parse_time(args.since, "--since")
    if args.from_id:
        body["from"] = args.from_id
    if args.until:
        body["until"] = parse_time(args.until, "--until")
    if args.type:
        body["type"] = args.type
    if args.trigger:
        body["trigger"] = args.trigger
    if args.limit is not None:
        body["limit"] = args.limit
    result = call(args, "POST", f"/admin/brokers/{_q(namespace)}/{_q(name)}/replay", body)
    to = f"trigger {result['trigger']}" if result["trigger"] else "all triggers"
    span = f" ({result['first']} .. {result['last']})" if result["matched"] else ""
    if result["dry_run"]:
        print(f"would replay {_n(result['matched'], 'event')} of {result['broker']} to {to}{span}")
    else:
        print(
            f"replayed {_n(result['published'], 'event')} of {result['broker']} to {to}{span}"
            f" as {result['replay_id']}"
        )
    return 0


def cmd_events(args: argparse.Namespace) -> int:
    namespace, name = owner(args.broker, "--broker")
    path = f"/admin/brokers/{_q(namespace)}/{_q(name)}/events"
    page = call(args, "GET", path + "?" + urllib.parse.urlencode({"limit": args.limit}))
    for item in page["events"]:
        print(event_line(item), flush=True)
    last = page["last"] or "0-0"
    while args.follow:
        query = urllib.parse.urlencode({"after": last, "wait": 10, "limit": 1000})
        page = call(args, "GET", f"{path}?{query}", timeout=args.timeout + 10)
        for item in page["events"]:
            print(event_line(item), flush=True)
        last = page["last"] or last
    return 0


def cmd_dlq_list(args: argparse.Namespace) -> int:
    letters = _dead_letters(args)
    for letter in letters:
        event, error = letter["event"], letter["error"]
        status = f"HTTP {error['code']}" if error.get("code") else "no response"
        print(
            f"{letter['id']}  {event['type']}  {event['source']}  {event['id']}  {status}  "
            f"{error.get('destination') or '-'}"
        )
    print(f"{_n(len(letters), 'dead letter')} for {_trigger(args)}")
    return 0


def cmd_dlq_show(args: argparse.Namespace) -> int:
    letters = _dead_letters(args)
    for letter in letters:
        print(json.dumps(letter, indent=2, ensure_ascii=False))
    if not letters:
        print(f"no dead letters for {_trigger(args)}")
    return 0


def cmd_dlq_replay(args: argparse.Namespace) -> int:
    namespace, name = owner(args.trigger, "--trigger")
    result = call(
        args, "POST", f"/admin/triggers/{_q(namespace)}/{_q(name)}/dlq/replay", {"ids": args.ids}
    )
    replayed = result["replayed"]
    print(
        f"replayed {_n(len(replayed), 'dead letter')} of {result['trigger']} to it"
        + (f": {' '.join(replayed)}" if replayed else "")
    )
    if result["missing"]:
        print(f"not found: {' '.join(result['missing'])}", file=sys.stderr)
        return 1
    return 0


def cmd_dlq_purge(args: argparse.Namespace) -> int:
    namespace, name = owner(args.trigger, "--trigger")
    query = urllib.parse.urlencode([("id", i) for i in args.ids])
    path = f"/admin/triggers/{_q(namespace)}/{_q(name)}/dlq" + (f"?{query}" if query else "")
    result = call(args, "DELETE", path)
    print(f"purged {_n(result['purged'], 'dead letter')} of {result['trigger']}")
    return 0


DLQ_COMMANDS: Final[dict[str, Command]] = {
    "list": cmd_dlq_list,
    "show": cmd_dlq_show,
    "replay": cmd_dlq_replay,
    "purge": cmd_dlq_purge,
}


def _dead_letters(args: argparse.Namespace) -> list[dict[str, Any]]:
    namespace, name = owner(args.trigger, "--trigger")
    base = f"/admin/triggers/{_q(namespace)}/{_q(name)}/dlq"
    if not args.ids:
        letters: list[dict[str, Any]] = call(args, "GET", base)["dead_letters"]
        return letters
    return [call(args, "GET", f"{base}/{_q(i)}") for i in args.ids]


def _trigger(args: argparse.Namespace) -> str:
    return "/".join(owner(args.trigger, "--trigger"))


# helpers


def event_line(item: dict[str, Any]) -> str:
    """`<log id>  <time>  <type>  <source>  <id>[  subject=<subject>]`."""
    event = item["event"]
    line = f"{item['id']}  {item['time']}  {event['type']}  {event['source']}  {event['id']}"
    return line + (f"  subject={event['subject']}" if event.get("subject") else "")


def owner(text: str, flag: str) -> tuple[str, str]:
    """`NS/NAME` (or `NAME`, in `default`) as a pair."""
    namespace, sep, name = text.partition("/")
    if not sep:
        namespace, name = "default", text
    if not namespace or not name or "/" in name:
        raise CLIError(f"{flag} takes NS/NAME, got '{text}'", USAGE)
    return namespace, name


def parse_time(text: str, flag: str, now: datetime | None = None) -> str:
    """An RFC 3339 time, or an age (`10m`, `2h`, `1d`, `PT30M`) before now; as RFC 3339 UTC."""
    now = now or datetime.now(UTC)
    value = text.strip()
    if match := _RELATIVE.fullmatch(value):
        when = now - timedelta(seconds=float(match.group(1)) * _UNIT[match.group(2).lower()])
    elif (
        value.upper().startswith("P")
        and (iso := _ISO_DURATION.fullmatch(value))
        and any(iso.groups())
    ):
        d, h, m, s = (float(g or 0) for g in iso.groups())
        when = now - timedelta(days=d, hours=h, minutes=m, seconds=s)
    else:
        try:
            when = datetime.fromisoformat(value)
        except ValueError:
            raise CLIError(
                f"{flag}: '{text}' is neither an RFC 3339 time nor an age such as 10m or PT1H",
                USAGE,
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    timeout: float | None = None,
) -> Any:
    """One admin API request: the decoded JSON answer, or CLIError (exit 1) saying why not."""
    url = args.url.rstrip("/") + path
    headers = {"accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["content-type"] = "application/json"
    if args.token:
        headers["authorization"] = f"Bearer {args.token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout or args.timeout) as response:
            return json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        raise CLIError(_problem_line(exc.code, exc.read()), FAILED) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise CLIError(f"cannot reach {args.url}: {reason}", FAILED) from None
    except ValueError:
        raise CLIError(f"{url} did not answer JSON; is it a cemesh gateway?", FAILED) from None


def _problem_line(status: int, payload: bytes) -> str:
    try:
        problem = json.loads(payload)
        detail = problem.get("detail") or problem.get("title")
    except (ValueError, AttributeError):
        detail = None
    return f"{detail or payload.decode('utf-8', 'replace').strip() or 'error'} (HTTP {status})"


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the admin commands alone (tests, or without the rest of the CLI)."""
    parser = argparse.ArgumentParser(prog="cemesh")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return cli_errors.run(lambda: int(args.run(args)))

"""`cemesh cesql EXPR [--event FILE]`: what a user debugging a filter sees (output, exit)."""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from gateway.cli import cesql as cli_cesql
from tests.conftest import REPO


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    status = cli_cesql.main(list(argv))
    out, err = capsys.readouterr()
    return status, json.loads(out) if out else None, err


def _event_file(tmp_path: Path, **attributes: Any) -> str:
    event = {"specversion": "1.0", "id": "1", "source": "/orders", "type": "order.created"}
    event.update(attributes)
    path = tmp_path / "event.json"
    path.write_text(json.dumps(event), "utf-8")
    return str(path)


def test_true_on_the_default_event(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "type = 'dev.cemesh.cli.example' AND specversion = '1.0'")
    assert (status, out, err) == (0, {"result": True, "errors": []}, "")


def test_values_of_every_type(capsys: pytest.CaptureFixture[str]) -> None:
    assert _run(capsys, "1 + 2")[1] == {"result": 3, "errors": []}
    assert _run(capsys, "UPPER(source)")[1] == {"result": "/CEMESH/CLI", "errors": []}
    assert _run(capsys, "EXISTS subject")[1] == {"result": False, "errors": []}


def test_evaluation_errors_are_listed_with_their_kind_and_exit_0(
    capsys: pytest.CaptureFixture[str],
) -> None:
    status, out, _ = _run(capsys, "subject = 'x'")
    assert status == 0
    assert out["result"] is False
    assert [e["kind"] for e in out["errors"]] == ["missingAttribute"]
    assert "subject" in out["errors"][0]["message"]
    status, out, _ = _run(capsys, "1 / 0")
    assert (status, out["result"], out["errors"][0]["kind"]) == (0, 0, "math")
    _, out, _ = _run(capsys, "NOSUCH(1)")
    assert out["errors"][0]["kind"] == "missingFunction"
    _, out, _ = _run(capsys, "INT('abc')")
    assert out["errors"][0]["kind"] == "cast"


def test_parse_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = _run(capsys, "type = ")
    assert status == 2
    assert out is None
    assert err.count("\n") == 1
    assert err.startswith("cemesh cesql: parse error: ")
    assert "position 7" in err


def test_event_file(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    path = _event_file(tmp_path, priority=5, urgent=True, subject="o-1")
    status, out, _ = _run(capsys, "priority > 3 AND urgent AND subject LIKE 'o-%'", "--event", path)
    assert (status, out) == (0, {"result": True, "errors": []})
    assert _run(capsys, "type", "--event", path)[1] == {"result": "order.created", "errors": []}


def test_event_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(Path(_event_file(tmp_path)).read_text()))
    assert _run(capsys, "source", "--event", "-")[1] == {"result": "/orders", "errors": []}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "is not JSON"),
        ('{"specversion": "1.0", "id": "1", "source": "/s"}', "not a valid CloudEvent"),
        ("[]", "not a valid CloudEvent"),
    ],
)
def test_unusable_event_file_exits_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, content: str | None, message: str
) -> None:
    path = tmp_path / "event.json"
    if content is not None:
        path.write_text(content, "utf-8")
    status, out, err = _run(capsys, "true", "--event", str(path))
    assert (status, out) == (2, None)
    assert message in err
    assert err.count("\n") == 1


def test_add_commands_registers_on_any_parser(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="cemesh")
    cli_cesql.add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["cesql", "true"])
    assert args.run(args) == 0
    assert json.loads(capsys.readouterr().out) == {"result": True, "errors": []}


def test_cemesh_command_line_when_wired(capsys: pytest.CaptureFixture[str]) -> None:
    from gateway import cli

    try:
        status = cli.main(["cesql", "true"])
    except SystemExit:
        pytest.skip("gateway.cli does not register `cesql` yet (cli_cesql.add_commands)")
    assert status == 0
    assert json.loads(capsys.readouterr().out) == {"result": True, "errors": []}


def _cesql(*args: str) -> subprocess.CompletedProcess[str]:
    """`python -m gateway.cli.cesql ARGS...` run to its end."""
    return subprocess.run(
        [sys.executable, "-m", "gateway.cli.cesql", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_as_a_process() -> None:
    ok = _cesql("source LIKE '/cemesh/%'")
    assert (ok.returncode, json.loads(ok.stdout), ok.stderr) == (
        0,
        {"result": True, "errors": []},
        "",
    )
    bad = _cesql("AND")
    assert (bad.returncode, bad.stdout) == (2, "")
    assert len(bad.stderr.splitlines()) == 1

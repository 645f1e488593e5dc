"""The CloudEvents CESQL TCK, run against `brokers.cesql`: one test per TCK case, `file::name`.

The TCK lives in the shared folder (`$CEMESH_SHARED/conformance/cesql_tck`, by default the
`shared` folder next to the repository); without it these tests are skipped.

Loading notes. PyYAML would turn an unquoted `2018-04-26T14:48:09+02:00` into a datetime, so the
typed view of each file (results, events) comes from a loader without the timestamp resolver.
Names and expressions are read from a second, untyped view (`BaseLoader`), which keeps them
exactly as written: the expression `TRUE` stays `TRUE` rather than becoming Python's True and
then `true`, and the cases named `TRUE` and `true` keep distinct ids.

Each case parses its expression; a `parse` error must raise CesqlParseError. Otherwise the
expression is evaluated against the case's `event` (its context attributes), or a default valid
event with `eventOverrides` applied, and both outputs are checked: the value (type included: 1
is not TRUE) and the error kinds (our evaluation is fail-fast, so at most one).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from brokers.cesql import CesqlParseError, parse

SHARED = Path(os.environ.get("CEMESH_SHARED", Path(__file__).resolve().parents[3] / "shared"))
TCK_DIR = SHARED / "conformance" / "cesql_tck"

if not TCK_DIR.is_dir():
    pytest.skip(
        f"CESQL TCK not found at {TCK_DIR} (set CEMESH_SHARED to the shared folder)",
        allow_module_level=True,
    )


class _TCKLoader(yaml.SafeLoader):
    """SafeLoader minus the YAML 1.1 timestamp resolver: timestamps stay strings."""


_TCKLoader.yaml_implicit_resolvers = {
    first: [(tag, regex) for tag, regex in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}

# A valid event for the cases without their own `event`. It has no `myext`, `missing`, ...:
# several cases rely on those being absent.
DEFAULT_EVENT: dict[str, Any] = {
    "specversion": "1.0",
    "id": "tck-default-id",
    "source": "https://tck.example/source",
    "type": "dev.cemesh.tck.default",
    "subject": "tck-subject",
    "time": "2024-06-13T10:00:00Z",
    "datacontenttype": "application/json",
}

# The one TCK expectation that contradicts CESQL v1, replaced by what the spec says.
# not_operator.yaml "Invalid int cast" expects `NOT 10` to be TRUE with a cast error: that is
# the pre-v1 rule, when Integer -> Boolean was not a valid cast. CESQL v1 section 3.7 defines it
# ("Returns false if the integer is 0, and true otherwise"), so NOT 10 is NOT TRUE: FALSE, and
# no error. The Go SDK's copy of the TCK (sdk-go-variant/not_operator.yaml) and the Java SDK
# say the same; test_not_10_override_agrees_with_the_go_sdk_tck checks that copy.
SPEC_OVERRIDES: dict[tuple[str, str], dict[str, Any]] = {
    ("not_operator.yaml", "Invalid int cast"): {"result": False},  # and no "error"
}


@dataclass(frozen=True)
class TckCase:
    file: str
    name: str
    expression: str
    result: Any  # absent for parse-error cases: None
    error: str | None
    attributes: dict[str, Any]

    @property
    def id(self) -> str:
        return f"{self.file}::{self.name}"


def _event_attributes(test: dict[str, Any]) -> dict[str, Any]:
    event = dict(test.get("event") or DEFAULT_EVENT)
    event.update(test.get("eventOverrides") or {})
    event.pop("data", None)
    event.pop("data_base64", None)
    return event


def load_cases(folder: Path) -> list[TckCase]:
    cases: list[TckCase] = []
    for path in sorted(folder.glob("*.yaml")):
        text = path.read_text(encoding="utf-8")
        typed = yaml.load(text, Loader=_TCKLoader)
        raw = yaml.load(text, Loader=yaml.BaseLoader)  # every scalar as text
        for test, raw_test in zip(typed["tests"], raw["tests"], strict=True):
            name = raw_test["name"]  # typed, `name: TRUE` would be a bool
            expected = dict(test)
            if (path.name, name) in SPEC_OVERRIDES:
                expected.pop("error", None)
                expected.update(SPEC_OVERRIDES[path.name, name])
            cases.append(
                TckCase(
                    file=path.name,
                    name=name,
                    expression=raw_test["expression"],
                    result=expected.get("result"),
                    error=expected.get("error"),
                    attributes=_event_attributes(test),
                )
            )
    return cases


CASES = load_cases(TCK_DIR)


def test_every_tck_file_is_loaded() -> None:
    assert len(CASES) > 250
    assert len({case.id for case in CASES}) == len(CASES), "TCK case ids must be unique"
    assert set(SPEC_OVERRIDES) <= {(case.file, case.name) for case in CASES}


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_tck(case: TckCase) -> None:
    if case.error == "parse":
        with pytest.raises(CesqlParseError):
            parse(case.expression)
        return

    result = parse(case.expression).evaluate(case.attributes)

    assert [error.kind for error in result.errors] == ([case.error] if case.error else [])
    assert result.value == case.result
    assert type(result.value) is type(case.result)


def test_not_10_override_agrees_with_the_go_sdk_tck() -> None:
    variant = TCK_DIR / "sdk-go-variant" / "not_operator.yaml"
    if not variant.is_file():
        pytest.skip(f"{variant} not found")
    tests = yaml.load(variant.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)["tests"]
    (go_case,) = [test for test in tests if test["expression"] == "NOT 10"]
    assert go_case["result"] == "false"
    assert "error" not in go_case
    (ours,) = [case for case in CASES if case.expression == "NOT 10"]
    assert (ours.result, ours.error) == (False, None)

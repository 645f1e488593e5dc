"""Every func.yaml in the repository against the official func.yaml JSON schema (issue 8).

The schema (`../shared/schemas/func_yaml-schema.json`, or `$CEMESH_SHARED/schemas/...`) is the
one the func CLI publishes; it rejects unknown keys at every level. One documented gap is
tolerated: its `build.builder` enum lists only `pack` and `s2i`, although func 1.23 accepts
`host` (the builder tests/deploy/test_func_build_replay.py replays).
"""

from __future__ import annotations

import ast
import json
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from gateway.hosting.funcyaml import load_func_yaml
from tests.conftest import REPO, shared_path

FUNC_YAMLS = [REPO / "func.yaml", *sorted((REPO / "functions").glob("*/func.yaml"))]
PYTHON_FUNCTIONS = [
    p.parent
    for p in FUNC_YAMLS[1:]
    if (yaml.safe_load(p.read_text()) or {}).get("runtime") in (None, "python")
]
NODE_FUNCTIONS = [
    p.parent
    for p in FUNC_YAMLS[1:]
    if (yaml.safe_load(p.read_text()) or {}).get("runtime") == "node"
]


def _id(path: Path) -> str:
    return str(path.relative_to(REPO))


@pytest.fixture(scope="module")
def validator() -> Any:
    schema = json.loads(shared_path("schemas/func_yaml-schema.json").read_text("utf-8"))
    return jsonschema.Draft4Validator(
        schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER
    )


def schema_errors(validator: Any, document: Any) -> list[str]:
    """Every schema error except the documented `build.builder: host` gap."""
    errors = []
    for error in validator.iter_errors(document):
        path = list(error.absolute_path)
        if path == ["build", "builder"] and error.instance == "host" and error.validator == "enum":
            continue
        errors.append(f"{'.'.join(map(str, path)) or '(root)'}: {error.message}")
    return errors


@pytest.mark.parametrize("path", FUNC_YAMLS, ids=_id)
def test_func_yaml_matches_the_official_schema(validator: Any, path: Path) -> None:
    document = yaml.safe_load(path.read_text("utf-8"))
    assert schema_errors(validator, document) == []
    load_func_yaml(path)  # and cemesh's own strict model agrees


def test_the_schema_check_is_not_vacuous(validator: Any) -> None:
    document = yaml.safe_load((REPO / "func.yaml").read_text("utf-8"))
    assert schema_errors(validator, document) == []
    bad = {**document, "deploy": {**document["deploy"], "replicas": 2}}
    assert any("replicas" in e for e in schema_errors(validator, bad))
    assert schema_errors(validator, {**document, "build": {"builder": "docker"}})
    assert any("created" in e for e in schema_errors(validator, {"specVersion": "0.36.0"}))


def test_root_func_yaml_deploys_the_mesh() -> None:
    spec = load_func_yaml(REPO / "func.yaml")
    assert (spec.runtime, spec.invoke) == ("python", "http")
    scale = spec.deploy.options.scale if spec.deploy and spec.deploy.options else None
    assert scale is not None
    assert scale.min == 1  # the consumers keep running without traffic
    assert spec.run is not None
    envs = {e.name: e.value for e in spec.run.envs}
    assert {"CEMESH_BROKER_URL", "CEMESH_STATE_URL", "CEMESH_CONFIG"} <= set(envs)
    (volume,) = spec.run.volumes or []
    assert volume == {"configMap": "cemesh-config", "path": envs["CEMESH_CONFIG"]}


def test_the_root_is_a_func_python_project() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == "function"
    assert any(d.startswith("func-python") for d in project["dependencies"])
    assert "new" in _exported(REPO / "function" / "__init__.py")


@pytest.mark.parametrize("directory", PYTHON_FUNCTIONS, ids=_id)
def test_python_function_is_a_complete_project(directory: Path) -> None:
    project = tomllib.loads((directory / "pyproject.toml").read_text("utf-8"))["project"]
    assert project["name"] == "function", "func build requires the project name `function`"
    assert {"new", "handle"} & _exported(directory / "function" / "__init__.py")
    assert list((directory / "tests").glob("test_*.py")), "a function ships its own tests"


@pytest.mark.parametrize("directory", NODE_FUNCTIONS, ids=_id)
def test_node_function_is_a_complete_project(directory: Path) -> None:
    package = json.loads((directory / "package.json").read_text("utf-8"))
    assert "faas-js-runtime" in package["dependencies"]
    assert (directory / package.get("main", "index.js")).exists()
    assert package["scripts"]["test"]
    assert list((directory / "test").glob("*.js")), "a function ships its own tests"
    assert (directory / "package-lock.json").exists(), "npm ci needs the lock file"


def _exported(init: Path) -> set[str]:
    """Names a package's __init__ binds at top level (imports, defs, assignments)."""
    names: set[str] = set()
    for node in ast.parse(init.read_text("utf-8")).body:
        if isinstance(node, ast.ImportFrom | ast.Import):
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
    return names

"""Loading the desired configuration: Brokers and Triggers under `--config`, and the function
projects (their `func.yaml` subscriptions) under `--functions`.

Everything that can fail on bad configuration happens here, before any socket is opened, so
`cemesh up` reports one line and exits 2, and a reload is refused whole with that same line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from brokers.state import check_state
from brokers.triggers import MeshConfig, load_config
from gateway.hosting.python import FunctionProject, discover
from gateway.settings import Settings


@dataclass(frozen=True, slots=True)
class LoadedConfig:
    config: MeshConfig
    functions: list[FunctionProject]


def load_mesh(settings: Settings) -> LoadedConfig:
    """Read func.yaml files and config/; raises ConfigError naming the file and object."""
    projects = discover(settings.functions, settings.namespace)
    config = load_config(settings.config, [p.subscriptions() for p in projects], settings.namespace)
    check_state(settings.state_url, config)  # a bad --state URL or state annotation
    return LoadedConfig(config, projects)


def load_running(
    settings: Settings, running: Sequence[FunctionProject]
) -> tuple[LoadedConfig, list[str]]:
    """The configuration the files describe now, for a mesh hosting `running` functions: their
    subscriptions as their func.yaml files say now; a function added since start waits for a
    restart (the notes say which). Raises ConfigError naming the file and the object."""
    found = discover(settings.functions, settings.namespace)
    hosted = {p.name for p in running}
    usable = [p for p in found if p.name in hosted]
    config = load_config(settings.config, [p.subscriptions() for p in usable], settings.namespace)
    check_state(settings.state_url, config)
    return LoadedConfig(config, list(running)), needs_restart(running, found)


def _hosting(project: FunctionProject) -> Any:
    """What hosting a function depends on: everything but its subscriptions."""
    spec = project.spec.model_dump(exclude={"deploy": {"subscriptions"}})
    return (project.name, str(project.path), project.namespace, spec)


def needs_restart(
    running: Sequence[FunctionProject], found: Sequence[FunctionProject]
) -> list[str]:
    """One note per function whose hosting changed: added, removed or changed."""
    before = {p.name: p for p in running}
    after = {p.name: p for p in found}
    notes = [f"function {name} added" for name in sorted(after.keys() - before.keys())]
    notes += [f"function {name} removed" for name in sorted(before.keys() - after.keys())]
    notes += [
        f"function {name} changed"
        for name in sorted(before.keys() & after.keys())
        if _hosting(before[name]) != _hosting(after[name])
    ]
    return notes

"""The repository root as a Knative function: `func deploy` here deploys the mesh itself.

`func build` demands a project named `function` and a `function` package exporting `new()`;
this package is only that entry point. The mesh lives in `gateway`, `brokers` and `cdevents`,
installed by the same distribution (see pyproject.toml and the README's deploy section).
"""

from function.func import Function, new, settings_from_env

__all__ = ["Function", "new", "settings_from_env"]

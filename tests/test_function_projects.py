"""Each Python function's own tests, run the way func's template runs them: from the function's
directory, where `function` is that project's package (every project names its package
`function`, so they cannot share one interpreter with each other or with the root's)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO

PROJECTS = sorted(
    p.parent for p in (REPO / "functions").glob("*/pyproject.toml") if (p.parent / "tests").is_dir()
)


@pytest.mark.parametrize("project", PROJECTS, ids=[p.name for p in PROJECTS])
def test_function_project_tests_pass(project: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(project)}
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            ".",
            "-c",
            "pyproject.toml",
            "tests",
        ],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert " passed" in result.stdout

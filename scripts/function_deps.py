"""Print the PyPI dependencies of every Python function under functions/, one per line.

`cemesh up` hosts Python functions in-process, so their own dependencies must be installed in
the mesh's environment too; `make install` pipes this list to pip.
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    seen: set[str] = set()
    for pyproject in sorted((ROOT / "functions").glob("*/pyproject.toml")):
        project = tomllib.loads(pyproject.read_text("utf-8")).get("project", {})
        for requirement in project.get("dependencies", []):
            if requirement not in seen:
                seen.add(requirement)
                print(requirement)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""List import cycles among the project's modules (module-level imports only: imports inside
functions and `if TYPE_CHECKING:` blocks do not run at import time). Exit 1 when there is one.

    python scripts/import_cycles.py [package ...]   # default: brokers gateway cdevents function
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, known: set[str]) -> set[str]:
    found: set[str] = set()
    for node in ast.parse(path.read_text("utf-8")).body:
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return {name for name in found if name in known}


def cycles(packages: list[str]) -> list[list[str]]:
    files = {module_name(p): p for pkg in packages for p in (ROOT / pkg).rglob("*.py")}
    known = set(files)
    graph = {name: imports(path, known) - {name} for name, path in files.items()}
    found: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                found.append([*stack[stack.index(target) :], target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)
    return found


def main() -> int:
    packages = sys.argv[1:] or ["brokers", "gateway", "cdevents", "function"]
    found = cycles(packages)
    for cycle in found:
        print(" -> ".join(cycle))
    print(f"{len(found)} import cycle(s)")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())

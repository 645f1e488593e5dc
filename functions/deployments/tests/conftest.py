"""Make `from function import new` import this project's `function` package.

`func` runs these tests from the project root, where that is already true. Under the
repository's pytest several projects (the root, every function) have a package named
`function`, so this swaps ours in while this directory's test modules are imported and puts
the previous one back afterwards.
"""

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HERE = Path(__file__).resolve().parent


def _function_modules():
    return [name for name in sys.modules if name == "function" or name.startswith("function.")]


_saved = {name: sys.modules.pop(name) for name in _function_modules()}
sys.path.insert(0, str(ROOT))


def pytest_collectreport(report):
    """Once this directory is collected, restore what other projects see as `function`."""
    if Path(getattr(report, "fspath", "") or ".").resolve() != HERE:
        return
    for name in _function_modules():
        del sys.modules[name]
    sys.modules.update(_saved)
    if str(ROOT) in sys.path:
        sys.path.remove(str(ROOT))

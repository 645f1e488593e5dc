"""`make bench`: run every `bench/bench_*.py` (or those named), print one table, write
`bench/results/latest.json` and `.md`. Each figure stands beside its baseline from the same run.

    python -m bench                 # all
    python -m bench codec filters   # some
"""

from __future__ import annotations

import importlib
import sys
import time
from pathlib import Path

from bench.report import Row, render_markdown, write_results


def main(argv: list[str]) -> int:
    names = argv or sorted(
        p.stem.removeprefix("bench_") for p in Path(__file__).parent.glob("bench_*.py")
    )
    rows: list[Row] = []
    failed: list[str] = []
    for name in names:
        module = importlib.import_module(f"bench.bench_{name}")
        start = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        try:
            rows.extend(module.run())
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(f"{name}: {type(exc).__name__}: {exc}")
        print(f"bench: {name} done in {time.perf_counter() - start:.0f}s", file=sys.stderr)
    print(render_markdown(rows))
    path = write_results(rows)
    print(f"\nwritten to {path} and {path.with_suffix('.json')}")
    for line in failed:
        print(f"bench failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Rows, tables and result files shared by every benchmark module.

A benchmark module exposes `run() -> list[Row]`; each row carries its figure, the baseline
measured in the same run, the ratio and the target ratio, so a reader never compares numbers
from different days or machines.
"""

from __future__ import annotations

import json
import platform
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True, slots=True)
class Row:
    area: str
    name: str
    value: float
    unit: str
    baseline_name: str = ""
    baseline: float | None = None
    target: str = ""  # e.g. ">= 2.0x" or "< 50 ms"
    met: bool | None = None

    @property
    def ratio(self) -> float | None:
        if not self.baseline:
            return None
        return self.value / self.baseline


def rate(count: int, seconds: float) -> float:
    return count / seconds if seconds > 0 else 0.0


def best_of(repeats: int, fn: Callable[[], float]) -> float:
    """The best of several runs of a throughput measurement (noise only ever slows down)."""
    return max(fn() for _ in range(repeats))


def best_runs(
    runs: Mapping[str, Sequence[tuple[float, float]]],
) -> dict[str, tuple[float, float]]:
    """Per kind, from its (events/s, CPU seconds per event) runs: the best rate and the lowest
    CPU cost (noise only ever makes a run worse)."""
    return {
        kind: (max(rate for rate, _ in values), min(cpu for _, cpu in values))
        for kind, values in runs.items()
    }


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def render_markdown(rows: Sequence[Row]) -> str:
    lines = [
        "| area | figure | value | baseline | ratio | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        baseline = f"{r.baseline:,.1f} ({r.baseline_name})" if r.baseline else "-"
        ratio = f"{r.ratio:.2f}x" if r.ratio is not None else "-"
        met = {True: "yes", False: "NO", None: "-"}[r.met]
        lines.append(
            f"| {r.area} | {r.name} | {r.value:,.1f} {r.unit} | {baseline} | {ratio} | "
            f"{r.target or '-'} | {met} |"
        )
    return "\n".join(lines)


def write_results(rows: Sequence[Row], name: str = "latest") -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
    }
    doc = {"meta": meta, "rows": [{**asdict(r), "ratio": r.ratio} for r in rows]}
    (RESULTS / f"{name}.json").write_text(json.dumps(doc, indent=2) + "\n", "utf-8")
    md = f"# cemesh benchmarks ({meta['when']})\n\n{render_markdown(rows)}\n"
    path = RESULTS / f"{name}.md"
    path.write_text(md, "utf-8")
    return path

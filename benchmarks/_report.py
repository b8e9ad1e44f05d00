"""Plain-text tables for the benchmark scripts: stdout, plus a markdown copy under ``benchmarks/results/``."""

from __future__ import annotations

import os
import platform
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["DASH", "Table", "machine_lines", "progress", "write_markdown"]

RESULTS = Path(__file__).resolve().parent / "results"
DASH = "—"
_START = time.perf_counter()


def progress(message: str) -> None:
    """One line of progress on stderr, with the seconds since the script started."""
    print(f"[{time.perf_counter() - _START:7.1f} s] {message}", file=sys.stderr, flush=True)


def machine_lines() -> list[str]:
    """Cores, platform and library versions, for the header of a report."""
    import numpy as np
    import scipy

    lines = [
        f"machine: {os.cpu_count()} logical cores ({len(os.sched_getaffinity(0))} usable), "
        f"{platform.machine()}, {platform.system()} {platform.release()}",
        "load average (1, 5, 15 min) at start: " + ", ".join(f"{v:.2f}" for v in os.getloadavg()),
        f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}",
    ]
    if "torch" in sys.modules:
        lines[-1] += f", torch {sys.modules['torch'].__version__}"
    return lines


@dataclass
class Table:
    """A titled table whose header lines explain the columns."""

    title: str
    notes: list[str]
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append([str(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(c), *(len(r[i]) for r in self.rows)) for i, c in enumerate(self.columns)]

        def line(cells: list[str]) -> str:
            first = cells[0].ljust(widths[0])
            return "  ".join([first, *(c.rjust(w) for c, w in zip(cells[1:], widths[1:]))]).rstrip()

        rule = "-" * len(line(self.columns))
        out = [self.title, "=" * len(self.title), *self.notes, "", line(self.columns), rule]
        out += [line(r) for r in self.rows]
        return "\n".join(out) + "\n"

    def markdown(self) -> str:
        out = [f"### {self.title}", "", *(f"{n}  " for n in self.notes), ""]
        out.append("| " + " | ".join(self.columns) + " |")
        out.append("|" + "|".join("---" for _ in self.columns) + "|")
        out += ["| " + " | ".join(r) + " |" for r in self.rows]
        return "\n".join(out) + "\n"


def write_markdown(name: str, header: list[str], tables: list[Table]) -> Path:
    """Write ``benchmarks/results/<name>.md`` (git-ignored) and return its path."""
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / f"{name}.md"
    body = [f"# {name}", "", *(f"{h}  " for h in header), ""] + [t.markdown() for t in tables]
    path.write_text("\n".join(body), encoding="utf-8")
    return path

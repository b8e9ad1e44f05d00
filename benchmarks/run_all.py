"""Run every ``benchmarks/bench_*.py`` script in its own process; ``make bench`` calls this.

Usage: ``python benchmarks/run_all.py [NAME ...]`` — with names, only the scripts whose file
name contains one of them (``python benchmarks/run_all.py samplers``).  Each script prints
its tables to stdout (and writes a markdown copy under ``benchmarks/results/``); this
driver prints a summary of the wall times and exits non-zero if any script failed.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    scripts = sorted(HERE.glob("bench_*.py"))
    if argv:
        scripts = [s for s in scripts if any(name in s.stem for name in argv)]
        if not scripts:
            print(f"no benchmark script matches {argv}", file=sys.stderr)
            return 2
    summary = []
    for script in scripts:
        print(f"##### {script.name}", flush=True)
        start = time.perf_counter()
        code = subprocess.run([sys.executable, str(script)], check=False).returncode
        summary.append((script.name, code, time.perf_counter() - start))
        print(flush=True)
    print("##### summary")
    for name, code, seconds in summary:
        print(f"{name:30s} {'ok' if code == 0 else f'FAILED (exit {code})':>16s} {seconds:8.1f} s")
    print(f"{'total':30s} {'':>16s} {sum(s for _, _, s in summary):8.1f} s")
    return 0 if all(code == 0 for _, code, _ in summary) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

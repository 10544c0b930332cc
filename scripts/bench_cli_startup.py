"""Benchmark: cold start of `vilt-edge --help`, and what it imports.

    python scripts/bench_cli_startup.py [--runs 10]

Each run is a fresh interpreter (the real console script), so module caches are cold except the
OS page cache. Prints a table of medians and the goal (< 1 s); also checks that neither torch,
transformers nor onnxruntime are imported by `--help`.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time

HEAVY = ("torch", "transformers", "onnxruntime", "onnx", "PIL", "tokenizers")


def time_command(command: list[str], runs: int) -> list[float]:
    timings = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        timings.append(time.perf_counter() - started)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    script = shutil.which("vilt-edge") or sys.exit("vilt-edge is not on PATH (pip install -e .)")
    rows = {
        "python -c pass (floor)": time_command([sys.executable, "-c", "pass"], args.runs),
        "vilt-edge --help": time_command([script, "--help"], args.runs),
        "vilt-edge ask --help": time_command([script, "ask", "--help"], args.runs),
    }
    probe = (
        "import sys, vilt_edge.cli as c\n"
        "try:\n    c.app(['--help'])\nexcept SystemExit:\n    pass\n"
        f"print('HEAVY:' + ','.join(m for m in {HEAVY!r} if m in sys.modules))"
    )
    imported = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    imported = [line.removeprefix("HEAVY:") for line in imported if line.startswith("HEAVY:")]
    floor = statistics.median(rows["python -c pass (floor)"])
    print(f"{'command':<26} {'median s':>9} {'max s':>7} {'x floor':>8}")
    for name, timings in rows.items():
        median = statistics.median(timings)
        print(f"{name:<26} {median:>9.3f} {max(timings):>7.3f} {median / floor:>8.1f}")
    heavy = imported[0] if imported and imported[0] else "none"
    help_median = statistics.median(rows["vilt-edge --help"])
    print(f"heavy modules imported by --help: {heavy}")
    print(f"goal: --help under 1 s cold: {'met' if help_median < 1.0 else 'NOT met'}")


if __name__ == "__main__":
    main()

"""Measures every stage reports the same way: latency percentiles and peak memory, of this
process and of a fresh one that deploys a bundle."""

from __future__ import annotations

import resource
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def percentiles(values_ms: Sequence[float]) -> dict[str, float]:
    values = np.asarray(values_ms, dtype=np.float64)
    p50, p90, p99 = np.percentile(values, [50, 90, 99])
    return {"p50": round(float(p50), 4), "p90": round(float(p90), 4), "p99": round(float(p99), 4)}


def reset_peak_rss() -> bool:
    """Start the peak-RSS count afresh (Linux: /proc/self/clear_refs), so a validation run
    after other work in the same process (the pipeline's distillation) reports its own peak.
    Returns False where the platform cannot (then the peak is the process's so far)."""
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float:
    """This process's peak resident set size so far (Linux reports KiB, macOS bytes)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return round(peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024, 1)


# What an app pays: a fresh interpreter that imports the runtime, loads the bundle and answers.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec from the (larger) parent.
_DEPLOY_PROBE = """
import sys
import numpy as np
from PIL import Image
from vilt_edge.runtime import ViltRuntime
threads = None if sys.argv[2] == "-" else int(sys.argv[2])
runtime = ViltRuntime.load(sys.argv[1], threads=threads)
height, width = runtime.bundle.default_image_size
rng = np.random.default_rng(0)
image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
example = (image, image) if runtime.task == "nlvr2" else image
for _ in range(int(sys.argv[3])):
    runtime.ask(example, "what is in the image?")
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(int(hwm[0].split()[1]) / 1024 if hwm else "")
"""


def deploy_peak_rss_mb(bundle, threads: int | None = None, answers: int = 3) -> float | None:
    """Peak resident memory (MB) of a fresh process that loads `bundle` with `ViltRuntime` and
    answers `answers` questions on an image of the bundle's default size: the memory an app
    deploying the bundle needs, without the data sets and reference model a validation run
    holds. None where it cannot be read (not Linux, or the probe failed)."""
    import subprocess
    import sys

    if not Path("/proc/self/status").is_file():
        return None
    command = [sys.executable, "-c", _DEPLOY_PROBE, str(bundle),
               "-" if threads is None else str(threads), str(answers)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    try:
        return round(float(lines[-1]), 1)
    except ValueError:
        return None

"""Read cuda-python's CUDA runtime API (`cuda.bindings.runtime`) as a real release has it.

    python scripts/cudart_surface.py cuda-bindings==12.9.10 [--out FOLDER]

The TensorRT runner moves buffers with cuda-python's runtime calls. cuda-python's bindings
import without a GPU or a driver (a call then returns cudaErrorInsufficientDriver), so the real
module is installed into a temporary folder (with cuda-pathfinder, which cuda-bindings 12.9 and
later import), imported in a child process, and its module names, enum members and class
attributes are written to `cudart-<version>.json`, which the tests' cuda-python fake exposes.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "vilt_edge" / "compile" / "tensorrt_surfaces"

_DUMP = r"""
import json
from importlib.metadata import version
from cuda.bindings import runtime as rt
def public(obj):
    return sorted(a for a in dir(obj) if not a.startswith("_"))
surface = {"version": version("cuda-bindings"), "module": public(rt), "enums": {}, "classes": {}}
for name in surface["module"]:
    obj = getattr(rt, name)
    if hasattr(obj, "__members__"):
        surface["enums"][name] = sorted(obj.__members__)
    elif isinstance(obj, type) and name.startswith("cuda"):
        surface["classes"][name] = public(obj)
print(json.dumps(surface))
"""


def read_surface(spec: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="cudart-surface-") as temp:
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", temp, spec,
             "cuda-pathfinder"],
            check=True, capture_output=True, text=True,
        )  # fmt: skip
        env = {**os.environ, "PYTHONPATH": temp}
        done = subprocess.run(
            [sys.executable, "-c", _DUMP], check=True, capture_output=True, text=True, env=env
        )
    surface = json.loads(done.stdout)
    surface["package"] = spec
    return surface


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="e.g. cuda-bindings==12.9.10")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    surface = read_surface(args.spec)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"cudart-{surface['version']}.json"
    path.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    print(f"{path}: {len(surface['module'])} names, {len(surface['enums'])} enums")


if __name__ == "__main__":
    main()

"""Read one TensorRT version's real Python API on a machine with no GPU and no TensorRT libraries.

    python scripts/trt_surface.py tensorrt-cu12-bindings==10.3.0 [--out FOLDER]

PyPI's TensorRT *bindings* wheels hold the real `tensorrt` extension module; only the `-libs`
wheels (libnvinfer and friends) come from NVIDIA's own index, unreachable here. The extension
reaches every TensorRT class through vtables, so it links only a handful of C entry points
(`createInferBuilder_INTERNAL`, `getPluginRegistry`, ...). This script downloads the bindings
wheel, lists the symbols the module leaves undefined in the NVIDIA libraries it needs
(`nm -D --undefined-only`, `objdump -p`), builds each of those libraries as a shared object of
no-op functions with the same names, imports the module against them in a child process and
writes what `import tensorrt` exposes: every enum's members, every class's public attributes,
the module's functions (those of the extension and of the package's `__init__.py`, e.g.
`nptype`) and its `__version__`. No TensorRT code runs (nothing is called), so nothing needs a GPU.

The JSON it writes (`trt-<version>.json`) is what vilt-edge's tests generate their fake
`tensorrt` module from (tests/trt_fake.py): exactly the names that version has.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import re
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "vilt_edge" / "compile" / "tensorrt_surfaces"

# What the child process prints: the module's names, read with dir() only.
_DUMP = r"""
import importlib.util, json, os, sys
package = os.path.dirname(sys.argv[1])
init = os.path.join(package, "__init__.py")
if os.path.isfile(init):  # the package as `import tensorrt` loads it: nptype, __version__, ...
    spec = importlib.util.spec_from_file_location("tensorrt", init,
                                                  submodule_search_locations=[package])
else:
    spec = importlib.util.spec_from_file_location("tensorrt", sys.argv[1])
trt = importlib.util.module_from_spec(spec)
sys.modules["tensorrt"] = trt
spec.loader.exec_module(trt)
def public(obj):
    return sorted(a for a in dir(obj) if not a.startswith("_"))
surface = {"version": getattr(trt, "__version__", None), "enums": {}, "classes": {},
           "functions": [], "nested": {}, "module": public(trt)}
for name in public(trt):
    obj = getattr(trt, name)
    if hasattr(obj, "__members__"):
        surface["enums"][name] = sorted(obj.__members__)
        surface["classes"][name] = public(obj)
    elif isinstance(obj, type):
        surface["classes"][name] = public(obj)
        for inner in public(obj):  # e.g. ILogger.Severity
            value = getattr(obj, inner, None)
            if isinstance(value, type) and hasattr(value, "__members__"):
                surface["nested"][f"{name}.{inner}"] = sorted(value.__members__)
    elif callable(obj):
        surface["functions"].append(name)
print(json.dumps(surface))
"""


def _run(args: list[str], **kwargs) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, **kwargs).stdout


def _stand_ins(module: Path, work: Path) -> None:
    """One shared object of no-op functions per NVIDIA library the module links."""
    needed = re.findall(r"NEEDED\s+(\S+)", _run(["objdump", "-p", str(module)]))
    undefined = set(_run(["nm", "-D", "--undefined-only", str(module)]).split())
    # C entry points (plain names) and C++ symbols of TensorRT's namespaces (mangled "nv...").
    ours = sorted(
        name
        for name in undefined
        if re.fullmatch(r"(_Z\w*nv\w+|\w*_INTERNAL\w*|get\w+|init\w+|create\w+)", name)
    )
    source = work / "standins.c"
    source.write_text("".join(f"void* {name}(void) {{ return 0; }}\n" for name in ours))
    for library in needed:
        if library.startswith("libnv"):
            _run(["gcc", "-shared", "-fPIC", "-o", str(work / library), str(source),
                  f"-Wl,-soname,{library}"])  # fmt: skip


def read_surface(spec: str) -> dict:
    """The API surface of the bindings wheel `spec` (pip's PACKAGE==VERSION)."""
    with tempfile.TemporaryDirectory(prefix="trt-surface-") as temp:
        work = Path(temp)
        _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", temp, spec])
        (wheel,) = glob.glob(str(work / "*.whl"))
        with zipfile.ZipFile(wheel) as archive:
            archive.extractall(work / "wheel")
        modules = sorted(glob.glob(str(work / "wheel" / "**" / "tensorrt*.so"), recursive=True))
        if not modules:
            raise SystemExit(f"{spec}: the wheel has no tensorrt extension module")
        module = Path(modules[0])
        _stand_ins(module, work)
        env = {**os.environ, "LD_LIBRARY_PATH": temp}
        surface = json.loads(_run([sys.executable, "-c", _DUMP, str(module)], env=env))
    surface["version"] = surface["version"] or spec.split("==")[1]
    surface["package"] = spec
    return surface


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("spec", help="a bindings wheel, e.g. tensorrt-cu12-bindings==10.3.0")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args()
    surface = read_surface(args.spec)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"trt-{surface['version']}.json"
    path.write_text(json.dumps(surface, indent=1, sort_keys=True) + "\n")
    print(f"{path}: {len(surface['classes'])} classes, {len(surface['enums'])} enums")


if __name__ == "__main__":
    main()

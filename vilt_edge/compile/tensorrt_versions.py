"""What a TensorRT version does with a bundle: the build plan, version by version.

    from vilt_edge.compile.tensorrt_versions import build_plan
    plan = build_plan("10.3.0.30", precision="int8", dla=False)
    plan.network_flags, plan.builder_flags, plan.trtexec_flags, plan.describe()

TensorRT 8.x builds weakly typed networks: the builder may pick FP16 (BuilderFlag.FP16) and INT8
(BuilderFlag.INT8, with explicit Q/DQ) kernels wherever it likes. TensorRT 10 added strongly
typed networks (NetworkDefinitionCreationFlag.STRONGLY_TYPED): every tensor keeps the type the
ONNX graph gives it, so an FP16 bundle (`quantize --precision fp16`, its FP32 islands kept as
typed) builds FP16 and an INT8 bundle (the TensorRT preset's Q/DQ) builds INT8 products with the
rest as typed; NVIDIA recommends it since 10, and TensorRT 11 builds nothing else (its
BuilderFlag has no FP16 or INT8, and STRONGLY_TYPED is deprecated and ignored). vilt-edge builds
strongly typed on 10 and later and uses the weak-typing flags only on 8.x.

DLA ("Working with DLA" and "Strongly Typed Networks for DLA" in TensorRT's documentation,
10.x and 11.x): TensorRT 10.7 was the last 10.x release with DLA; 11.0 to 11.3 have none and
11.4.0 only on Windows on ARM; 11.4.1 brings it back on AGX Orin under JetPack 7.2.2 or later.
Under strong typing the DLA computes in the tensors' types, so an FP32 graph has nothing to run
there: a strongly typed DLA build needs an FP16 or INT8 bundle.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path
from typing import Any

from vilt_edge.errors import InputError

# The real Python API of each checked TensorRT release, read from its bindings wheel by
# scripts/trt_surface.py: enum members, class attributes, module names.
SURFACES = Path(__file__).parent / "tensorrt_surfaces"

LAST_10X_WITH_DLA = (10, 7)
FIRST_11X_WITH_DLA = (11, 4, 1)


def version_tuple(version: str) -> tuple[int, ...]:
    """(10, 3, 0, 30) for "10.3.0.30"; parts that are not numbers end it."""
    parts = []
    for part in str(version).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts) or (0,)


def surface_versions() -> list[str]:
    """The TensorRT versions whose real API surface ships with vilt-edge, oldest first."""
    versions = [path.stem.removeprefix("trt-") for path in SURFACES.glob("trt-*.json")]
    return sorted(versions, key=version_tuple)


@cache
def load_surface(version: str) -> dict[str, Any]:
    """The surface for a TensorRT version: its own major.minor, else the nearest of its major
    (8.5, JetPack 5.1's, has no bindings wheel on PyPI: 8.6.1 stands for it)."""
    wanted = version_tuple(version)
    same_major = [v for v in surface_versions() if version_tuple(v)[0] == wanted[0]]
    if not same_major:
        raise InputError(f"no TensorRT {wanted[0]}.x API surface ships with vilt-edge")
    minor = wanted[1] if len(wanted) > 1 else 0
    best = min(same_major, key=lambda v: abs(version_tuple(v)[1] - minor))
    return json.loads((SURFACES / f"trt-{best}.json").read_text())


def check_plan(plan: BuildPlan) -> str:
    """The plan's flag names must exist in its version's real API; returns the surface used."""
    surface = load_surface(plan.version)
    enums = surface["enums"]
    for enum_name, names in (("NetworkDefinitionCreationFlag", plan.network_flags),
                             ("BuilderFlag", plan.builder_flags)):  # fmt: skip
        missing = [n for n in names if n not in enums.get(enum_name, ())]
        if missing:
            raise InputError(
                f"TensorRT {surface['version']} has no {enum_name}.{', '.join(missing)}"
            )
    return surface["version"]


def dla_supported(version: str) -> bool:
    """Whether this TensorRT release builds for the DLA on a Jetson."""
    number = version_tuple(version)
    if number[0] < 10:
        return True
    if number[0] == 10:
        return number[:2] <= LAST_10X_WITH_DLA
    return number >= FIRST_11X_WITH_DLA


@dataclass(frozen=True)
class BuildPlan:
    """How a version builds a bundle of one precision: flag names as TensorRT spells them."""

    version: str
    precision: str
    strongly_typed: bool
    network_flags: tuple[str, ...]  # NetworkDefinitionCreationFlag members
    builder_flags: tuple[str, ...]  # BuilderFlag members
    trtexec_flags: tuple[str, ...]
    dla: bool

    def describe(self) -> str:
        if not self.strongly_typed:
            kinds = {"int8": "INT8 from the Q/DQ and FP16 elsewhere where TensorRT picks it",
                     "fp16": "FP16 where TensorRT picks it", "fp32": "FP32"}  # fmt: skip
            how = f"weakly typed: {kinds[self.precision]}"
        else:
            kinds = {"int8": "INT8 products from the Q/DQ, every other tensor as the graph "
                     "types it", "fp16": "FP16 as the graph types it (its FP32 islands stay "
                     "FP32)", "fp32": "FP32"}  # fmt: skip
            how = f"strongly typed: {kinds[self.precision]}"
        where = " on the DLA with GPU fallback" if self.dla else ""
        return f"TensorRT {self.version} builds {how}{where}"

    def to_json(self) -> dict[str, Any]:
        data = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}
        return {**data, "describe": self.describe()}


def build_plan(version: str, precision: str, dla: bool = False) -> BuildPlan:
    """The plan for `version`, or one `InputError` line saying what that version cannot do."""
    number = version_tuple(version)
    if dla and not dla_supported(version):
        raise InputError(
            f"TensorRT {version} has no DLA support on Jetson (10.7 was the last 10.x release "
            f"with it; 11.x restores it from 11.4.1 with JetPack 7.2.2); build without --dla"
        )
    fallback = ("GPU_FALLBACK",) if dla else ()
    if number[0] < 10:
        builder = {"int8": ("INT8", "FP16"), "fp16": ("FP16",), "fp32": ()}[precision]
        trtexec = {"int8": ("--int8", "--fp16"), "fp16": ("--fp16",), "fp32": ()}[precision]
        return BuildPlan(version, precision, False, ("EXPLICIT_BATCH",), builder + fallback,
                         trtexec, dla)  # fmt: skip
    if dla and precision == "fp32":
        raise InputError(
            f"TensorRT {version} builds strongly typed, so the DLA runs the graph's own types and "
            f"an FP32 bundle has nothing for it; quantize it to FP16 or INT8 first"
        )
    if number[0] == 10:
        return BuildPlan(version, precision, True, ("STRONGLY_TYPED",), fallback,
                         ("--stronglyTyped",), dla)  # fmt: skip
    # 11 and later: strong typing is the only mode (the creation flag is deprecated, ignored).
    return BuildPlan(version, precision, True, (), fallback, (), dla)

"""The words the stages share, defined once, and the manifest's typed sections.

    from vilt_edge.records import QuantizeRecord, CompileRecord, RuntimeSettings
    record = bundle.manifest.compile_record      # None unless `vilt-edge compile` wrote it
    record.target, record.state                  # not bundle.manifest.extra["compile"]["target"]

A bundle's `manifest.json` carries, under "extra", what each stage that made it recorded: the
export, the quantization, the compile step, and the settings the runtime must load the model
with. Each is a frozen section here: the fields code reads are attributes, and `to_json()` gives
back the record exactly as it was written (the descriptive rest, e.g. calibration statistics or
the device profile, is kept verbatim in `data` for people and reports, never read by key).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from vilt_edge.errors import BundleError

TASKS = ("vqa", "nlvr2")
# What a bundle's model computes in; `vilt-edge quantize` writes the ones after fp32. A bf16
# bundle is the FP32 graph run at BF16 inference precision (OpenVINO, on AMX-BF16 or
# AVX512-BF16 CPUs): its manifest says so, its weights stay FP32.
PRECISIONS = ("fp32", "fp16", "int8", "bf16")
QUANTIZED_PRECISIONS = ("int8", "fp16", "bf16")
INT8_MODES = ("static", "dynamic")  # INT8 calibration mode; None for float variants

# The states of a compiled bundle's model (CompileRecord.state, RuntimeSettings.state).
PENDING_BUILD = "pending-build"  # a TensorRT build kit: the engine is built on the device
BUILT = "built"  # an engine or compiled program, built here
READY = "ready"  # runs as written (torch-cuda's FP16 model)


def _section(data: Any, name: str) -> dict[str, Any]:
    if not isinstance(data, Mapping):
        raise BundleError(f"manifest.json: extra.{name} must be an object")
    return dict(data)


@dataclass(frozen=True)
class QuantizeRecord:
    """What `vilt-edge quantize` did: precision, INT8 mode and preset, nodes kept in FP32."""

    precision: str
    mode: str | None
    target: str
    preset_name: str | None
    preset_family: str | None  # "cpu" | "tensorrt": the runtime family the INT8 layout is for
    nodes_kept_fp32: tuple[str, ...]
    data: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, data: Any) -> QuantizeRecord:
        data = _section(data, "quantize")
        preset = data.get("preset") or {}
        return cls(
            precision=str(data.get("precision")),
            mode=data.get("mode"),
            target=str(data.get("target")),
            preset_name=preset.get("name"),
            preset_family=preset.get("family"),
            nodes_kept_fp32=tuple(data.get("nodes_kept_fp32") or ()),
            data=data,
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class CompileRecord:
    """What `vilt-edge compile` did: for which target, and whether the model is built."""

    target: str
    state: str | None  # PENDING_BUILD, BUILT, READY; None: a CPU bundle optimized offline
    data: dict[str, Any] = field(repr=False)

    @property
    def pending_build(self) -> bool:
        return self.state == PENDING_BUILD

    @classmethod
    def from_json(cls, data: Any) -> CompileRecord:
        data = _section(data, "compile")
        if not isinstance(data.get("target"), str):
            raise BundleError("manifest.json: extra.compile has no target")
        return cls(target=data["target"], state=data.get("state"), data=data)

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass(frozen=True)
class RuntimeSettings:
    """How the runtime loads a compiled model: the runner's own settings (`values`, e.g. ONNX
    Runtime's threads and arena, TensorRT's shapes), or, for a build kit, the command that
    builds the engine on the device."""

    values: dict[str, Any]

    @property
    def state(self) -> str | None:
        return self.values.get("state")

    @property
    def pending_build(self) -> bool:
        return self.state == PENDING_BUILD

    @property
    def build_command(self) -> str | None:
        return self.values.get("build_command")

    @classmethod
    def from_json(cls, data: Any) -> RuntimeSettings:
        return cls(_section(data, "runtime_settings"))

    def to_json(self) -> dict[str, Any]:
        return dict(self.values)

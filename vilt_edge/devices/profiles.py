"""Device profiles as data: one TOML file per device, in `vilt_edge/devices/profiles/` (and in
the user's own folders named by $VILT_EDGE_DEVICES).

Each file gives a device's kind (cpu/gpu), runtime, native precisions, the INT8 layout its
runtime wants (`quantize_preset`) and its model format, memory and bandwidth, dense INT8 / FP16
/ FP32 peaks, DLA cores, JetPack and TensorRT versions and ONNX Runtime execution providers,
with the source of every figure in a comment beside it.
"""

from __future__ import annotations

import os
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from vilt_edge.errors import InputError
from vilt_edge.quantize.presets import PRESETS
from vilt_edge.records import PRECISIONS as BUNDLE_PRECISIONS

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

PROFILE_DIR = Path(__file__).parent / "profiles"
# More profile folders, separated like PATH: a user's own devices, read after the shipped ones
# (a file of the same name replaces a shipped profile).
EXTRA_DIRS_ENV = "VILT_EDGE_DEVICES"
KINDS = ("cpu", "gpu")
RUNTIMES = ("tensorrt", "onnxruntime", "openvino", "torch-cuda")
# ONNX Runtime's providers a CPU profile may name first (the one its compiled bundles use).
CPU_PROVIDERS = ("CPUExecutionProvider", "OpenVINOExecutionProvider")
# What a device computes in: a bundle's precisions, and FP8 (Hopper).
PRECISIONS = (*BUNDLE_PRECISIONS, "fp8")
MODEL_FORMATS = ("onnx", "ort")


@dataclass(frozen=True)
class DeviceProfile:
    name: str
    description: str
    kind: str
    runtime: str
    runtimes: tuple[str, ...]
    precisions: tuple[str, ...]
    memory_gb: float
    memory_bandwidth_gbs: float
    peak_int8_tops: float
    peak_fp16_tflops: float
    peak_fp32_tflops: float
    dla_cores: int
    cores: int
    cpu: str
    jetpack: tuple[str, ...]
    tensorrt: tuple[str, ...]
    cuda_compute_capability: str
    onnxruntime_providers: tuple[str, ...]
    max_workspace_fraction: float
    isa: tuple[str, ...]
    detect: str
    quantize_preset: str  # a name in vilt_edge.quantize.presets.PRESETS
    model_format: str  # CPU runtimes: the compiled model's file format (onnx | ort)
    dla_int8_tops: float = 0.0
    peak_bf16_tflops: float = 0.0  # dense BF16 (AMX-BF16, AVX512-BF16); 0: none
    # Static INT8 with this preset (an OpenVINO layout) where OpenVINO is installed; "": none
    openvino_preset: str = ""
    # Dynamic INT8 with this preset (an ONNX Runtime layout, run on its CPU provider) where
    # `quantize_preset` is static only; "": the device runs no dynamic INT8
    dynamic_preset: str = ""

    @property
    def is_jetson(self) -> bool:
        return bool(self.jetpack)

    def peak_ops_per_s(self, precision: str) -> float:
        """Dense peak in operations per second for `precision` (int8: INT8 tensor ops; fp16 on
        a device without FP16 arithmetic runs at its FP32 rate)."""
        if precision == "int8" and "int8" in self.precisions:
            return self.peak_int8_tops * 1e12
        if precision in ("fp16", "fp8") and self.peak_fp16_tflops > 0:
            return self.peak_fp16_tflops * 1e12
        if precision == "bf16" and self.peak_bf16_tflops > 0:
            return self.peak_bf16_tflops * 1e12
        return self.peak_fp32_tflops * 1e12

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in data.items()}


def _parse(path: Path) -> DeviceProfile:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as error:
        raise InputError(f"device profile {path.name}: {error}") from None
    known = {f.name: f for f in fields(DeviceProfile)}
    missing = [name for name, f in known.items() if name not in data and f.default is MISSING]
    unknown = sorted(set(data) - set(known))
    if missing or unknown:
        raise InputError(
            f"device profile {path.name}: missing {missing or 'nothing'}, "
            f"unknown {unknown or 'none'}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    profile = DeviceProfile(**values)
    if profile.name != path.stem:
        raise InputError(f"device profile {path.name} names itself {profile.name!r}")
    if profile.kind not in KINDS or profile.runtime not in RUNTIMES:
        raise InputError(f"device profile {path.name}: bad kind or runtime")
    if not set(profile.precisions) <= set(PRECISIONS) or profile.runtime not in profile.runtimes:
        raise InputError(f"device profile {path.name}: bad precisions or runtimes")
    if len(profile.jetpack) != len(profile.tensorrt) and profile.jetpack:
        raise InputError(f"device profile {path.name}: one TensorRT version per JetPack release")
    if (
        profile.kind == "cpu"
        and profile.onnxruntime_providers[:1]
        and (profile.onnxruntime_providers[0] not in CPU_PROVIDERS)
    ):
        raise InputError(
            f"device profile {path.name}: onnxruntime_providers must start with one of "
            f"{', '.join(CPU_PROVIDERS)}"
        )
    if profile.model_format not in MODEL_FORMATS:
        raise InputError(f"device profile {path.name}: model_format must be one of {MODEL_FORMATS}")
    if profile.quantize_preset not in PRESETS:
        raise InputError(
            f"device profile {path.name}: unknown quantize_preset {profile.quantize_preset!r}; "
            f"choose one of: {', '.join(PRESETS)}"
        )
    openvino = PRESETS.get(profile.openvino_preset)
    if profile.openvino_preset and (openvino is None or not openvino.openvino_precision):
        raise InputError(
            f"device profile {path.name}: openvino_preset {profile.openvino_preset!r} is not an "
            f"OpenVINO preset"
        )
    dynamic = PRESETS.get(profile.dynamic_preset)
    if profile.dynamic_preset and (dynamic is None or not dynamic.dynamic_ok):
        raise InputError(
            f"device profile {path.name}: dynamic_preset {profile.dynamic_preset!r} is not an "
            f"ONNX Runtime CPU preset"
        )
    return profile


def profile_dirs() -> list[Path]:
    """The shipped profiles' folder, then the folders named by $VILT_EDGE_DEVICES."""
    extra = os.environ.get(EXTRA_DIRS_ENV, "")
    return [PROFILE_DIR] + [Path(part) for part in extra.split(os.pathsep) if part]


def load_profiles() -> dict[str, DeviceProfile]:
    """Every profile by name, in name order: the shipped ones and the user's own."""
    return _load_profiles(tuple(profile_dirs()))


@cache
def _load_profiles(dirs: tuple[Path, ...]) -> dict[str, DeviceProfile]:
    by_name: dict[str, DeviceProfile] = {}
    for directory in dirs:
        if directory != PROFILE_DIR and not directory.is_dir():
            raise InputError(f"${EXTRA_DIRS_ENV}: {directory} is not a folder of device profiles")
        for path in sorted(directory.glob("*.toml")):
            profile = _parse(path)
            by_name[profile.name] = profile
    return dict(sorted(by_name.items()))


def get_profile(name: str) -> DeviceProfile:
    profiles = load_profiles()
    key = name.strip().lower()
    if key not in profiles:
        raise InputError(f"unknown target {name!r}; choose one of: {', '.join(profiles)}")
    return profiles[key]

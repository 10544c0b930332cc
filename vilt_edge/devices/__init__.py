"""Device profiles as data: one TOML file per device in `vilt_edge/devices/profiles/`.

    from vilt_edge.devices import get_profile, load_profiles, detect_host
    orin = get_profile("jetson-orin-nano"); print(orin.peak_int8_tops, orin.memory_bandwidth_gbs)

Each file gives a device's kind (cpu/gpu), runtime, native precisions, memory and bandwidth, dense
INT8 / FP16 / FP32 peaks, DLA cores, JetPack and TensorRT versions and ONNX Runtime execution
providers, with the source of every figure in a comment beside it. The roofline floor
(`vilt_edge.roofline`), `vilt-edge compile` and the readiness check read them from here. Adding
a device is adding a file.
"""

from __future__ import annotations

import os
import platform
import sys
from dataclasses import MISSING, asdict, dataclass, fields
from functools import cache
from pathlib import Path
from typing import Any

from vilt_edge.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # JetPack 6 ships Python 3.10
    import tomli as tomllib

PROFILE_DIR = Path(__file__).parent / "profiles"
KINDS = ("cpu", "gpu")
RUNTIMES = ("tensorrt", "onnxruntime", "torch-cuda")
PRECISIONS = ("fp32", "fp16", "int8", "fp8")


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
    dla_int8_tops: float = 0.0

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
    return profile


@cache
def load_profiles() -> dict[str, DeviceProfile]:
    """Every shipped profile by name, in name order."""
    profiles = [_parse(path) for path in sorted(PROFILE_DIR.glob("*.toml"))]
    return {p.name: p for p in profiles}


def get_profile(name: str) -> DeviceProfile:
    profiles = load_profiles()
    key = name.strip().lower()
    if key not in profiles:
        raise InputError(f"unknown target {name!r}; choose one of: {', '.join(profiles)}")
    return profiles[key]


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def detect_host(
    device_tree_model: str | None = None,
    cpu_flags: set[str] | None = None,
    machine: str | None = None,
    has_nvidia_gpu: bool | None = None,
) -> DeviceProfile | None:
    """The profile of the machine this runs on (arguments override what is read, for tests).

    A Jetson is named by /proc/device-tree/model; another machine with an NVIDIA GPU is
    cuda-gpu; otherwise the CPU profile whose ISA flags the host has (the most capable first).
    None where nothing matches (e.g. an x86 CPU without AVX2).
    """
    from vilt_edge.results import _cpuinfo_value, _gpu_names, _read_cpuinfo

    profiles = load_profiles()
    if device_tree_model is None:
        device_tree_model = _read("/proc/device-tree/model").replace("\x00", "")
    for profile in profiles.values():
        if profile.detect and profile.detect in device_tree_model:
            return profile
    if has_nvidia_gpu is None:
        has_nvidia_gpu = os.path.isdir("/proc/driver/nvidia/gpus") or _gpu_names() is not None
    if has_nvidia_gpu and "cuda-gpu" in profiles:
        return profiles["cuda-gpu"]
    if cpu_flags is None:
        cpu_flags = set((_cpuinfo_value(_read_cpuinfo(), "flags", "Features") or "").split())
    machine = (machine or platform.machine()).lower()
    arm = machine in ("aarch64", "arm64")
    cpus = [p for p in profiles.values() if p.kind == "cpu" and (p.name.startswith("arm") == arm)]
    for profile in sorted(cpus, key=lambda p: -p.peak_int8_tops / max(p.cores, 1)):
        if set(profile.isa) <= cpu_flags:
            return profile
    return None

"""This machine: what it is (`machine_description`, recorded with every figure) and which device
profile it matches (`detect_host`).

A Jetson is named by /proc/device-tree/model (or, on Thor, its DMI product name); another
machine with an NVIDIA GPU is cuda-gpu; otherwise the CPU profile whose ISA flags the host has
(the most capable first).
"""

from __future__ import annotations

import ctypes
import os
import platform
import shutil
import subprocess
import sys
from functools import cache
from pathlib import Path
from typing import Any

from vilt_edge.devices.profiles import DeviceProfile, load_profiles

# Instruction sets that decide which kernels a runtime can use (VNNI/AMX for INT8 on x86,
# dot-product and i8mm for INT8 on Arm), so a reader can tell why two machines' latencies differ.
ISA_OF_INTEREST = (
    "sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "avx512_fp16",
    "amx_tile", "amx_int8", "amx_bf16", "neon", "asimd", "asimddp", "i8mm",
)  # fmt: skip
AMX_FLAGS = frozenset({"amx_tile", "amx_int8", "amx_bf16"})
# Linux lets a process use AMX's tile data only after it asks (arch_prctl, kernel 5.16+): the
# same request ONNX Runtime's MLAS makes before it picks its AMX kernels. Without the grant the
# flags are set but an AMX instruction faults, so runtimes use their AVX-512 kernels instead.
_SYS_ARCH_PRCTL = 158  # x86_64
_ARCH_REQ_XCOMP_PERM = 0x1023
_XFEATURE_XTILEDATA = 18


def machine_description() -> dict[str, Any]:
    """CPU model, logical cores, ISA flags of interest and GPU name(s) of this machine.

    Reads /proc/cpuinfo where there is one (Linux) and falls back to `platform`; cheap enough to
    call once per validation run (no torch, one optional `nvidia-smi` call).
    """
    cpuinfo = _read_cpuinfo()
    cpu = _cpuinfo_value(cpuinfo, "model name", "Model", "Hardware", "cpu model")
    cpu = cpu or platform.processor() or platform.machine() or "unknown CPU"
    # x86 lists its extensions under "flags", Arm under "Features".
    flags = set((_cpuinfo_value(cpuinfo, "flags", "Features") or "").split())
    description = {
        "cpu": " ".join(cpu.split()),  # some kernels pad the model name with runs of spaces
        "cores": os.cpu_count() or 1,
        "isa": [flag for flag in ISA_OF_INTEREST if flag in flags],
        "gpu": _gpu_names(),
    }
    if flags & AMX_FLAGS:
        description["amx_tiles_granted"] = amx_tiles_granted()
    return description


def describe_machine(machine: dict[str, Any]) -> str:
    """One line for people: 'Intel Xeon, 2 cores (avx2, avx512_vnni), GPU: NVIDIA H100'."""
    text = f"{machine['cpu']}, {machine['cores']} cores"
    if machine["isa"]:
        text += f" ({', '.join(machine['isa'])})"
    if machine.get("amx_tiles_granted") is False:
        text += ", AMX tiles not granted by the kernel"
    if machine.get("gpu"):
        text += f", GPU: {machine['gpu']}"
    return text


def _read_cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _cpuinfo_value(cpuinfo: str, *keys: str) -> str | None:
    """The first processor's value for the first of `keys` present."""
    values: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, colon, value = line.partition(":")
        if colon:
            values.setdefault(key.strip(), value.strip())
    for key in keys:
        if values.get(key):
            return values[key]
    return None


def _run_nvidia_smi() -> str | None:
    """The one place this module shells out, so tests can patch it."""
    binary = shutil.which("nvidia-smi")
    if binary is None:
        return None
    try:
        completed = subprocess.run(
            [binary, "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        # A driver mismatch makes nvidia-smi fail; that machine has no usable GPU for us.
        return None
    return completed.stdout


def _gpu_names() -> str | None:
    output = _run_nvidia_smi()
    names = [line.strip() for line in (output or "").splitlines() if line.strip()]
    if not names:
        return None
    counts = {name: names.count(name) for name in dict.fromkeys(names)}
    return ", ".join(name if count == 1 else f"{count}x {name}" for name, count in counts.items())


def _read(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def host_cores() -> int:
    """The CPUs this process may run on (a container's or taskset's limit, not the machine's)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def host_cpu_flags() -> set[str]:
    """This CPU's ISA flags (x86 lists them under "flags", Arm under "Features")."""
    return set((_cpuinfo_value(_read_cpuinfo(), "flags", "Features") or "").split())


def _request_tile_data() -> bool:
    """arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) == 0: the one system call this
    module makes, so tests can patch it. The grant lasts for this process, as MLAS's does."""
    if sys.platform != "linux" or platform.machine().lower() not in ("x86_64", "amd64"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        return libc.syscall(_SYS_ARCH_PRCTL, _ARCH_REQ_XCOMP_PERM, _XFEATURE_XTILEDATA) == 0
    except (OSError, AttributeError):
        return False


@cache
def amx_tiles_granted() -> bool:
    """True where the CPU has AMX and the kernel lets this process use its tile data."""
    return bool(host_cpu_flags() & AMX_FLAGS) and _request_tile_data()


def usable_cpu_flags(flags: set[str] | None = None, tiles_granted: bool | None = None) -> set[str]:
    """The ISA flags a runtime can use here: the AMX flags count only where the kernel grants
    tile data (arguments override what is read, for tests)."""
    flags = host_cpu_flags() if flags is None else set(flags)
    if flags & AMX_FLAGS:
        granted = amx_tiles_granted() if tiles_granted is None else tiles_granted
        if not granted:
            flags -= AMX_FLAGS
    return flags


def detect_host(
    device_tree_model: str | None = None,
    cpu_flags: set[str] | None = None,
    machine: str | None = None,
    has_nvidia_gpu: bool | None = None,
    amx_tiles: bool | None = None,
) -> DeviceProfile | None:
    """The profile of the machine this runs on (arguments override what is read, for tests).

    A CPU profile matches when the host has all its ISA flags; AMX flags count only where the
    kernel grants tile data (`usable_cpu_flags`). None where nothing matches (e.g. an x86 CPU
    without AVX2).
    """
    profiles = load_profiles()
    if device_tree_model is None:
        device_tree_model = _read("/proc/device-tree/model").replace("\x00", "")
        # Thor's platform scripts name the board by its DMI product name instead.
        device_tree_model += "\n" + _read("/sys/devices/virtual/dmi/id/product_name")
    for profile in profiles.values():
        if profile.detect and profile.detect in device_tree_model:
            return profile
    if has_nvidia_gpu is None:
        has_nvidia_gpu = os.path.isdir("/proc/driver/nvidia/gpus") or _gpu_names() is not None
    if has_nvidia_gpu and "cuda-gpu" in profiles:
        return profiles["cuda-gpu"]
    flags = usable_cpu_flags(cpu_flags, amx_tiles)
    machine = (machine or platform.machine()).lower()
    arm = machine in ("aarch64", "arm64")
    cpus = [p for p in profiles.values() if p.kind == "cpu" and (p.name.startswith("arm") == arm)]
    for profile in sorted(cpus, key=lambda p: -p.peak_int8_tops / max(p.cores, 1)):
        if set(profile.isa) <= flags:
            return profile
    return None

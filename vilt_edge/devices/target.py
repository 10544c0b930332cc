"""One `Target`: a `--target` name resolved once, to everything the stages need.

    from vilt_edge.devices import resolve_target
    target = resolve_target("cpu")          # this host's CPU profile, detected
    target.quantize_preset, target.model_file, target.session_settings(threads=None)

Every stage (quantize, compile, validate, pipeline, the CLI's help) asks this module, so adding
a device is adding one TOML profile: its `quantize_preset`, `runtime`, `model_format`, cores and
memory decide the INT8 layout, the runtime, the compiled file and the session settings.
Two names are not files: `cpu` (the CPU profile this host matches) and `tensorrt` (any TensorRT
device: the TensorRT INT8 layout, with the cuda-gpu profile's figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vilt_edge.devices.host import detect_host, host_cores
from vilt_edge.devices.profiles import DeviceProfile, load_profiles
from vilt_edge.errors import InputError
from vilt_edge.quantize.presets import PRESETS, Preset

HOST_CPU = "cpu"
ALIASES = {"tensorrt": "cuda-gpu"}


@dataclass(frozen=True)
class Target:
    """A device profile as the stages read it. `requested` is the name the user gave."""

    profile: DeviceProfile
    requested: str

    @property
    def name(self) -> str:
        return self.profile.name

    @property
    def kind(self) -> str:
        return self.profile.kind

    @property
    def is_cpu(self) -> bool:
        return self.profile.kind == "cpu"

    @property
    def runtime(self) -> str:
        return self.profile.runtime

    @property
    def quantize_preset(self) -> str:
        return self.profile.quantize_preset

    @property
    def preset(self) -> Preset:
        """How INT8 is laid out for this target's runtime (`vilt_edge.quantize.presets`)."""
        return PRESETS[self.profile.quantize_preset]

    @property
    def quantize_family(self) -> str:
        """Which runtime family ("cpu" or "tensorrt") an INT8 bundle for this target is for."""
        return self.preset.family

    @property
    def model_file(self) -> str:
        """The compiled model's file name for a CPU target."""
        return f"model.{self.profile.model_format}"

    @property
    def is_host(self) -> bool:
        """Named `cpu`: this machine's own CPU, not a device of the same family elsewhere."""
        return self.requested.strip().lower() == HOST_CPU

    def session_settings(self, threads: int | None) -> dict[str, Any]:
        """ONNX Runtime session settings a compiled CPU bundle records for its runtime: one
        thread per core of the device (of this machine, for `cpu`: the profile's reference
        device may have more cores, and more threads than cores is 2-3x slower, measured)."""
        cores = host_cores() if self.is_host else self.profile.cores
        return {
            "intra_op_num_threads": threads or cores,
            # Small devices keep memory for the app: no arena that holds on to peak usage.
            "enable_cpu_mem_arena": self.profile.memory_gb >= 8,
            # No per-shape activation plan: less peak memory at the same latency.
            "enable_mem_pattern": False,
        }


def target_names() -> list[str]:
    """Every name `--target` takes: cpu, the profiles, the aliases."""
    return [HOST_CPU, *load_profiles(), *ALIASES]


def resolve_target(name: str) -> Target:
    """The target a `--target` name means; one line naming the choices if it means none."""
    key = name.strip().lower()
    if key == HOST_CPU:
        host = detect_host(has_nvidia_gpu=False)
        if host is None:
            raise InputError("no CPU device profile matches this host; name a --target")
        return Target(host, name)
    profiles = load_profiles()
    profile = profiles.get(ALIASES.get(key, key))
    if profile is None:
        raise InputError(f"unknown target {name!r}; choose one of: {', '.join(target_names())}")
    return Target(profile, name)

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
    def execution_provider(self) -> str:
        """ONNX Runtime's provider this CPU target's bundles run on: "openvino" where the
        profile names OpenVINO's first (x86-amx), else "cpu"."""
        first = self.profile.onnxruntime_providers[:1]
        return "openvino" if first == ("OpenVINOExecutionProvider",) else "cpu"

    def execution_provider_for(self, precision: str, mode: str | None = None) -> str:
        """ONNX Runtime's provider for a bundle of `precision` (INT8: quantized in `mode`): the
        target's, except for dynamic INT8 (always an ONNX Runtime layout), whose
        DynamicQuantizeMatMul ops OpenVINO's provider hands back to the CPU provider one by one
        (176.7 ms on an AMX Xeon against 34.5 ms on the CPU provider, issue 18's table; the
        static ONNX Runtime layout ran 32.2 ms there through OpenVINO's provider, 35-38 on the
        CPU provider, so it keeps the target's)."""
        if precision == "int8" and mode == "dynamic":  # only ONNX Runtime layouts are dynamic
            return "cpu"
        return self.execution_provider

    def runtime_for(self, precision: str, preset: str | None = None) -> str:
        """The runtime a compiled bundle of `precision` (INT8: quantized with `preset`) names:
        the profile's, except on a target whose ONNX Runtime provider is its CPU one: OpenVINO
        for BF16 (that provider has no BF16 on x86) and, where the profile lists OpenVINO among
        its runtimes (x86), for INT8 in an OpenVINO layout."""
        if self.runtime == "onnxruntime" and not self.on_openvino:
            if precision == "bf16":
                return "openvino"
            openvino_layout = openvino_precision_of(preset) is not None
            if precision == "int8" and openvino_layout and "openvino" in self.profile.runtimes:
                return "openvino"
        return self.runtime

    @property
    def on_openvino(self) -> bool:
        """Whether this target's bundles run on OpenVINO (directly, or as ORT's provider)."""
        return self.runtime == "openvino" or self.execution_provider == "openvino"

    def runs_on_openvino(
        self, precision: str, preset: str | None = None, mode: str | None = None
    ) -> bool:
        """Whether a compiled bundle of `precision` (INT8: `preset`, `mode`) runs on OpenVINO."""
        if self.runtime_for(precision, preset) == "openvino":
            return True
        return self.runtime == "onnxruntime" and (
            self.execution_provider_for(precision, mode) == "openvino"
        )

    @property
    def openvino_int8(self) -> bool:
        """Whether static INT8 for this target takes its profile's OpenVINO layout: the profile
        names one (`openvino_preset`, chosen by measurement on the family) and OpenVINO is
        installed here. Without it, the family's ONNX Runtime layout, as before."""
        return bool(self.profile.openvino_preset) and openvino_installed()

    def preset_for(self, mode: str = "static") -> Preset:
        """How INT8 of `mode` is laid out for this target (`vilt_edge.quantize.presets`)."""
        if mode == "static" and self.openvino_int8:
            return PRESETS[self.profile.openvino_preset]
        if mode == "dynamic" and self.profile.dynamic_preset:
            return PRESETS[self.profile.dynamic_preset]
        return PRESETS[self.profile.quantize_preset]

    @property
    def quantize_preset(self) -> str:
        return self.profile.quantize_preset

    @property
    def preset(self) -> Preset:
        """How static INT8 (the default) is laid out for this target (`preset_for`)."""
        return self.preset_for("static")

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

    def session_settings(
        self,
        threads: int | None,
        precision: str = "fp32",
        preset: str | None = None,
        mode: str | None = None,
    ) -> dict[str, Any]:
        """Session settings a compiled CPU bundle records for its runtime: one thread per core
        of the device (of this machine, for `cpu`: the profile's reference device may have more
        cores, and more threads than cores is 2-3x slower, measured); on OpenVINO, the
        precision it computes float parts in (INT8: that of its OpenVINO `preset`, if any)."""
        cores = host_cores() if self.is_host else self.profile.cores
        settings: dict[str, Any] = {
            "intra_op_num_threads": threads or cores,
            # Small devices keep memory for the app: no arena that holds on to peak usage.
            "enable_cpu_mem_arena": self.profile.memory_gb >= 8,
            # No per-shape activation plan: less peak memory at the same latency.
            "enable_mem_pattern": False,
        }
        on_ort = self.runtime_for(precision, preset) == "onnxruntime"
        provider = self.execution_provider_for(precision, mode)
        if on_ort and provider != "cpu":
            settings["execution_provider"] = provider
        if self.runs_on_openvino(precision, preset, mode):
            # FP32 stays FP32 (OpenVINO's own default on AMX is BF16). BF16 bundles compute in
            # BF16; so do the float parts of INT8 bundles on a BF16 target (the INT8 accuracy
            # budget covers them), as OpenVINO does by default there.
            layout_precision = openvino_precision_of(preset)
            if precision == "int8" and layout_precision is not None:
                settings["inference_precision"] = layout_precision
            else:
                bf16_target = "bf16" in self.profile.precisions
                bf16 = precision == "bf16" or (precision == "int8" and bf16_target)
                settings["inference_precision"] = "bf16" if bf16 else "f32"
        return settings


def openvino_precision_of(preset: str | None) -> str | None:
    """The float precision of an OpenVINO INT8 layout ("f32" | "bf16"); None for any other."""
    layout = PRESETS.get(preset or "")
    return layout.openvino_precision if layout is not None and layout.openvino_precision else None


def openvino_installed() -> bool:
    """Whether OpenVINO (the openvino extra) can be imported here."""
    import importlib.util

    return importlib.util.find_spec("openvino") is not None


def target_names() -> list[str]:
    """Every name `--target` takes: cpu, the profiles, the aliases."""
    return [HOST_CPU, *load_profiles(), *ALIASES]


def resolve_target(name: str) -> Target:
    """The target a `--target` name means; one line naming the choices if it means none."""
    key = name.strip().lower()
    if key == HOST_CPU:
        host = detect_host(has_nvidia_gpu=False)
        if host is not None and Target(host, name).execution_provider == "openvino":
            import importlib.util

            if importlib.util.find_spec("onnxruntime_ep_openvino") is None:
                # Without the openvino extra an AMX host stays what it was before x86-amx
                # existed: the AVX-512 VNNI family on ONNX Runtime's CPU provider.
                host = detect_host(has_nvidia_gpu=False, amx_tiles=False)
        if host is None:
            raise InputError("no CPU device profile matches this host; name a --target")
        return Target(host, name)
    profiles = load_profiles()
    profile = profiles.get(ALIASES.get(key, key))
    if profile is None:
        raise InputError(f"unknown target {name!r}; choose one of: {', '.join(target_names())}")
    return Target(profile, name)

"""What `vilt-edge quantize` is asked (`QuantizeOptions`) and what it returns (`QuantizeResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from vilt_edge.bundle import Bundle
from vilt_edge.devices.target import Target, resolve_target
from vilt_edge.errors import InputError
from vilt_edge.quantize.presets import Preset
from vilt_edge.records import INT8_MODES, QUANTIZED_PRECISIONS, QuantizeRecord


def preset_for(target: str) -> Preset:
    """The INT8 preset a `--target` name's device profile names (`quantize_preset`)."""
    return resolve_target(target).preset


PRECISIONS = QUANTIZED_PRECISIONS
MODES = INT8_MODES
METHODS = ("minmax", "entropy", "percentile")
FP16_MAX = 65504.0
# A tensor whose calibration range reaches half of FP16's largest value is kept in FP32: unseen
# inputs may push it over, and an inf propagates to every answer.
FP16_SAFE = FP16_MAX / 2
# The fallback keeps at most this share of the layer groups in FP32; past that the model is not
# meaningfully INT8 any more and the user should hear so.
MAX_FALLBACK_SHARE = 0.5
DEFAULT_CALIB_FOR_DEFAULT_MODEL = "easy-vqa:train"


def check_bf16(target: Target) -> None:
    """BF16 needs AMX-BF16 or AVX512-BF16: on this host for `cpu`, in the profile otherwise."""
    if target.is_host:
        from vilt_edge.devices.host import machine_description, usable_cpu_flags
        from vilt_edge.runtimes.openvino import BF16_FLAGS

        if not set(BF16_FLAGS) & usable_cpu_flags():
            raise InputError(
                f"--precision bf16 needs a CPU with AMX-BF16 or AVX512-BF16, and this one "
                f"({machine_description()['cpu']}) has neither; name the device with --target "
                f"(e.g. x86-amx) to make a BF16 bundle for it"
            )
    elif "bf16" not in target.profile.precisions:
        raise InputError(
            f"{target.name} does not run BF16 (it runs "
            f"{', '.join(p.upper() for p in target.profile.precisions)})"
        )


@dataclass(frozen=True)
class QuantizeOptions:
    precision: str
    mode: str = "static"
    calib: str | None = None
    calib_size: int = 128
    method: str = "minmax"
    target: str = "cpu"
    max_drop: float | None = None  # accuracy points
    eval_size: int = 500  # held-out examples for --max-drop
    seed: int = 0
    threads: int | None = None
    overwrite: bool = False

    def check(self) -> Preset:
        if self.precision not in PRECISIONS:
            raise InputError(f"unknown precision {self.precision!r}; choose int8, fp16 or bf16")
        if self.mode not in MODES:
            raise InputError(f"unknown mode {self.mode!r}; choose static or dynamic")
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; choose {', '.join(METHODS)}")
        target = resolve_target(self.target)
        preset = target.preset_for(self.mode)
        if self.precision == "bf16":
            check_bf16(target)
        if self.precision in ("fp16", "bf16") and self.mode == "dynamic":
            raise InputError(f"--mode dynamic is INT8 only; {self.precision.upper()} has no modes")
        if self.precision == "int8" and self.mode == "dynamic" and not preset.dynamic_ok:
            raise InputError(
                f"target {self.target} runs INT8 from explicit Q/DQ only; use --mode static"
            )
        if self.max_drop is not None:
            if self.precision != "int8":
                raise InputError(
                    f"--max-drop applies to INT8; {self.precision.upper()} has no layers to fall "
                    f"back"
                )
            if not np.isfinite(self.max_drop) or self.max_drop < 0:
                raise InputError(f"--max-drop must be a number of points >= 0, not {self.max_drop}")
            if self.eval_size < 1:
                raise InputError("--eval-size must be at least 1")
        if self.calib_size < 1:
            raise InputError("--calib-size must be at least 1")
        return preset

    @property
    def needs_data(self) -> bool:
        if self.precision == "bf16":
            return False  # BF16 keeps FP32's range: no overflow check, no calibration
        return self.precision == "fp16" or self.mode == "static" or self.max_drop is not None


@dataclass(frozen=True)
class QuantizeResult:
    """The new bundle and what was recorded in its manifest (`record`, also `--json`'s output)."""

    bundle: Bundle
    record: QuantizeRecord

    @property
    def precision(self) -> str:
        return self.record.precision

    @property
    def fallback(self) -> dict[str, Any] | None:
        """`--max-drop`'s outcome: measured drop, agreement, layer groups kept in FP32."""
        return self.record.data.get("fallback")

    def to_json(self) -> dict[str, Any]:
        return {"bundle": str(self.bundle.path), **self.record.to_json()}

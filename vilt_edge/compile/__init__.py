"""`vilt-edge compile`: make a bundle ready for one device.

    from vilt_edge.compile import CompileOptions, compile_bundle
    options = CompileOptions(target="jetson-orin-nano")
    result = compile_bundle("out/int8", "out/orin", options)   # a CompileResult
    result.bundle, result.target, result.note

CPU targets (x86-avx512-vnni, x86-avx2, arm64; `cpu` is this host's): ONNX Runtime's offline
graph optimization (the extended level, which holds on any CPU of the family; the layout-specific
level is applied at load time), saved as ONNX, or in ONNX Runtime's own ORT format for arm64
(what its mobile and minimal builds load), with session settings from the device profile
(threads, memory arena) in the manifest, which the runtime applies.

GPU targets (the Jetsons, cuda-gpu): the readiness check (`vilt_edge.compile.readiness`), then a
TensorRT engine built with TensorRT's Python API where TensorRT and a GPU are present
(`vilt_edge.compile.tensorrt`); elsewhere a bundle holding the ONNX model and the build step to
run on the device (`gpu`).

`options` holds what compile is asked and returns; `write` writes every compiled bundle.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Bundle, check_output
from vilt_edge.compile.cpu import compile_for_cpu
from vilt_edge.compile.options import COMPILERS, CompileOptions, CompileResult
from vilt_edge.devices import Target
from vilt_edge.errors import InputError

__all__ = ["COMPILERS", "CompileOptions", "CompileResult", "check_precision", "compile_bundle"]


def check_precision(bundle: Bundle, target: Target) -> None:
    """A bundle's precision must be one the device runs, quantized for its runtime family."""
    profile = target.profile
    precision = bundle.manifest.precision
    if precision not in profile.precisions:
        raise InputError(
            f"{profile.name} does not run {precision.upper()} (it runs "
            f"{', '.join(p.upper() for p in profile.precisions)}); compile an "
            f"{'FP32 or INT8' if target.is_cpu else 'FP16 or INT8'} bundle"
        )
    quantized = bundle.manifest.quantize_record
    family = quantized.preset_family if quantized is not None else None
    if family is not None and family != target.quantize_family:
        raise InputError(
            f"this INT8 bundle was quantized for {family} (preset {quantized.preset_name}); "
            f"quantize the FP32 source with --target {profile.name} for {profile.name}"
        )
    compiled = bundle.manifest.compile_record
    if compiled and compiled.pending_build and compiled.target == profile.name:
        return  # a build kit, compiled on the device it was made for
    if compiled:
        raise InputError(
            f"{bundle.path} is already compiled for {compiled.target}; compile its source bundle"
        )


def compile_bundle(
    source: str | Path,
    out: str | Path | None,
    options: CompileOptions,
    status: Callable[[str], None] | None = None,
) -> CompileResult:
    """Compile `source` for `options.target` into a new bundle at `out` (atomic).

    With `check_only` only the readiness check runs (GPU targets) and nothing is written;
    the result's bundle is then None.
    """
    status = status or (lambda message: None)
    if out is not None and not options.check_only:  # before any slow work
        check_output(out, options.overwrite, inputs=() if str(source) == "default" else (source,))
    from vilt_edge.default_bundle import open_bundle

    bundle = open_bundle(source)
    target = options.resolve()
    profile = target.profile
    options.check(profile, bundle.manifest.patch_size)
    check_precision(bundle, target)
    summary: dict[str, Any] = {"target": target.name, "kind": target.kind}
    if options.image_short_side is not None:
        # Fewer image tokens: the bundle preprocesses to the new size (the exported graph takes
        # any multiple of the patch size; position embeddings are interpolated to the grid).
        side = options.image_short_side
        prep = dataclasses.replace(
            bundle.preprocessing, shortest_edge=side, longest_edge=int(1333 / 800 * side)
        )
        bundle = dataclasses.replace(bundle, preprocessing=prep)
        summary["resolution"] = {"shortest_edge": side, "longest_edge": prep.longest_edge}

    if target.is_cpu:
        built, summary = compile_for_cpu(bundle, target, out, options, status, summary)
    else:
        from vilt_edge.compile.gpu import compile_for_gpu

        built, summary = compile_for_gpu(bundle, profile, out, options, status, summary)
    return CompileResult.from_summary(built, summary)

"""CPU targets: ONNX Runtime's offline graph optimization, saved in the target's model format,
with the session settings its profile gives (`Target.session_settings`). Targets that run on
OpenVINO (x86-amx through ONNX Runtime's OpenVINO provider; BF16 bundles; INT8 bundles of an
OpenVINO layout, run by OpenVINO directly on other x86 targets) keep the standard
ONNX graph as it is: ONNX Runtime's fused contrib ops would fall back to its CPU provider, and
OpenVINO compiles the graph for the CPU at load (into its model cache)."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Bundle, external_data_file
from vilt_edge.compile.options import CompileOptions
from vilt_edge.compile.write import write_compiled
from vilt_edge.devices import Target
from vilt_edge.errors import BundleError, InputError, first_line


def _openvino_files(
    bundle: Bundle, target: Target, options: CompileOptions, staging: Path
) -> dict[str, Any]:
    import onnxruntime

    precision, preset, mode = _layout(bundle)
    if precision == "int8" and mode == "dynamic":
        raise InputError(
            f"{target.name} runs INT8 on OpenVINO, which does not run dynamic INT8's ONNX Runtime "
            f"ops; quantize the FP32 source with --mode static --target {target.name}"
        )
    model_file = bundle.manifest.model_file
    shutil.copyfile(bundle.model_path, staging / model_file)
    weights = bundle.model_path.with_name(external_data_file(model_file))
    if weights.is_file():
        shutil.copyfile(weights, staging / weights.name)
    runtime = target.runtime_for(precision, preset)
    return {
        "model_file": model_file,
        "format": "onnx",
        "optimization": "none offline: OpenVINO compiles the graph at load, into its model cache",
        "runtime": runtime,
        "onnxruntime": onnxruntime.__version__,
        "runtime_settings": target.session_settings(options.threads, precision, preset, mode),
    }


def _cpu_files(
    bundle: Bundle, target: Target, options: CompileOptions, staging: Path
) -> dict[str, Any]:
    import onnxruntime

    if target.runs_on_openvino(*_layout(bundle)):
        return _openvino_files(bundle, target, options, staging)
    model_file = target.model_file
    session = onnxruntime.SessionOptions()
    session.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session.optimized_model_filepath = str(staging / model_file)
    if model_file.endswith(".ort"):
        session.add_session_config_entry("session.save_model_format", "ORT")
    session.intra_op_num_threads = 1
    if bundle.model_path.with_name(external_data_file(bundle.model_path.name)).is_file():
        if model_file.endswith(".onnx"):  # keep the weights memory-mappable (ORT format: inline)
            session.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name",
                external_data_file(model_file),
            )
            session.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
    try:
        onnxruntime.InferenceSession(
            str(bundle.model_path), sess_options=session, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        raise BundleError(
            f"onnxruntime cannot optimize {bundle.model_path}: {first_line(error)}"
        ) from None
    return {
        "model_file": model_file,
        "format": "ort" if model_file.endswith(".ort") else "onnx",
        "optimization": "onnxruntime extended graph optimizations, offline",
        "onnxruntime": onnxruntime.__version__,
        "runtime": target.runtime,
        "runtime_settings": target.session_settings(options.threads, *_layout(bundle)),
    }


def _layout(bundle: Bundle) -> tuple[str, str | None, str | None]:
    """The bundle's precision and, for INT8, the preset and mode it was quantized with: its
    layout decides its runtime and provider."""
    quantized = bundle.manifest.quantize_record
    if quantized is None:
        return bundle.manifest.precision, None, None
    return bundle.manifest.precision, quantized.preset_name, quantized.mode


def compile_for_cpu(
    bundle: Bundle,
    target: Target,
    out: str | Path | None,
    options: CompileOptions,
    status: Callable[[str], None],
    summary: dict[str, Any],
) -> tuple[Bundle | None, dict[str, Any]]:
    if options.check_only:
        summary["ready"] = True
        summary["checks"] = ["CPU targets run every op of the exported graph in ONNX Runtime"]
        return None, summary
    if out is None:
        raise InputError("--out is required unless --check")
    if target.runs_on_openvino(*_layout(bundle)):
        status(f"preparing the graph for {target.name} (OpenVINO compiles it at load)")
    else:
        status(f"optimizing the graph for {target.name} (ONNX Runtime, offline)")
    with tempfile.TemporaryDirectory(prefix="vilt-edge-compile-") as temp:
        work = Path(temp)
        record = _cpu_files(bundle, target, options, work)
        summary.update(record)
        return write_compiled(bundle, target.profile, out, options, work, record, summary), summary

"""INT8 (static Q/DQ or dynamic) and FP16 bundles from an FP32 bundle, with onnxruntime's tools.

    from vilt_edge.quantize import QuantizeOptions, quantize_bundle

    result = quantize_bundle(
        "out/fp32", "out/int8",
        QuantizeOptions(precision="int8", calib="easy-vqa:train", target="cpu", max_drop=0.5),
    )
    result.bundle, result.record.preset_name, result.fallback

The arithmetic is `onnxruntime.quantization` (calibration, scales, Q/DQ insertion, dynamic
MatMulInteger) and `onnxruntime.transformers.float16` (FP16 conversion); this module chooses their
settings per target (`presets`), feeds them real calibration examples, and adds what they do not
do: the accuracy-driven fallback (`--max-drop`) and the FP16 overflow check.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge import __version__
from vilt_edge.bundle import (
    check_output,
    derived_manifest_fields,
    external_data_file,
    save_model,
    write_bundle,
)
from vilt_edge.data import DataSet, check_task, load_data, score
from vilt_edge.devices import target as targets
from vilt_edge.devices.roofline import working_dir
from vilt_edge.errors import BundleError, DataError, InputError, first_line
from vilt_edge.quantize.calibration import FeedReader, split_calibration
from vilt_edge.quantize.graph import (
    activation_matmuls,
    fuse_for_onnxruntime_cpu,
    keep_float_consumers,
    layer_groups,
    name_unnamed_nodes,
    remove_dangling_qdq,
)
from vilt_edge.quantize.options import (
    DEFAULT_CALIB_FOR_DEFAULT_MODEL,
    FP16_SAFE,
    MAX_FALLBACK_SHARE,
    QuantizeOptions,
    QuantizeResult,
)
from vilt_edge.quantize.presets import Preset
from vilt_edge.records import QuantizeRecord, RuntimeSettings


def _ort_types(preset: Preset):
    from onnxruntime.quantization import QuantType

    return getattr(QuantType, preset.activation_type), getattr(QuantType, preset.weight_type)


def _method(name: str):
    from onnxruntime.quantization import CalibrationMethod

    return {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[name]


class _Session:
    """Logits of an ONNX model file on prepared examples: each example is the list of feed
    dicts `ViltRuntime.feeds` gives for it (one for VQA; for NLVR2, its images, whose pooled
    outputs the bundle's pair head `head` reads side by side)."""

    def __init__(self, path: Path, threads: int | None, head: Path | None = None) -> None:
        from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner

        self.runner = OnnxRuntimeRunner(path, threads=threads)
        self.head = OnnxRuntimeRunner(head, threads=threads) if head is not None else None

    def logits(self, examples: list[list[dict[str, np.ndarray]]]) -> np.ndarray:
        rows = []
        for feeds in examples:
            outputs = np.concatenate([self.runner.run(f) for f in feeds])
            if self.head is not None:
                outputs = self.head.run({"pooled": outputs.reshape(1, -1).astype(np.float32)})
            rows.append(outputs)
        return np.concatenate(rows).astype(np.float64)


class Quantizer:
    def __init__(
        self,
        source: str | Path,
        options: QuantizeOptions,
        status: Callable[[str], None] | None = None,
        on_progress: Callable[[str, int, int], None] | None = None,
    ) -> None:
        from vilt_edge.runtime import ViltRuntime

        self.options = options
        self.preset = options.check()
        self.status = status or (lambda message: None)
        self.on_progress = on_progress or (lambda stage, done, total: None)
        self.runtime = ViltRuntime.load(source, threads=options.threads)
        manifest = self.runtime.manifest
        if manifest.precision != "fp32":
            raise BundleError(
                f"{self.runtime.bundle.path} is already {manifest.precision}; quantize its FP32 "
                f"source ({manifest.source.get('bundle', 'the exported bundle')})"
            )
        self.fusions: dict[str, int] | str | None = None
        self.data: DataSet | None = None
        if options.needs_data:
            spec = options.calib
            if spec is None and manifest.source.get("kind") == "default":
                spec = DEFAULT_CALIB_FOR_DEFAULT_MODEL
            if spec is None:
                what = "FP16's overflow check" if options.precision == "fp16" else "static INT8"
                if options.max_drop is not None:
                    what = "--max-drop"
                raise InputError(f"{what} needs real examples: pass --calib DATA (e.g. vqav2:DIR)")
            self.data = load_data(spec)
            check_task(self.data, self.runtime.task, f"{self.runtime.bundle.path}")
            held_out = options.eval_size if options.max_drop is not None else 0
            self.split = split_calibration(self.data, options.calib_size, held_out, options.seed)
            if options.max_drop is not None and len(self.split.held_out) == 0:
                raise DataError(
                    f"{self.data.name} has {len(self.data)} examples, all used for calibration; "
                    f"--max-drop needs held-out ones (lower --calib-size)"
                )

    # Steps

    def _prepare(self, work: Path) -> Path:
        """onnxruntime's recommended pre-processing (shape inference, basic graph optimization)."""
        import onnx
        from onnxruntime.quantization.shape_inference import quant_pre_process

        self.status("pre-processing the graph (shape inference, basic optimization)")
        prepared = (work / "prepared.onnx").resolve()
        source = Path(self.runtime.bundle.model_path).resolve()  # before changing directory
        try:
            # auto_merge: ORT's symbolic shape inference leaves the dynamic text axis incomplete
            # unless it may merge symbols (it only annotates shapes). The working directory is
            # the temporary one, where a failing inference drops its debugging copies.
            with working_dir(work):
                quant_pre_process(source, prepared, skip_symbolic_shape=False, auto_merge=True)
            self.preprocessed = True
        except Exception as error:  # noqa: BLE001 - a failed optional step is reported, not fatal
            self.preprocessed = f"skipped: {type(error).__name__}"
            shutil.copyfile(source, prepared)
            data = source.parent / external_data_file(source.name)
            if data.is_file():  # the copy refers to its weights by this file name
                shutil.copyfile(data, work / external_data_file(source.name))
        if self.options.precision == "int8" and self.preset.onnxruntime_fusions:
            self.status("fusing GELU and attention into ONNX Runtime's CPU ops")
            try:
                self.fusions = fuse_for_onnxruntime_cpu(prepared, prepared)
            except Exception as error:  # noqa: BLE001 - unfused is slower but still correct
                self.fusions = f"skipped: {type(error).__name__}: {first_line(error, '')}"
        model = onnx.load(prepared)
        name_unnamed_nodes(model)
        onnx.save(model, prepared)
        return prepared

    def _reader(self, data: DataSet, stage: str) -> FeedReader:
        total = len(data)
        done = [0]

        def advance(count: int) -> None:
            done[0] += count
            self.on_progress(stage, done[0], total)

        return FeedReader(self.runtime, data, on_progress=advance)

    def _int8(
        self,
        prepared: Path,
        out: Path,
        cache: Path,
        exclude: list[str] | None = None,
        only: list[str] | None = None,
    ) -> None:
        from onnxruntime.quantization import QuantFormat, quantize_dynamic, quantize_static

        preset, options = self.preset, self.options
        activation_type, weight_type = _ort_types(preset)
        if options.mode == "dynamic":
            # No ConvInteger: onnxruntime's took 18 ms on ViLT-B/32's patch projection at 384x512
            # where the float Conv takes 4.4 ms. Exports since EXPORT_REVISION 4 write that
            # projection as a MatMul, quantized like the others (NOTES-cpu-speed.md, step 13).
            op_types = [t for t in preset.op_types or ("MatMul", "Gemm") if t != "Conv"]
            quantize_dynamic(
                prepared,
                out,
                op_types_to_quantize=op_types,
                per_channel=True,
                reduce_range=preset.reduce_range,
                weight_type=weight_type,
                nodes_to_quantize=only,
                nodes_to_exclude=exclude,
                extra_options={"WeightSymmetric": True},
            )
            return
        if preset.float_attention:
            import onnx

            graph = onnx.load(prepared, load_external_data=False)
            exclude = [*(exclude or []), *activation_matmuls(graph)]
        reader = None
        if not cache.exists():
            reader = self._reader(self.split.calibration, "calibrating")
        quantize_static(
            prepared,
            out,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(preset.op_types) if preset.op_types else None,
            per_channel=True,
            reduce_range=preset.reduce_range,
            activation_type=activation_type,
            weight_type=weight_type,
            nodes_to_quantize=only,
            nodes_to_exclude=exclude,
            calibrate_method=_method(options.method),
            extra_options=dict(preset.extra_options),
            calibration_cache_path=cache,
        )
        if preset.inputs_only:
            import onnx

            model = onnx.load(out)
            if keep_float_consumers(model, set(preset.op_types or ())):
                remove_dangling_qdq(model)
                onnx.save(model, out)

    def _fp16(self, prepared: Path, out: Path, work: Path) -> dict[str, Any]:
        import onnx
        from onnxruntime.quantization import CalibrationMethod, create_calibrator
        from onnxruntime.transformers.float16 import (
            DEFAULT_OP_BLOCK_LIST,
            convert_float_to_float16,
        )

        self.status("measuring activation ranges for the FP16 overflow check")
        calibrator = create_calibrator(
            prepared,
            None,  # every float tensor
            augmented_model_path=str(work / "ranges.onnx"),
            calibrate_method=CalibrationMethod.MinMax,
        )
        calibrator.collect_data(self._reader(self.split.calibration, "overflow check"))
        ranges = calibrator.compute_data()
        model = onnx.load(prepared)
        overflowing = {}
        for name, tensor_range in ranges.data.items():
            low, high = tensor_range.range_value
            peak = float(max(np.max(np.abs(low)), np.max(np.abs(high))))
            if peak > FP16_SAFE:
                overflowing[name] = peak
        blocked = []
        for node in model.graph.node:
            touches = set(node.output) | set(node.input)
            if touches & overflowing.keys():
                blocked.append(node.name)
        sensitive_ops = ["LayerNormalization", "Softmax"]
        converted = convert_float_to_float16(
            model,
            keep_io_types=True,
            op_block_list=sorted(set(DEFAULT_OP_BLOCK_LIST) | set(sensitive_ops)),
            node_block_list=blocked,
        )
        onnx.save(converted, out)
        return {
            "ops_kept_fp32": sensitive_ops,
            "overflow_threshold": FP16_SAFE,
            "overflowing_tensors": {k: round(v, 1) for k, v in sorted(overflowing.items())},
            "nodes_kept_fp32": blocked,
        }

    def _held_out_feeds(self, data: DataSet) -> list[list[dict[str, np.ndarray]]]:
        feeds = []
        for index in range(len(data)):
            feeds.append(self.runtime.feeds(*data.inputs(index, index + 1)))
            self.on_progress("preparing held-out examples", index + 1, len(data))
        return feeds

    def _fallback(self, prepared: Path, out: Path, cache: Path, work: Path) -> dict[str, Any]:
        """Quantize, measure the drop on held-out examples, and keep the most sensitive layer
        groups in FP32 until the drop is within budget."""
        import onnx

        budget = float(self.options.max_drop)
        held_out = self.split.held_out
        labeled = _is_labeled(held_out)
        feeds = self._held_out_feeds(held_out)
        head = self.runtime.bundle.head_path
        reference = _Session(self.runtime.bundle.model_path, self.options.threads, head).logits(
            feeds
        )
        labels = self.runtime.labels
        reference_accuracy = (
            score(held_out, labels, reference.argmax(1)).accuracy if labeled else 1.0
        )

        def measure(model_path: Path) -> dict[str, float]:
            logits = _Session(model_path, self.options.threads, head).logits(feeds)
            agreement = float(np.mean(logits.argmax(1) == reference.argmax(1)))
            if labeled:
                accuracy = score(held_out, labels, logits.argmax(1)).accuracy
            else:  # no labels: the FP32 answers are the truth
                accuracy = agreement
            return {
                "accuracy": accuracy,
                "drop": round(100 * (reference_accuracy - accuracy), 4),
                "agreement": agreement,
            }

        self._int8(prepared, out, cache)
        first = measure(out)
        attempts = [{"kept_fp32": [], **first}]
        self.status(f"INT8 drop on {len(held_out)} held-out examples: {first['drop']:.2f} points")
        groups = layer_groups(onnx.load(prepared))
        sensitivity: dict[str, float] = {}
        kept: list[str] = []
        if first["drop"] > budget:
            sample = feeds[: min(64, len(feeds))]
            reference_sample = reference[: len(sample)]
            scale = float(np.mean(reference_sample**2)) or 1.0
            for number, (group, nodes) in enumerate(groups.items(), 1):
                self.on_progress("layer sensitivity", number, len(groups))
                trial = work / f"only-{group}.onnx"
                self._int8(prepared, trial, cache, only=nodes)
                logits = _Session(trial, self.options.threads, head).logits(sample)
                sensitivity[group] = float(np.mean((logits - reference_sample) ** 2)) / scale
                trial.unlink()
            order = sorted(groups, key=lambda g: -sensitivity[g])
            limit = int(len(groups) * MAX_FALLBACK_SHARE)
            current = first
            while current["drop"] > budget:
                if len(kept) >= limit:
                    raise DataError(
                        f"INT8 still loses {current['drop']:.2f} points (budget {budget:g}) "
                        f"with {len(kept)} of {len(groups)} layer groups kept in FP32 "
                        f"({', '.join(kept)}); try --method, a larger --calib-size, or FP16"
                    )
                kept.append(order[len(kept)])
                self.status(f"keeping {', '.join(kept)} in FP32 and re-quantizing")
                exclude = [name for group in kept for name in groups[group]]
                self._int8(prepared, out, cache, exclude=exclude)
                current = measure(out)
                attempts.append({"kept_fp32": list(kept), **current})
        return {
            "max_drop": budget,
            "held_out": {
                "size": len(held_out),
                "labeled": labeled,
                "fp32_accuracy": reference_accuracy,
            },
            "attempts": attempts,
            "sensitivity": {k: round(v, 8) for k, v in sensitivity.items()},
            "groups_kept_fp32": kept,
            "nodes_kept_fp32": [name for group in kept for name in groups[group]],
            "measured_drop": attempts[-1]["drop"],
            "agreement": attempts[-1]["agreement"],
        }

    def run(self, out: Path) -> QuantizeResult:
        import onnxruntime

        options = self.options
        source = self.runtime.bundle
        summary: dict[str, Any] = {
            "precision": options.precision,
            "mode": options.mode if options.precision == "int8" else None,
            "method": options.method if options.precision == "int8" else None,
            "target": options.target,
            "preset": self.preset.to_json() if options.precision == "int8" else None,
            "per_channel": options.precision == "int8",
            "calibration": self.split.describe() if self.data is not None else None,
            "nodes_kept_fp32": [],
            "tool": f"onnxruntime.quantization {onnxruntime.__version__}",
        }
        if options.precision == "bf16":
            return self._bf16(out, summary)
        with tempfile.TemporaryDirectory(prefix="vilt-edge-quantize-") as temp:
            work = Path(temp)
            prepared = self._prepare(work)
            summary["preprocessed"] = self.preprocessed
            summary["fusions"] = self.fusions
            model = work / "model.onnx"
            cache = work / "calibration.json"
            if options.precision == "fp16":
                fp16 = self._fp16(prepared, model, work)
                summary.update(fp16)
            elif options.max_drop is not None:
                fallback = self._fallback(prepared, model, cache, work)
                summary["fallback"] = fallback
                summary["nodes_kept_fp32"] = fallback["nodes_kept_fp32"]
            else:
                self.status(f"quantizing ({options.mode} INT8, {self.preset.name} preset)")
                self._int8(prepared, model, cache)

            def write_files(staging: Path) -> None:
                model_file = source.manifest.model_file
                save_model(model, staging / model_file)
                for name in source.manifest.files:
                    if name not in (model_file, external_data_file(model_file)):
                        shutil.copyfile(source.path / name, staging / name)

            record = QuantizeRecord.from_json(json.loads(json.dumps(summary)))
            records: dict[str, Any] = {"quantize": record}
            runtime = None
            openvino_layout = options.precision == "int8" and self.preset.openvino_precision
            if openvino_layout and targets.openvino_installed():
                # An OpenVINO layout runs on OpenVINO from here on (ONNX Runtime's CPU provider
                # runs it about 3x slower); `compile` then sets the target's own precision.
                runtime = "openvino"
                records["runtime_settings"] = RuntimeSettings({"inference_precision": "f32"})
            fields = derived_manifest_fields(
                source,
                precision=options.precision,
                vilt_edge_version=__version__,
                records=records,
                runtime=runtime,
            )
            bundle = write_bundle(
                out, fields, write_files, overwrite=options.overwrite, inputs=(source.path,)
            )
        return QuantizeResult(bundle, record)

    def _bf16(self, out: Path, summary: dict[str, Any]) -> QuantizeResult:
        """The FP32 graph as it is, to run at BF16 inference precision: no calibration (BF16
        keeps FP32's exponent range, so nothing can overflow), OpenVINO as its runtime."""
        source = self.runtime.bundle
        summary.update(inference_precision="bf16", tool="OpenVINO's BF16 inference precision")
        self.status("writing the BF16 bundle (the FP32 graph at BF16 inference precision)")

        def write_files(staging: Path) -> None:
            for name in source.manifest.files:
                shutil.copyfile(source.path / name, staging / name)

        record = QuantizeRecord.from_json(json.loads(json.dumps(summary)))
        fields = derived_manifest_fields(
            source,
            precision="bf16",
            vilt_edge_version=__version__,
            records={
                "quantize": record,
                "runtime_settings": RuntimeSettings({"inference_precision": "bf16"}),
            },
            runtime="openvino",
        )
        bundle = write_bundle(
            out, fields, write_files, overwrite=self.options.overwrite, inputs=(source.path,)
        )
        return QuantizeResult(bundle, record)


def _is_labeled(data: DataSet) -> bool:
    if data.task == "nlvr2":
        return all(e.label is not None for e in data.examples)
    return all(e.answers for e in data.examples)


def quantize_bundle(
    source: str | Path,
    out: str | Path,
    options: QuantizeOptions,
    status: Callable[[str], None] | None = None,
    on_progress: Callable[[str, int, int], None] | None = None,
) -> QuantizeResult:
    """Quantize the FP32 bundle `source` into a new bundle at `out` (written atomically)."""
    out = Path(out)
    # Before any slow work; "default" names the embedded model, not a path.
    check_output(out, options.overwrite, inputs=() if str(source) == "default" else (source,))
    return Quantizer(source, options, status, on_progress).run(out)

"""`vilt-edge pipeline`: the main job in one command.

    vilt-edge pipeline [MODEL] [--target cpu] [--data SPEC] [--layers K] -o OUT

Export the teacher; distill a student (unless `no_distill`); quantize each to the precisions the
target runs (INT8 with the target's preset; FP16 where the device computes in FP16); compile every
variant for the target; validate each against the FP32 teacher on the same data; write the
accuracy-versus-latency report. Every stage is the library call its own command makes, so
`OUT/` holds the same bundles, results and report those commands would.

Where the target's runtime cannot run here (a Jetson's TensorRT on this CPU machine), the
compiled bundles are build kits, and the variants are validated as their uncompiled bundles
on this machine: accuracy is the device's, latency is this machine's, and the summary says so.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vilt_edge.errors import BundleError, InputError, OutputError
from vilt_edge.outputs import (
    PIPELINE_MARKER,
    check_replaceable,
    same_or_inside,
    write_file_atomically,
)
from vilt_edge.records import PENDING_BUILD, READY

if TYPE_CHECKING:
    from vilt_edge.devices import Target
    from vilt_edge.report import ReportPaths

DEFAULT_DATA = "easy-vqa:test"
DEFAULT_TRAIN = "easy-vqa:train"
MARKER = PIPELINE_MARKER


@dataclass(frozen=True)
class PipelineOptions:
    model: str = "default"
    target: str = "cpu"
    data: str | None = None  # validation; default for the embedded model: easy-VQA test
    train: str | None = None  # distillation and calibration; default: easy-VQA train
    layers: int | None = None  # default: a third of the teacher's layers, at least 1
    distill: bool = True
    epochs: float = 3.0
    lr: float = 5e-4
    limit: int | None = None  # validation examples (default: all)
    calib_size: int = 128
    threads: int | None = None
    overwrite: bool = False

    def check(self) -> None:
        if self.layers is not None and self.layers < 1:
            raise InputError(f"--layers must be at least 1, not {self.layers}")
        if self.limit is not None and self.limit < 1:
            raise InputError("--limit must be at least 1")
        if self.epochs <= 0:
            raise InputError("--epochs must be positive")
        if self.threads is not None and self.threads < 1:
            raise InputError("--threads must be at least 1")


Stage = Callable[[str], None]
Advance = Callable[[str, int, int], None]


def _check_out(out: Path, overwrite: bool, inputs: list[str]) -> None:
    """Refuse an `out` the pipeline may not replace: one that exists without `overwrite`, one
    that is not a previous pipeline run (`vilt_edge.outputs`), or one holding its own input."""
    if not out.exists():
        return
    if not overwrite:
        raise BundleError(f"output exists: {out} (choose another path or pass --overwrite)")
    check_replaceable(out, "pipeline")
    inside = same_or_inside(out, [path for path in inputs if Path(path).exists()])
    if inside is not None:
        raise OutputError(
            f"{inside} is this pipeline's input and lies in {out}, which --overwrite would "
            "replace; write the pipeline to a new path"
        )


def _prepare_out(out: Path, overwrite: bool, inputs: list[str]) -> None:
    """A previous pipeline run in `out` is removed only now, after every input was checked.
    The stages then write into `out` in place: its bundles record each other's paths."""
    _check_out(out, overwrite, inputs)
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)


def _input_paths(options: PipelineOptions, *specs: str | None) -> list[str]:
    """The paths the pipeline reads: the model and the data specs' paths (`kind:PATH`)."""
    paths = [] if options.model == "default" else [options.model]
    for spec in specs:
        if spec and ":" in spec:
            paths.append(spec.split(":", 1)[1])
    return paths


# The side-by-side timing after validation (`_time_side_by_side`): 10 rounds of up to 100
# calls per variant, fewer where the validation passes say that would take over 2 minutes
# (ViLT-B/32: about 20 calls a turn; the default: 100, in seconds), never under 10.
SIDE_BY_SIDE_ROUNDS = 10
SIDE_BY_SIDE_CALLS = (10, 100)
SIDE_BY_SIDE_BUDGET_MS = 120_000
SIDE_BY_SIDE_WARMUP = 3  # untimed calls opening each turn (caches cold after another model)


@dataclass(frozen=True)
class PipelineResult:
    """What the pipeline did: one row per validated variant, the report's files, and how it
    distilled; `data` is the summary it also wrote to `pipeline.json`."""

    target: str
    report: ReportPaths
    rows: tuple[dict[str, Any], ...]
    distill_setting: str | None
    note: str | None
    data: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)


@dataclass
class _Run:
    """What the stages of one pipeline run share."""

    options: PipelineOptions
    out: Path
    target: Target
    stage: Stage
    advance: Advance
    train_spec: str | None
    train_size: int
    summary: dict[str, Any]


def run_pipeline(
    options: PipelineOptions,
    out: str | Path,
    stage: Stage | None = None,
    advance: Advance | None = None,
) -> PipelineResult:
    """Run every stage into `out`; returns what it did (also written to `out/pipeline.json`)."""
    # What the later stages import, now: a missing extra fails before the long stages.
    from vilt_edge.compile import compile_bundle  # noqa: F401
    from vilt_edge.data import load_data
    from vilt_edge.devices import resolve_target
    from vilt_edge.model.export import export_bundle
    from vilt_edge.model.loading import load_model
    from vilt_edge.quantize import quantize_bundle  # noqa: F401
    from vilt_edge.report import write_report

    options.check()
    stage = stage or (lambda message: None)
    advance = advance or (lambda label, done, total: None)
    out = Path(out)
    target = resolve_target(options.target)
    is_default = options.model == "default"
    data_spec = options.data or (DEFAULT_DATA if is_default else None)
    train_spec = options.train or (DEFAULT_TRAIN if is_default else None)
    if data_spec is None:
        raise InputError("--data is required for a model other than the default")
    if train_spec is None and options.distill:
        raise InputError("--train (distillation and calibration data) is required; or --no-distill")
    # Fail on bad input before the long stages: the output folder, the model, the data.
    inputs = _input_paths(options, data_spec, train_spec)
    _check_out(out, options.overwrite, inputs)
    stage("loading the teacher")
    teacher = load_model(options.model)
    data = load_data(data_spec).limited(options.limit)
    train_size = len(load_data(train_spec)) if train_spec else 0
    _prepare_out(out, options.overwrite, inputs)
    summary: dict[str, Any] = {"options": asdict(options), "target": target.name, "stages": []}
    write_file_atomically(out / MARKER, json.dumps(summary, indent=2) + "\n")
    run = _Run(options, out, target, stage, advance, train_spec, train_size, summary)

    stage("exporting the teacher")
    models = {"teacher": export_bundle(teacher, out / "teacher-fp32").path}
    if options.distill:
        models["student"] = _distill_student(run, teacher.config.num_hidden_layers)
    variants = _quantize(run, models)
    runnable = _compile(run, variants)
    validated = _validate(run, runnable, models["teacher"], data)
    paths, rows = _write_results(run, _time_side_by_side(run, runnable, data, validated))
    stage("writing the report")
    report = write_report(paths, out / "report")
    summary.update(
        rows=rows,
        report={"html": str(report.html), "markdown": str(report.markdown), "png": str(report.png)},
        data=data.name,
        n=len(data),
    )
    write_file_atomically(out / MARKER, json.dumps(summary, indent=2) + "\n")
    return PipelineResult(
        target=target.name,
        report=report,
        rows=tuple(rows),
        distill_setting=summary.get("distill_setting"),
        note=summary.get("note"),
        data=summary,
    )


def _distill_student(run: _Run, layers_total: int) -> Path:
    """The student, distilled from the teacher and exported; returns its FP32 bundle."""
    from vilt_edge.distill import DEFAULT_EPOCHS, DEFAULT_LR, DistillOptions
    from vilt_edge.distill import distill as run_distill
    from vilt_edge.model.export import export_bundle

    options, out = run.options, run.out
    layers = options.layers or max(1, round(layers_total / 3))
    if layers >= layers_total:
        raise InputError(f"--layers must be below the teacher's {layers_total}")
    setting = (
        f"{layers_total} layers into {layers}, {options.epochs:g} epochs at a peak learning "
        f"rate of {options.lr:g}: the pipeline's faster setting (`vilt-edge distill` "
        f"defaults to {DEFAULT_EPOCHS:g} epochs at {DEFAULT_LR:g}, the recipe measured "
        "within a point of the teacher)"
    )
    run.summary["distill_setting"] = setting
    run.stage(f"distilling {setting}")
    distill_options = DistillOptions(
        layers=layers, data=run.train_spec, epochs=options.epochs, lr=options.lr,
        threads=options.threads, eval_size=max(1, min(200, run.train_size // 10)),
    )  # fmt: skip
    distilled = run_distill(
        options.model,
        out / "student",
        distill_options,
        on_progress=lambda p: run.advance("distill", p.step, p.total),
    )
    run.summary["distill"] = {k: v for k, v in distilled.summary.items() if k != "history"}
    run.stage("exporting the student")
    return export_bundle(out / "student", out / "student-fp32").path


def _quantize(run: _Run, models: dict[str, Path]) -> dict[str, Path]:
    """Every model at FP32 and at each precision the target runs faster (INT8 with the
    target's preset; FP16 on GPUs): variant name -> bundle."""
    from vilt_edge.quantize import QuantizeOptions, quantize_bundle

    options, target = run.options, run.target
    precisions = [p for p in ("int8", "fp16") if p in target.profile.precisions]
    variants: dict[str, Path] = {}
    for name, fp32 in models.items():
        variants[f"{name}-fp32"] = fp32
        for precision in precisions:
            if precision == "fp16" and target.is_cpu:
                continue  # CPUs here run FP16 at FP32 speed (measured); INT8 is the CPU win
            run.stage(f"quantizing the {name} to {precision.upper()}")
            size = min(options.calib_size, max(16, run.train_size // 2))
            calib = dict(calib=run.train_spec, calib_size=size) if run.train_spec else {}
            quantized = quantize_bundle(
                fp32,
                run.out / f"{name}-{precision}",
                QuantizeOptions(
                    precision=precision, target=target.name, threads=options.threads, **calib
                ),  # fmt: skip
                on_progress=lambda label, done, total: run.advance(label, done, total),
            )
            variants[f"{name}-{precision}"] = quantized.bundle.path
    return variants


def _compile(run: _Run, variants: dict[str, Path]) -> dict[str, Path]:
    """Each variant compiled for the target: variant name -> the bundle that runs here (the
    compiled one, or its source where the target's runtime cannot run on this machine)."""
    from vilt_edge.compile import CompileOptions, compile_bundle

    target = run.target
    compiled: dict[str, dict[str, Any]] = {}
    runnable: dict[str, Path] = {}
    for name, path in variants.items():
        run.stage(f"compiling {name} for {target.name}")
        bundle = compile_bundle(
            path,
            run.out / f"{name}-{target.name}",
            # As the user named it: `cpu` compiles for this machine's own cores.
            CompileOptions(target=target.requested, threads=run.options.threads),
        ).bundle
        record = bundle.manifest.compile_record
        state = record.state if record is not None else None
        compiled[name] = {"bundle": str(bundle.path), "state": state or READY}
        # What runs here: a CPU runtime's bundle, ONNX Runtime or OpenVINO (a build kit or a
        # GPU engine waits for its device, and is validated as its uncompiled source meanwhile).
        ready = state != PENDING_BUILD and bundle.manifest.runtime in ("onnxruntime", "openvino")
        runnable[name] = bundle.path if ready else path
    run.summary["compiled"] = compiled
    if any(runnable[n] == variants[n] for n in variants):
        run.summary["note"] = (
            f"{target.name}'s runtime does not run here: variants were validated as their "
            "uncompiled bundles on this machine (accuracy holds; latency is this machine's); "
            "build the engines on the device with each compiled bundle's BUILD.md"
        )
    return runnable


def _validate(run: _Run, runnable: dict[str, Path], teacher: Path, data) -> dict[str, Any]:
    """Each variant validated against the FP32 teacher: variant name -> its Results."""
    from vilt_edge.runtime import ViltRuntime
    from vilt_edge.validate import check_inputs, validate

    threads = run.options.threads
    reference = ViltRuntime.load(teacher, threads=threads)
    check_inputs(reference, data)
    validated = {}
    for name, path in runnable.items():
        run.stage(f"validating {name} on {data.name} ({len(data)} examples)")
        runtime = ViltRuntime.load(path, threads=threads)

        def progress(count: int, label: str = name, done: list[int] = [0]) -> None:  # noqa: B006
            done[0] += count  # one counter per variant: the default is made per definition
            run.advance(f"validate {label}", done[0], 2 * len(data))

        validated[name] = validate(
            runtime,
            data,
            reference=None if name == "teacher-fp32" else reference,
            name=name,
            on_progress=progress,
        )
    return validated


def _write_results(run: _Run, validated: dict[str, Any]) -> tuple[list, list]:
    """Each variant's results file, written once: (results files, table rows)."""
    from vilt_edge.results import write_results

    results_dir = run.out / "results"
    results_dir.mkdir()
    paths = []
    rows = []
    for name, results in validated.items():
        paths.append(write_results(results, results_dir / f"{name}.json"))
        row = {
            "variant": name,
            "accuracy": results.accuracy,
            "accuracy_delta": results.accuracy_delta,
            "agreement": results.agreement,
            "p50_ms": results.latency_ms["p50"],
            "floor_ms": (results.floor or {}).get("floor_ms"),
            "size_mb": results.variant.get("size_mb"),
        }
        if results.validation_latency_ms is not None:
            row["validation_p50_ms"] = results.validation_latency_ms["p50"]
        rows.append(row)
    return paths, rows


def _time_side_by_side(
    run: _Run, runnable: dict[str, Path], data, validated: dict[str, Any]
) -> dict[str, Any]:
    """The variants' latency again, side by side in interleaved rounds (each validation pass
    ran alone, minutes from the others, so a machine's drift could rank them wrong); the report
    compares these. Each Results keeps its validation pass's figures beside them."""
    from dataclasses import replace

    from vilt_edge.runtime import ViltRuntime
    from vilt_edge.validate import side_by_side_latency

    if len(runnable) < 2:
        return validated
    per_round_ms = SIDE_BY_SIDE_ROUNDS * sum(r.latency_ms["p50"] for r in validated.values())
    fewest, most = SIDE_BY_SIDE_CALLS
    calls = min(max(fewest, min(most, int(SIDE_BY_SIDE_BUDGET_MS / per_round_ms))), len(data))
    method = (
        f"side by side: {SIDE_BY_SIDE_ROUNDS} rounds in which each variant answered the same "
        f"{calls} examples in turn (batch 1, the order rotated each round, each turn opened by "
        f"{SIDE_BY_SIDE_WARMUP} untimed calls), after validation"
    )
    run.stage(f"timing the {len(runnable)} variants side by side ({SIDE_BY_SIDE_ROUNDS} rounds)")
    runtimes = {}
    try:
        for name, path in runnable.items():
            runtimes[name] = ViltRuntime.load(path, threads=run.options.threads)
        done = [0]
        total = SIDE_BY_SIDE_ROUNDS * calls * len(runtimes)

        def progress(count: int) -> None:
            done[0] += count
            run.advance("time side by side", done[0], total)

        timed = side_by_side_latency(
            runtimes,
            data,
            rounds=SIDE_BY_SIDE_ROUNDS,
            calls=calls,
            warmup=SIDE_BY_SIDE_WARMUP,
            on_progress=progress,
        )
    finally:
        for runtime in runtimes.values():
            runtime.close()
    return {
        name: replace(
            results,
            **timed[name],
            latency_method=method,
            validation_latency_ms=results.latency_ms,
            validation_e2e_latency_ms=results.e2e_latency_ms,
            validation_throughput=results.throughput,
        )
        for name, results in validated.items()
    }

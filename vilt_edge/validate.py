"""Accuracy of a bundle on a data set, drift against a reference, and latency in the same run.

    from vilt_edge.data import load_data
    from vilt_edge.validate import validate
    from vilt_edge.runtime import ViltRuntime

    data = load_data("vqav2:../shared/data/vqav2-mini")   # or nlvr2:PATH, easy-vqa[:test|train]
    results = validate(ViltRuntime.load("out/int8"), data, reference=ViltRuntime.load("out/fp32"))
    results.accuracy, results.accuracy_delta, results.latency_ms["p50"]

Torch-free. Every example goes through the public runtime (`ViltRuntime.logits_batch`), so the
end-to-end figures include image decoding, preprocessing and tokenization exactly as an app runs
them; model-only latency is the runner's own timing of the session call.

Scores (`vilt_edge.data.score`): VQAv2 uses the official VQA accuracy (ten human answers);
easy-VQA has one answer per question, so it is exact match; NLVR2 is accuracy of True/False, and
consistency over sentences that share an image set.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.data import DataSet, check_labeled, check_task, score
from vilt_edge.devices.host import machine_description
from vilt_edge.errors import DataError, InputError
from vilt_edge.measure import deploy_peak_rss_mb, peak_rss_mb, percentiles, reset_peak_rss
from vilt_edge.results import Results


def run_logits(
    runtime,
    data: DataSet,
    batch_size: int = 1,
    warmup: int = 0,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[np.ndarray, list[float], list[float], float]:
    """(logits [n, labels], model ms per batch, end-to-end ms per batch, total seconds)."""
    for start in range(0, min(warmup * batch_size, len(data)), batch_size):
        runtime.logits_batch(*data.inputs(start, start + batch_size), batch_size=batch_size)
    logits = np.zeros((len(data), len(runtime.labels)), dtype=np.float64)
    model_ms: list[float] = []
    e2e_ms: list[float] = []
    started = time.perf_counter()
    for start in range(0, len(data), batch_size):
        stop = min(start + batch_size, len(data))
        logits[start:stop] = runtime.logits_batch(*data.inputs(start, stop), batch_size=batch_size)
        model_ms.append(runtime.last_latency_ms["model"])
        e2e_ms.append(runtime.last_latency_ms["total"])
        if on_progress is not None:
            on_progress(stop - start)
    return logits, model_ms, e2e_ms, time.perf_counter() - started


def side_by_side_latency(
    runtimes: dict[str, Any],
    data: DataSet,
    *,
    rounds: int = 5,
    calls: int = 40,
    warmup: int = 3,
    on_progress: Callable[[int], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Latency of several runtimes measured side by side: name -> {"latency_ms": model
    p50/p90/p99, "e2e_latency_ms": the same with preprocessing, "throughput": examples per
    second answered one at a time, preprocessing included}, as `Results` names them.

    In each of `rounds` rounds every runtime answers the same first `calls` examples of `data`
    in turn (batch 1, as an app asks), the order rotated from round to round, so a slow spell of
    a shared machine falls on all of them alike. One validation pass per variant, minutes apart,
    can rank variants wrong where the machine's speed drifts (a cloud VM's neighbours); this
    cannot. Each turn starts with `warmup` untimed calls: the first calls after another model
    ran find cold caches and sleeping threads, which a variant answering one camera frame after
    another does not. `on_progress` gets the number of timed calls after each runtime's turn.
    """
    if rounds < 1 or calls < 1:
        raise InputError("side-by-side timing needs at least one round and one call")
    names = list(runtimes)
    inputs = [data.inputs(start, start + 1) for start in range(min(calls, len(data)))]
    model_ms: dict[str, list[float]] = {name: [] for name in names}
    e2e_ms: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            runtime = runtimes[name]
            for args in inputs[:warmup]:
                runtime.logits_batch(*args, batch_size=1)
            for args in inputs:
                runtime.logits_batch(*args, batch_size=1)
                model_ms[name].append(runtime.last_latency_ms["model"])
                e2e_ms[name].append(runtime.last_latency_ms["total"])
            if on_progress is not None:
                on_progress(len(inputs))
    return {
        name: {
            "latency_ms": percentiles(model_ms[name]),
            "e2e_latency_ms": percentiles(e2e_ms[name]),
            "throughput": round(1000 / float(np.mean(e2e_ms[name])), 3),
        }
        for name in names
    }


def drift(logits: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """Top-1 agreement, mean per-example cosine and max-abs difference of two logit sets."""
    agreement = float(np.mean(logits.argmax(-1) == reference.argmax(-1)))
    norms = np.linalg.norm(logits, axis=1) * np.linalg.norm(reference, axis=1)
    dots = np.sum(logits * reference, axis=1)
    # Two all-zero rows point the same way; one zero row has no direction (cosine 0).
    cosine = np.where(norms > 0, dots / np.where(norms > 0, norms, 1.0), 0.0)
    both_zero = (np.linalg.norm(logits, axis=1) == 0) & (np.linalg.norm(reference, axis=1) == 0)
    cosine = np.where(both_zero, 1.0, cosine)
    return {
        "agreement": agreement,
        "logit_cosine": round(float(np.mean(cosine)), 8),
        "max_abs_logit_diff": float(np.max(np.abs(logits - reference))),
    }


def bundle_size_mb(runtime) -> float:
    files = runtime.bundle.manifest.files
    return round(sum((runtime.bundle.path / name).stat().st_size for name in files) / 1e6, 3)


def variant_of(runtime, name: str | None = None) -> dict[str, Any]:
    """The results file's description of what ran: name, bundle, model, precision, ..."""
    manifest = runtime.bundle.manifest
    quantized = manifest.quantize_record
    mode = quantized.mode if quantized is not None and manifest.precision == "int8" else None
    if name is None:
        name = " ".join(filter(None, [Path(runtime.bundle.path).name, manifest.precision, mode]))
    return {
        "name": name,
        "bundle": str(runtime.bundle.path),
        "model": str(manifest.source.get("model", "unknown")),
        "precision": manifest.precision,
        "mode": mode,
        "runtime": manifest.runtime,
        "device": _device_of(manifest),
        "size_mb": bundle_size_mb(runtime),
    }


def _device_of(manifest) -> str | None:
    """The device profile the bundle was compiled for, else the profile of this host."""
    compiled = manifest.compile_record
    if compiled:
        return compiled.target
    from vilt_edge.devices import detect_host

    host = detect_host()
    return host.name if host else None


def check_inputs(runtime, data: DataSet, reference=None) -> None:
    """Everything `validate` refuses, checked before any example runs."""
    if len(data) == 0:
        raise DataError(f"{data.name}: no examples")
    check_task(data, runtime.task)
    check_labeled(data)
    if reference is not None:
        check_task(data, reference.task, "the reference")
        if tuple(reference.labels) != tuple(runtime.labels):
            raise DataError(
                f"the reference {reference.bundle.path} has other answer labels than "
                f"{runtime.bundle.path}; compare bundles of the same model"
            )


def validate(
    runtime,
    data: DataSet,
    *,
    reference=None,
    batch_size: int = 1,
    warmup: int = 5,
    name: str | None = None,
    on_progress: Callable[[int], None] | None = None,
    keep_predictions: bool = True,
) -> Results:
    """Score `runtime` on `data`, time it, and compare it with `reference` (another runtime).

    The bundle under test runs first, alone, so its latency and peak RSS are not disturbed by
    the reference (which runs afterwards at a larger batch, untimed). `on_progress` is called
    with the number of examples done, for the bundle and then for the reference.
    """
    if batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    check_inputs(runtime, data, reference)
    reset_peak_rss()
    logits, model_ms, e2e_ms, seconds = run_logits(
        runtime, data, batch_size=batch_size, warmup=warmup, on_progress=on_progress
    )
    rss = peak_rss_mb()
    scored = score(data, runtime.labels, logits.argmax(-1))
    fields: dict[str, Any] = {}
    if reference is not None:
        reference_logits, *_ = run_logits(reference, data, batch_size=32, on_progress=on_progress)
        reference_scored = score(data, reference.labels, reference_logits.argmax(-1))
        fields = {
            "reference": {
                "bundle": str(reference.bundle.path),
                "precision": reference.bundle.manifest.precision,
                "accuracy": reference_scored.accuracy,
            },
            "accuracy_delta": round(100 * (scored.accuracy - reference_scored.accuracy), 4),
            **drift(logits, reference_logits),
        }
    predictions = []
    if keep_predictions:
        for index, example in enumerate(data.examples):
            ident = example.identifier if data.task == "nlvr2" else example.question_id
            predictions.append(
                {
                    "id": ident or str(index),
                    "answer": scored.answers[index],
                    "score": scored.scores[index],
                }
            )
    runner = runtime.runner.describe()
    from vilt_edge.devices.roofline import host_floor

    bundle = runtime.bundle
    model_path = bundle.model_path
    source = bundle.manifest.source.get("bundle")
    if bundle.manifest.compile_record is not None and source:
        # A compiled model is the same arithmetic as its source, which is plain ONNX to count.
        candidate = Path(source) / "model.onnx"
        model_path = candidate if candidate.is_file() else model_path
    text_length = bundle.manifest.text_length
    if runtime.runner.dynamic_text:
        # The runtime cuts the padding: count the work at the median question's own length.
        _, mask = runtime.tokenizer.encode(data.inputs()[1])
        text_length = max(2, int(np.median(mask.sum(axis=1))))
    threads = runner.get("threads")
    floor = host_floor(
        model_path,
        bundle.default_image_size,
        threads,
        text_length=text_length,
        images=bundle.manifest.num_images,
        precision=bundle.manifest.precision,
    )
    if floor is not None:
        floor["text_length"] = text_length
    return Results(
        variant=variant_of(runtime, name),
        data=data.name,
        task=data.task,
        n=len(data),
        accuracy=scored.accuracy,
        accuracy_by_type=scored.by_type,
        consistency=scored.consistency,
        latency_ms=percentiles(model_ms),
        e2e_latency_ms=percentiles(e2e_ms),
        throughput=round(len(data) / seconds, 3),
        batch_size=batch_size,
        threads=runner.get("threads"),
        peak_rss_mb=rss,
        deploy_peak_rss_mb=deploy_peak_rss_mb(bundle.path, runner.get("threads")),
        floor=floor,
        machine=machine_description(),
        predictions=predictions,
        **fields,
    )


def reference_from_manifest(runtime) -> str | None:
    """The FP32 bundle a quantized bundle was made from, as its manifest names it, if any."""
    source = runtime.bundle.manifest.source
    path = source.get("bundle")
    return str(path) if path else None


def summary_json(results: Results) -> dict[str, Any]:
    """What `vilt-edge validate --json` prints: the headline figures, no per-example data."""
    out = {
        "data": results.data,
        "n": results.n,
        "accuracy": results.accuracy,
        "accuracy_by_type": results.accuracy_by_type,
        "latency_ms": results.latency_ms,
        "e2e_latency_ms": results.e2e_latency_ms,
        "throughput": results.throughput,
        "batch_size": results.batch_size,
        "threads": results.threads,
        "peak_rss_mb": results.peak_rss_mb,
        "deploy_peak_rss_mb": results.deploy_peak_rss_mb,
        "variant": results.variant,
        "machine": results.machine,
    }
    if results.consistency is not None:
        out["consistency"] = results.consistency
    if results.reference is not None:
        out.update(
            reference=results.reference,
            reference_accuracy=results.reference["accuracy"],
            accuracy_delta=results.accuracy_delta,
            agreement=results.agreement,
            logit_cosine=results.logit_cosine,
            max_abs_logit_diff=results.max_abs_logit_diff,
        )
    return out

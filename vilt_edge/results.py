"""The results file: one validated variant's accuracy and latency, versioned JSON (torch-free).

    from vilt_edge.results import Results, read_results, write_results

    results = Results(
        variant={"name": "default int8 static", "bundle": "out/int8", "model": "default",
                 "precision": "int8", "mode": "static", "runtime": "onnxruntime"},
        data="easy-vqa:test", task="vqa", n=9673, accuracy=0.9625,
        latency_ms={"p50": 6.9, "p90": 7.4, "p99": 9.0}, machine=machine_description(),
    )
    write_results(results, "runs/int8.json")  # what `vilt-edge validate --out` writes
    read_results("runs/int8.json").accuracy     # what `vilt-edge report` reads

`accuracy`, `agreement` and `consistency` are fractions (0-1); `accuracy_delta` is in percentage
points (this variant minus its reference). A file whose `schema_version` this vilt-edge does not
know is refused rather than guessed at: a later version may change what a field means.
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vilt_edge import __version__
from vilt_edge.errors import DataError
from vilt_edge.outputs import RESULTS_SCHEMA, check_replaceable, write_file_atomically
from vilt_edge.records import INT8_MODES, TASKS
from vilt_edge.records import PRECISIONS as RECORD_PRECISIONS

SCHEMA = RESULTS_SCHEMA
SCHEMA_VERSION = 1
READABLE_VERSIONS = (1,)  # a reader that learns version 2 keeps reading 1

PRECISIONS = RECORD_PRECISIONS
MODES = INT8_MODES  # INT8 calibration mode; None for float variants

# Fields a results file must carry; the rest may be null or absent (a run without --reference
# has no delta or agreement, a VQA run has no consistency).
_REQUIRED_IN_FILE = (
    "created", "vilt_edge_version", "variant", "data", "task", "n", "accuracy", "latency_ms",
    "machine",
)  # fmt: skip


def _utc_now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True, kw_only=True)
class Results:
    """One variant measured on one data set; validated on construction (raises DataError)."""

    variant: dict[str, Any]  # name, bundle, model, precision, mode, runtime, device, size_mb
    data: str  # the data spec, e.g. "easy-vqa:test": a report only compares equal ones
    task: str
    n: int
    accuracy: float
    latency_ms: dict[str, float]  # model latency per batch: p50, p90, p99
    machine: dict[str, Any]  # machine_description() of the machine that measured
    created: str = field(default_factory=_utc_now)
    vilt_edge_version: str = __version__
    accuracy_by_type: dict[str, float] = field(default_factory=dict)
    consistency: float | None = None  # NLVR2 only: share of image sets answered fully right
    reference: dict[str, Any] | None = None  # bundle, precision, accuracy of the baseline
    accuracy_delta: float | None = None
    agreement: float | None = None  # share of top-1 answers equal to the reference's
    logit_cosine: float | None = None
    max_abs_logit_diff: float | None = None
    e2e_latency_ms: dict[str, float] | None = None  # with preprocessing and tokenization
    # How latency_ms, e2e_latency_ms and throughput were measured: absent for a validation pass
    # (every example, this variant alone); the pipeline times its variants again side by side
    # and says so here, keeping the validation pass's figures in the validation_* fields.
    latency_method: str | None = None
    validation_latency_ms: dict[str, float] | None = None
    validation_e2e_latency_ms: dict[str, float] | None = None
    validation_throughput: float | None = None
    throughput: float | None = None  # examples per second, preprocessing included
    batch_size: int | None = None
    threads: int | None = None
    peak_rss_mb: float | None = None  # the validating process's (data sets, reference and all)
    # What an app pays: a fresh process that loads the bundle and answers
    # (`vilt_edge.bench.deploy_peak_rss_mb`); the report's memory column.
    deploy_peak_rss_mb: float | None = None
    # Roofline floor on the measuring machine (`vilt_edge.roofline.host_floor`), if counted.
    floor: dict[str, Any] | None = None
    predictions: list[dict[str, Any]] = field(default_factory=list)

    def __post_init__(self) -> None:
        _check_variant(self.variant)
        _check_str(self.data, "data")
        _check_str(self.created, "created")
        _check_timestamp(self.created)
        _check_str(self.vilt_edge_version, "vilt_edge_version")
        _check_choice(self.task, "task", TASKS)
        _check_int(self.n, "n", minimum=1)
        _check_fraction(self.accuracy, "accuracy")
        _check_latency(self.latency_ms, "latency_ms")
        _check_machine(self.machine)
        _check_dict_of_fractions(self.accuracy_by_type, "accuracy_by_type")
        _check_fraction(self.consistency, "consistency", optional=True)
        _check_reference(self.reference)
        _check_number(self.accuracy_delta, "accuracy_delta", optional=True)
        _check_fraction(self.agreement, "agreement", optional=True)
        _check_number(self.logit_cosine, "logit_cosine", optional=True)
        _check_number(self.max_abs_logit_diff, "max_abs_logit_diff", optional=True)
        if self.e2e_latency_ms is not None:
            _check_latency(self.e2e_latency_ms, "e2e_latency_ms")
        _check_str(self.latency_method, "latency_method", optional=True)
        for name in ("validation_latency_ms", "validation_e2e_latency_ms"):
            if getattr(self, name) is not None:
                _check_latency(getattr(self, name), name)
        _check_number(self.validation_throughput, "validation_throughput", optional=True)
        _check_number(self.throughput, "throughput", optional=True)
        _check_int(self.batch_size, "batch_size", minimum=1, optional=True)
        _check_int(self.threads, "threads", minimum=1, optional=True)
        _check_number(self.peak_rss_mb, "peak_rss_mb", optional=True)
        _check_number(self.deploy_peak_rss_mb, "deploy_peak_rss_mb", optional=True)
        if self.floor is not None:
            if not isinstance(self.floor, dict):
                raise DataError("results field 'floor' must be an object")
            _check_number(self.floor.get("floor_ms"), "floor.floor_ms")
        if not isinstance(self.predictions, list) or not all(
            isinstance(p, dict) for p in self.predictions
        ):
            raise DataError("results field 'predictions' must be a list of objects")

    @property
    def name(self) -> str:
        return self.variant["name"]

    @property
    def precision(self) -> str:
        return self.variant["precision"]

    def to_json(self) -> dict[str, Any]:
        """The file's content: schema header first, then the fields in declaration order."""
        body = {f.name: copy.deepcopy(getattr(self, f.name)) for f in fields(self)}
        return {"schema": SCHEMA, "schema_version": SCHEMA_VERSION, **body}

    @classmethod
    def from_json(cls, data: Any) -> Results:
        """Parse a results file's content; raises DataError naming the first bad field."""
        if not isinstance(data, dict):
            raise DataError(
                f"not a vilt-edge results file (top level is a {_json_type(data)}, not an object)"
            )
        schema = data.get("schema")
        if schema != SCHEMA:
            raise DataError(
                f"not a vilt-edge results file (schema is {_short(schema)}, expected {SCHEMA!r})"
            )
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS or isinstance(version, bool):
            readable = ", ".join(str(v) for v in READABLE_VERSIONS)
            raise DataError(
                f"results schema_version {_short(version)} is not supported; "
                f"this vilt-edge ({__version__}) reads schema_version {readable}"
            )
        for name in _REQUIRED_IN_FILE:
            if name not in data:
                raise DataError(f"results field {name!r} is missing")
        known = {f.name for f in fields(cls)}
        # Unknown keys are ignored: a writer may add informational fields within a version.
        return cls(**{k: copy.deepcopy(v) for k, v in data.items() if k in known})


def write_results(results: Results, path: str | os.PathLike) -> Path:
    """Write `results` as JSON to `path`, atomically: readers see the old file or the new one.
    An existing `path` is replaced only if it is a vilt-edge results file (`OutputError`)."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder; give a file name for the results, e.g. {path}/x.json")
    check_replaceable(path, "results")  # an earlier results file, never a file of the user's
    # allow_nan=False: NaN is not JSON; validation already refuses it, so this is a bug guard.
    text = json.dumps(results.to_json(), indent=2, allow_nan=False) + "\n"
    write_file_atomically(path, text)
    return path


def read_results(path: str | os.PathLike) -> Results:
    """Read and validate a results file; every problem is a one-line DataError naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such results file")
    if path.is_dir():
        raise DataError(f"{path}: is a folder, not a results file")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not a JSON file (not UTF-8 text)") from None
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: not a JSON file ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None
    try:
        return Results.from_json(data)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None


# Validation. Each check raises DataError naming the field, with the bad value shortened so the
# message stays one line.


def _short(value: Any) -> str:
    text = repr(value).replace("\n", " ")
    return text if len(text) <= 40 else text[:37] + "..."


def _json_type(value: Any) -> str:
    names = {bool: "boolean", int: "number", float: "number", str: "string", list: "list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _check_str(value: Any, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, str) or not value:
        raise DataError(f"results field {name!r} must be a non-empty string (got {_short(value)})")


def _check_choice(value: Any, name: str, choices: tuple[str, ...], optional: bool = False) -> None:
    if optional and value is None:
        return
    if value not in choices:
        allowed = ", ".join(choices) + (" or null" if optional else "")
        raise DataError(f"results field {name!r} must be one of {allowed} (got {_short(value)})")


def _check_number(value: Any, name: str, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not _is_number(value):
        raise DataError(f"results field {name!r} must be a finite number (got {_short(value)})")


def _check_fraction(value: Any, name: str, optional: bool = False) -> None:
    _check_number(value, name, optional)
    if value is not None and not 0 <= value <= 1:
        raise DataError(f"results field {name!r} must be a fraction in [0, 1] (got {value})")


def _check_int(value: Any, name: str, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise DataError(
            f"results field {name!r} must be an integer >= {minimum} (got {_short(value)})"
        )


def _check_object(value: Any, name: str) -> None:
    if not isinstance(value, dict):
        raise DataError(f"results field {name!r} must be an object (got {_short(value)})")


def _check_dict_of_fractions(value: Any, name: str) -> None:
    _check_object(value, name)
    for key, fraction in value.items():
        _check_fraction(fraction, f"{name}.{key}")


def _check_timestamp(value: str) -> None:
    try:
        # Python 3.10's fromisoformat does not take the "Z" suffix the writer uses.
        datetime.fromisoformat(value.removesuffix("Z") + ("+00:00" if value.endswith("Z") else ""))
    except ValueError:
        raise DataError(
            f"results field 'created' must be an ISO 8601 time (got {_short(value)})"
        ) from None


def _check_latency(value: Any, name: str) -> None:
    _check_object(value, name)
    for percentile in ("p50", "p90", "p99"):
        if percentile not in value:
            raise DataError(f"results field '{name}.{percentile}' is missing")
        _check_number(value[percentile], f"{name}.{percentile}")
        if value[percentile] < 0:
            raise DataError(f"results field '{name}.{percentile}' must not be negative")
    # Swapped or mislabelled percentiles would put a variant in the wrong place on the plot.
    if not value["p50"] <= value["p90"] <= value["p99"]:
        raise DataError(f"results field {name!r} must have p50 <= p90 <= p99 (got {value})")


def _check_variant(variant: Any) -> None:
    _check_object(variant, "variant")
    for key in ("name", "precision", "runtime"):
        if key not in variant:
            raise DataError(f"results field 'variant.{key}' is missing")
    _check_str(variant["name"], "variant.name")
    _check_choice(variant["precision"], "variant.precision", PRECISIONS)
    _check_choice(variant.get("mode"), "variant.mode", MODES, optional=True)
    _check_str(variant["runtime"], "variant.runtime")
    for key in ("bundle", "model", "device"):
        _check_str(variant.get(key), f"variant.{key}", optional=True)
    _check_number(variant.get("size_mb"), "variant.size_mb", optional=True)


def _check_machine(machine: Any) -> None:
    _check_object(machine, "machine")
    for key in ("cpu", "cores", "isa"):
        if key not in machine:
            raise DataError(f"results field 'machine.{key}' is missing")
    _check_str(machine["cpu"], "machine.cpu")
    _check_int(machine["cores"], "machine.cores", minimum=1)
    if not isinstance(machine["isa"], list) or not all(isinstance(f, str) for f in machine["isa"]):
        raise DataError("results field 'machine.isa' must be a list of strings")
    _check_str(machine.get("gpu"), "machine.gpu", optional=True)


def _check_reference(reference: Any) -> None:
    if reference is None:
        return
    _check_object(reference, "reference")
    for key in ("bundle", "precision", "accuracy"):
        if key not in reference:
            raise DataError(f"results field 'reference.{key}' is missing")
    _check_str(reference["bundle"], "reference.bundle")
    _check_choice(reference["precision"], "reference.precision", PRECISIONS)
    _check_fraction(reference["accuracy"], "reference.accuracy")

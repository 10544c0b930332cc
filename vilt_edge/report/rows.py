"""The report's rows: the results checked and combined, and the text every rendering shares."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from vilt_edge import __version__
from vilt_edge.devices.host import describe_machine
from vilt_edge.errors import DataError
from vilt_edge.results import Results


def pareto_front(points: Sequence[tuple[float, float]]) -> list[int]:
    """Indices (ascending) of the (latency, accuracy) points that no other point dominates.

    Lower latency and higher accuracy are better; a point is dominated when another is at least
    as good on both and strictly better on one, so exact duplicates both stay on the front.
    """
    front = []
    for i, (latency, accuracy) in enumerate(points):
        dominated = any(
            other_latency <= latency
            and other_accuracy >= accuracy
            and (other_latency < latency or other_accuracy > accuracy)
            for j, (other_latency, other_accuracy) in enumerate(points)
            if j != i
        )
        if not dominated:
            front.append(i)
    return front


@dataclass(frozen=True)
class _Row:
    """One variant as the report shows it."""

    results: Results
    source: Path
    is_reference: bool
    on_front: bool
    delta_points: float | None  # accuracy minus the reference's, in percentage points

    @property
    def p50(self) -> float:
        return self.results.latency_ms["p50"]

    @property
    def p90(self) -> float:
        return self.results.latency_ms["p90"]

    @property
    def accuracy_pct(self) -> float:
        return self.results.accuracy * 100


def _check_comparable(loaded: list[tuple[Path, Results]]) -> None:
    first_path, first = loaded[0]
    for path, results in loaded[1:]:
        if results.data != first.data:
            raise DataError(
                f"results are on different data sets ({first.data} in {first_path}, "
                f"{results.data} in {path}); a report compares variants on one data set"
            )
        # Accuracies on different subsets (--limit) differ by sampling alone, not by variant.
        if results.n != first.n:
            raise DataError(
                f"results cover different numbers of examples ({first.n} in {first_path}, "
                f"{results.n} in {path}); validate every variant on the same examples"
            )
    seen: dict[str, Path] = {}
    for path, results in loaded:
        if results.name in seen:
            raise DataError(
                f"variant name {results.name!r} is in both {seen[results.name]} and {path}; "
                "names label the plot, so give each variant its own"
            )
        seen[results.name] = path


def _reference_index(loaded: list[tuple[Path, Results]]) -> int | None:
    """The FP32 variant the others were compared with, else the first FP32 variant given."""
    referenced = {
        os.path.normpath(results.reference["bundle"])
        for _, results in loaded
        if results.reference is not None
    }
    fp32 = [i for i, (_, results) in enumerate(loaded) if results.precision == "fp32"]
    for i in fp32:
        bundle = loaded[i][1].variant.get("bundle")
        if bundle is not None and os.path.normpath(bundle) in referenced:
            return i
    return fp32[0] if fp32 else None


def _rows(loaded: list[tuple[Path, Results]]) -> list[_Row]:
    """Rows sorted fastest first, with the reference, the front and deltas worked out."""
    reference = _reference_index(loaded)
    front = set(pareto_front([(r.latency_ms["p50"], r.accuracy) for _, r in loaded]))
    rows = []
    for i, (path, results) in enumerate(loaded):
        delta = results.accuracy_delta
        if i == reference:
            delta = 0.0
        elif delta is None and reference is not None:
            # Not compared at validate time (no --reference): same data set and examples, so
            # the difference of the two accuracies is the delta validate would have recorded.
            delta = (results.accuracy - loaded[reference][1].accuracy) * 100
        rows.append(_Row(results, path, i == reference, i in front, delta))
    return sorted(rows, key=lambda row: (row.p50, -row.accuracy_pct))


# Text shared by the plot, the markdown and the HTML.


def _title(rows: list[_Row]) -> str:
    first = rows[0].results
    return f"Accuracy vs. latency on {first.data} (n = {first.n:,})"


def _machines(rows: list[_Row]) -> list[str]:
    return list(dict.fromkeys(describe_machine(row.results.machine) for row in rows))


# Characters of the 9-point subtitle that fit the plot's width (10 in at 150 dpi, from x=0.08);
# longer lines are wrapped rather than run past the figure's right edge.
_SUBTITLE_WIDTH = 118


def _subtitle(rows: list[_Row]) -> str:
    """The machine (wrapped to at most two lines) and the settings, for the plot's subtitle."""
    machines = _machines(rows)
    machine = machines[0] if len(machines) == 1 else "machines differ: latencies not comparable"
    lines = textwrap.wrap(machine, _SUBTITLE_WIDTH, max_lines=2, placeholder=" …")
    settings = _settings(rows)
    return "\n".join(lines + ([settings] if settings else []))


def _settings(rows: list[_Row]) -> str:
    """Batch size and threads, when every variant ran with the same; latency depends on both."""
    parts = []
    for label, values in (
        ("batch", {row.results.batch_size for row in rows}),
        ("threads", {row.results.threads for row in rows}),
    ):
        if len(values) == 1 and None not in values:
            parts.append(f"{label} {values.pop()}")
        elif len(values) > 1:
            parts.append(f"{label} differs between variants")
    return ", ".join(parts)


def _measured_dates(rows: list[_Row]) -> str:
    dates = sorted({row.results.created[:10] for row in rows})
    return dates[0] if len(dates) == 1 else f"{dates[0]} to {dates[-1]}"


def _precision_label(results: Results) -> str:
    mode = results.variant.get("mode")
    return f"{results.precision} {mode}" if mode else results.precision


def _number(value: float | None, decimals: int) -> str:
    return "—" if value is None else f"{value:.{decimals}f}"


def _latency(value: float) -> str:
    return f"{value:.1f}" if value >= 100 else f"{value:.2f}"


def _delta(row: _Row) -> str:
    if row.is_reference:
        return "ref"
    return "—" if row.delta_points is None else f"{row.delta_points:+.2f}"


_COLUMNS = (
    "Pareto", "Variant", "Model", "Precision", "Runtime", "Device", "Accuracy (%)",
    "Δ vs ref (pts)", "Agreement (%)", "p50 (ms)", "p90 (ms)", "Floor (ms)", "Throughput (/s)",
    "Size (MB)", "Deploy peak RSS (MB)",
)  # fmt: skip
_NUMERIC_FROM = 6  # columns from here on are numbers: right-aligned


def _cells(row: _Row) -> list[str]:
    results, variant = row.results, row.results.variant
    agreement = None if results.agreement is None else results.agreement * 100
    return [
        "★" if row.on_front else "",
        results.name + (" (reference)" if row.is_reference else ""),
        variant.get("model") or "—",
        _precision_label(results),
        variant["runtime"],
        variant.get("device") or "—",
        f"{row.accuracy_pct:.2f}",
        _delta(row),
        _number(agreement, 2),
        _latency(row.p50),
        _latency(row.p90),
        "—" if not results.floor else _latency(results.floor["floor_ms"]),
        _number(results.throughput, 1),
        _number(variant.get("size_mb"), 1),
        # A fresh process that loads the bundle and answers, not the validating one.
        _number(results.deploy_peak_rss_mb, 0),
    ]


def _notes(rows: list[_Row], generated: datetime) -> list[str]:
    """Facts a reviewer needs to trust the comparison, one sentence each."""
    first = rows[0].results
    machines = _machines(rows)
    notes = [f"Data set: {first.data}, {first.n:,} examples ({first.task})."]
    if len(machines) == 1:
        notes.append(f"Machine: {machines[0]}.")
    else:
        notes.append(
            "Machines differ between variants, so their latencies are not comparable: "
            + "; ".join(machines)
            + "."
        )
    settings = _settings(rows)
    if settings:
        notes.append(f"Settings: {settings}.")
    notes.append(
        f"Measured {_measured_dates(rows)}; report generated "
        f"{generated.strftime('%Y-%m-%d %H:%M UTC')} by vilt-edge {__version__}."
    )
    notes.append(
        "★ Pareto-optimal: no other variant is at least as fast (p50) and as accurate, and"
        " better in one of the two."
    )
    notes.append(
        "Δ is in percentage points against the reference. Latency is the model's time per batch,"
        " without preprocessing."
    )
    methods = {row.results.latency_method for row in rows}
    if methods != {None}:
        alone = "in a validation pass over every example, the variant alone"
        described = "; ".join(sorted(method or alone for method in methods))
        unlike = " Latencies measured in different ways compare less well."
        notes.append(f"Latency measured {described}.{unlike if len(methods) > 1 else ''}")
    if any(row.results.deploy_peak_rss_mb is not None for row in rows):
        notes.append(
            "Deploy peak RSS: the peak resident memory of a fresh process that loads the bundle "
            "with vilt-edge's runtime and answers three questions, what an app pays (not the "
            "validating process, which also holds the data set and the reference)."
        )
    if any(row.results.throughput is not None for row in rows):
        notes.append(
            "Throughput: examples answered per second, preprocessing (image decoding, resizing,"
            " tokenizing) included, measured with the latency."
        )
    floors = [row.results.floor for row in rows if row.results.floor]
    bf16 = any(row.results.variant.get("precision") == "bf16" for row in rows)
    if floors:
        sizes = ", ".join(sorted({f["image_size"] for f in floors}))
        notes.append(
            "Floor: the roofline compute floor on the measuring machine: the model's operations "
            f"at {sizes} at the best GEMM ceilings (1024³ products) that the installed runtimes "
            f"reached there ({_ceiling_sources(floors, bf16)}); a variant cannot run faster "
            "than its floor."
        )
    return notes


_RUNTIME_NAMES = {"onnxruntime": "ONNX Runtime", "openvino": "OpenVINO"}


def _ceiling_sources(floors: list[dict], bf16: bool) -> str:
    """Whose GEMM each ceiling the floors used was, e.g. "INT8: OpenVINO's, FP32: ONNX
    Runtime's" (BF16 only where a variant computes in it). Floors written before OpenVINO's
    ceilings were measured name no source: they are ONNX Runtime's."""
    used = ("int8", "bf16", "fp32") if bf16 else ("int8", "fp32")
    found: dict[str, set[str]] = {precision: set() for precision in used}
    for floor in floors:
        sources = floor.get("ceiling_runtimes") or {}
        for precision in used:
            runtime = sources.get(precision, "onnxruntime")
            found[precision].add(_RUNTIME_NAMES.get(runtime, runtime))
    return ", ".join(
        f"{precision.upper()}: {' or '.join(sorted(names))}'s" for precision, names in found.items()
    )

"""Accuracy-versus-latency report of several variants measured on one data set.

    from vilt_edge.report import write_report

    paths = write_report([Path("runs/fp32.json"), Path("runs/int8.json")], Path("out/report"))
    paths.png, paths.markdown, paths.html  # plot, table for a PR, self-contained page

Each input is a results file from `vilt-edge validate --out` (`vilt_edge.results`). The plot
puts every variant at its p50 latency and accuracy, draws a bar to its p90 latency, marks the
FP32 reference and draws the Pareto front (no variant on it is both slower and less accurate
than another). The markdown and HTML carry the same table; the HTML embeds the plot, so it can be
mailed or pasted into a design review as one file. Needs the `report` extra (matplotlib).
"""

from __future__ import annotations

import base64
import html
import io
import json
import os
import shutil
import textwrap
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from vilt_edge import __version__
from vilt_edge.errors import DataError
from vilt_edge.outputs import REPORT_FILES, REPORT_MARKER, check_replaceable, swap_directories
from vilt_edge.results import Results, describe_machine, read_results

PNG_NAME = "report.png"
MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
# Marks a folder as written by write_report, so a rerun may replace it but a folder of the
# user's own files is never overwritten.
MARKER_NAME = REPORT_MARKER
assert {PNG_NAME, MARKDOWN_NAME, HTML_NAME, MARKER_NAME} == REPORT_FILES  # what outputs.py knows

_PRECISION_COLORS = {"fp32": "#4c72b0", "fp16": "#8172b3", "int8": "#55a868"}
_FRONT_COLOR = "#c44e52"
# Marker diameters (points). The reference's star is larger so it stands out among the dots;
# front members get a ring around their marker.
_DOT_SIZE = 9
_STAR_SIZE = 19
_RING_SIZE = {False: 16, True: 22}  # by is_reference


@dataclass(frozen=True)
class ReportPaths:
    """Where write_report put its three files."""

    png: Path
    markdown: Path
    html: Path


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


def write_report(results_paths: list[Path], out_dir: Path) -> ReportPaths:
    """Write report.png, report.md and report.html into `out_dir`, all three or none.

    Refuses (DataError) an empty list, unreadable results, results on different data sets or
    example counts, two results with the same variant name, and an `out_dir` that holds files a
    previous report did not write. A previous report in `out_dir` is replaced.
    """
    if not results_paths:
        raise DataError("no results files given; pass files written by `vilt-edge validate --out`")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    loaded = [(Path(path), read_results(path)) for path in results_paths]
    _check_comparable(loaded)
    rows = _rows(loaded)

    out_dir.parent.mkdir(parents=True, exist_ok=True)
    # A sibling, so the final rename stays on one file system; os.mkdir rather than
    # tempfile.mkdtemp, whose owner-only permissions would carry over to the published report.
    staging = out_dir.parent / f".{out_dir.name}.tmp-{uuid.uuid4().hex[:12]}"
    staging.mkdir()
    try:
        generated = datetime.now(timezone.utc)
        png = _render_plot(rows)
        (staging / PNG_NAME).write_bytes(png)
        (staging / MARKDOWN_NAME).write_text(_markdown(rows, generated), encoding="utf-8")
        (staging / HTML_NAME).write_text(_html(rows, generated, png), encoding="utf-8")
        marker = {"written_by": "vilt-edge report", "vilt_edge_version": __version__}
        (staging / MARKER_NAME).write_text(json.dumps(marker) + "\n", encoding="utf-8")
        _check_out_dir(out_dir)  # nothing else appeared there meanwhile
        swap_directories(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return ReportPaths(out_dir / PNG_NAME, out_dir / MARKDOWN_NAME, out_dir / HTML_NAME)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is a file; the report needs a folder")
    check_replaceable(out_dir, "report")  # an earlier report only: see vilt_edge.outputs


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
    if any(row.results.deploy_peak_rss_mb is not None for row in rows):
        notes.append(
            "Deploy peak RSS: the peak resident memory of a fresh process that loads the bundle "
            "with vilt-edge's runtime and answers three questions, what an app pays (not the "
            "validating process, which also holds the data set and the reference)."
        )
    floors = [row.results.floor for row in rows if row.results.floor]
    if floors:
        sizes = ", ".join(sorted({f["image_size"] for f in floors}))
        notes.append(
            "Floor: the roofline compute floor on the measuring machine: the model's operations "
            f"at {sizes} at the INT8 and FP32 GEMM ceilings ONNX Runtime reached there "
            "(MatMulInteger and MatMul, 1024³); a variant cannot run faster than its floor."
        )
    return notes


def _markdown(rows: list[_Row], generated: datetime) -> str:
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    table = [[cell(text) for text in _cells(row)] for row in rows]
    widths = [max(len(line[c]) for line in [list(_COLUMNS), *table]) for c in range(len(_COLUMNS))]

    def line(cells: Sequence[str]) -> str:
        padded = [
            text.rjust(width) if c >= _NUMERIC_FROM else text.ljust(width)
            for c, (text, width) in enumerate(zip(cells, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = [
        "-" * (width - 1) + ":" if c >= _NUMERIC_FROM else "-" * width
        for c, width in enumerate(widths)
    ]
    lines = [
        f"# {_title(rows)}",
        "",
        f"![Accuracy versus p50 latency]({PNG_NAME})",
        "",
        line(_COLUMNS),
        line(rule),
        *(line(cells) for cells in table),
        "",
        *(f"- {note}" for note in _notes(rows, generated)),
        "",
    ]
    return "\n".join(lines)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #222;
       max-width: 1200px; margin: 2em auto; padding: 0 1em; }
h1 { font-size: 1.4em; margin-bottom: 0.2em; }
p.machine { color: #555; margin-top: 0; }
img { max-width: 100%; height: auto; border: 1px solid #ddd; }
table { border-collapse: collapse; font-size: 0.9em; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: 4px 8px; }
th { background: #f3f3f3; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.front td { background: #fdf1f1; }
tr.reference td:nth-child(2) { font-weight: bold; }
ul.notes { color: #444; font-size: 0.9em; }
"""


def _html(rows: list[_Row], generated: datetime, png: bytes) -> str:
    escape = html.escape
    header = "".join(f"<th>{escape(name)}</th>" for name in _COLUMNS)
    body = []
    for row in rows:
        classes = " ".join(
            name for name, on in (("front", row.on_front), ("reference", row.is_reference)) if on
        )
        cells = "".join(
            f'<td class="num">{escape(text)}</td>'
            if c >= _NUMERIC_FROM
            else f"<td>{escape(text)}</td>"
            for c, text in enumerate(_cells(row))
        )
        body.append(f'<tr class="{classes}">{cells}</tr>' if classes else f"<tr>{cells}</tr>")
    image = base64.b64encode(png).decode("ascii")
    machines = "; ".join(_machines(rows))
    notes = "".join(f"<li>{escape(note)}</li>" for note in _notes(rows, generated))
    title = escape(_title(rows))
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{title}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{title}</h1>
<p class="machine">{escape(machines)}</p>
<img alt="Accuracy versus p50 latency, one point per variant"
     src="data:image/png;base64,{image}">
<table>
<thead><tr>{header}</tr></thead>
<tbody>
{chr(10).join(body)}
</tbody>
</table>
<ul class="notes">{notes}</ul>
</body>
</html>
"""


# The plot.


def _render_plot(rows: list[_Row]) -> bytes:
    """The accuracy-versus-latency figure as PNG bytes."""
    # The Agg canvas is used directly rather than through pyplot, so rendering neither needs a
    # display nor changes the backend of a program (a notebook) that called us.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullFormatter

    figure = Figure(figsize=(10, 6.4), dpi=150)
    canvas = FigureCanvasAgg(figure)
    axes = figure.add_axes((0.08, 0.21, 0.89, 0.62))  # room for a three-line subtitle

    latencies = [row.p50 for row in rows]
    p90s = [row.p90 for row in rows]
    accuracies = [row.accuracy_pct for row in rows]

    # A log axis only when the variants span more than a decade, where a linear one would crush
    # the fast ones into the corner; otherwise linear from zero, so speed-ups read as distances.
    log_x = max(p90s) > 10 * min(latencies)
    if log_x:
        axes.set_xscale("log")
        axes.set_xlim(min(latencies) / 1.4, max(p90s) * 1.6)
        # Plain numbers at 1-2-5 steps: "10^2" makes a reader do arithmetic to compare latencies.
        axes.xaxis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
        axes.xaxis.set_major_formatter(FormatStrFormatter("%g"))
        axes.xaxis.set_minor_formatter(NullFormatter())
    else:
        axes.set_xlim(0, max(p90s) * 1.18)
    # Room above and below the points for their names.
    span = max(accuracies) - min(accuracies)
    pad = max(span * 0.2, 0.4)
    axes.set_ylim(min(accuracies) - pad, max(accuracies) + pad)

    for row in rows:
        color = _PRECISION_COLORS[row.results.precision]
        axes.plot(
            [row.p50, row.p90],
            [row.accuracy_pct] * 2,
            color=color,
            alpha=0.55,
            linewidth=2,
            solid_capstyle="butt",
            zorder=2,
        )
        axes.plot(row.p90, row.accuracy_pct, marker="|", markersize=9, color=color, zorder=2)

    # The front stops at its slowest point rather than running on to the edge, where it would
    # cross the slower, dominated variants and read as if it passed through them.
    front = sorted((row for row in rows if row.on_front), key=lambda row: row.p50)
    axes.step(
        [row.p50 for row in front],
        [row.accuracy_pct for row in front],
        where="post",
        color=_FRONT_COLOR,
        linewidth=1.4,
        linestyle="--",
        zorder=3,
    )

    for row in rows:
        color = _PRECISION_COLORS[row.results.precision]
        if row.is_reference:
            axes.plot(
                row.p50,
                row.accuracy_pct,
                marker="*",
                markersize=_STAR_SIZE,
                markerfacecolor=color,
                markeredgecolor="black",
                markeredgewidth=1.0,
                zorder=5,
            )
        else:
            axes.plot(
                row.p50,
                row.accuracy_pct,
                marker="o",
                markersize=_DOT_SIZE,
                markerfacecolor=color if row.on_front else "white",
                markeredgecolor=color,
                markeredgewidth=2,
                zorder=5,
            )
        if row.on_front:
            axes.plot(
                row.p50,
                row.accuracy_pct,
                marker="o",
                markersize=_marker_size(row),
                markerfacecolor="none",
                markeredgecolor=_FRONT_COLOR,
                markeredgewidth=1.3,
                zorder=4,
            )

    axes.set_xlabel("p50 latency (ms), bar to p90" + (", log scale" if log_x else ""))
    axes.set_ylabel("Accuracy (%)")
    axes.grid(True, which="major", color="#dddddd", linewidth=0.8)
    axes.set_axisbelow(True)
    axes.annotate(
        "better ↖",
        xy=(0.012, 0.975),
        xycoords="axes fraction",
        ha="left",
        va="top",
        fontsize=9,
        color="#777777",
        style="italic",
    )

    figure.suptitle(_title(rows), x=0.08, y=0.965, ha="left", fontsize=14, fontweight="bold")
    figure.text(
        0.08,
        0.925,
        _subtitle(rows),
        ha="left",
        va="top",
        fontsize=9,
        linespacing=1.3,
        color="#555555" if len(_machines(rows)) == 1 else "#c44e52",
    )

    precisions = [p for p in _PRECISION_COLORS if any(r.results.precision == p for r in rows)]
    handles = [
        Line2D([], [], marker="o", linestyle="none", markersize=8, color=_PRECISION_COLORS[p])
        for p in precisions
    ]
    labels = list(precisions)
    if any(row.is_reference for row in rows):
        handles.append(
            Line2D(
                [],
                [],
                marker="*",
                linestyle="none",
                markersize=14,
                markerfacecolor="white",
                markeredgecolor="black",
            )
        )
        labels.append("FP32 reference")
    handles.append(
        Line2D([], [], color=_FRONT_COLOR, linestyle="--", marker="o", markerfacecolor="none")
    )
    labels.append("Pareto front")
    if not all(row.on_front for row in rows):
        handles.append(
            Line2D(
                [],
                [],
                marker="o",
                linestyle="none",
                markerfacecolor="white",
                markeredgecolor="grey",
            )
        )
        labels.append("dominated (hollow)")
    handles.append(Line2D([], [], color="grey", alpha=0.55, linewidth=2, marker="|", markersize=9))
    labels.append("p50 → p90 latency")
    figure.legend(
        handles,
        labels,
        loc="lower center",
        bbox_to_anchor=(0.525, 0.01),
        ncol=min(len(labels), 4),
        frameon=False,
        fontsize=9,
    )

    _place_labels(axes, canvas.get_renderer(), rows)
    buffer = io.BytesIO()
    canvas.print_png(buffer)
    return buffer.getvalue()


def _marker_size(row: _Row) -> float:
    """Diameter in points of what marks the variant: the front's ring, the star or the dot."""
    if row.on_front:
        return _RING_SIZE[row.is_reference]
    return _STAR_SIZE if row.is_reference else _DOT_SIZE


# Where a variant's name may go, as (x, y) offsets in units of the marker's radius plus points,
# tried in turn: beside the marker first (right-and-above leads because the p90 bar runs to the
# right), then ever further above and below with a leader line, for clusters of near-identical
# variants. Each entry: (x radii, x points, y radii, y points, horizontal alignment).
_NEAR_OFFSETS = (
    (1, 1, 0.75, 0, "left"),
    (-1, -1, 0.75, 0, "right"),
    (1, 1, -0.75, 0, "left"),
    (-1, -1, -0.75, 0, "right"),
    (0, 0, 1, 4, "center"),
    (0, 0, -1, -4, "center"),
)
_LABEL_OFFSETS = _NEAR_OFFSETS + tuple(
    (side, side * 6, sign, sign * (6 + 14 * step), ha)
    for step in range(1, 5)
    for sign in (1, -1)
    for side, ha in ((1, "left"), (-1, "right"), (0, "center"))
)


def _place_labels(axes: Any, renderer: Any, rows: list[_Row]) -> None:
    """Name each point where the name overlaps no marker, bar or other name, if it can."""
    from matplotlib.text import Text
    from matplotlib.transforms import Bbox

    to_display = axes.transData.transform
    pixels_per_point = axes.figure.dpi / 72
    taken = []
    for row in rows:
        x, y = to_display((row.p50, row.accuracy_pct))
        # A square a little inside the round marker, so a name may sit by its diagonal.
        half = 0.8 * _marker_size(row) / 2 * pixels_per_point
        taken.append(Bbox.from_extents(x - half, y - half, x + half, y + half))
        end, _ = to_display((row.p90, row.accuracy_pct))
        taken.append(Bbox.from_extents(x, y - 3, end + 4, y + 3))
    for artist in axes.texts:  # the "better" hint
        taken.append(artist.get_window_extent(renderer))
    inside = axes.get_window_extent(renderer)

    def annotate(row: _Row, attempt: int) -> Any:
        x_radii, x_points, y_radii, y_points, ha = _LABEL_OFFSETS[attempt]
        radius = _marker_size(row) / 2
        return axes.annotate(
            row.results.name,
            xy=(row.p50, row.accuracy_pct),
            xytext=(x_radii * radius + x_points, y_radii * radius + y_points),
            textcoords="offset points",
            ha=ha,
            va="bottom" if y_radii > 0 else "top",
            fontsize=9.5,
            fontweight="bold" if row.is_reference or row.on_front else "normal",
            color="#222222",
            bbox={"boxstyle": "round,pad=0.2", "fc": "white", "ec": "none", "alpha": 0.85},
            # Far-out names get a leader line so it stays clear which point they name.
            arrowprops=(
                {"arrowstyle": "-", "color": "#999999", "linewidth": 0.7, "shrinkB": 6}
                if attempt >= len(_NEAR_OFFSETS)
                else None
            ),
            zorder=6,
        )

    def text_extent(label: Any) -> Any:
        """The name's box with its white backing, leaving out the leader line (which starts at
        the point, so it would always clash with the point's own marker)."""
        label.get_window_extent(renderer)  # lays out the annotation for this renderer
        return Text.get_window_extent(label, renderer).padded(3)

    def clash(box: Any) -> float:
        """Area (px²) of `box` over taken spots or outside the axes; 0 means the spot is free."""
        area = sum(
            overlap.width * overlap.height
            for other in taken
            if (overlap := Bbox.intersection(box, other)) is not None
        )
        within = Bbox.intersection(box, inside)
        outside = box.width * box.height - (within.width * within.height if within else 0)
        return area + 4 * outside  # a name cut off by the frame is worse than one overlapping

    # Front and reference first: their names matter most and get the closest spots.
    for row in sorted(rows, key=lambda row: (not row.is_reference, not row.on_front, row.p50)):
        tries = []
        for attempt in range(len(_LABEL_OFFSETS)):
            box = text_extent(label := annotate(row, attempt))
            cost = clash(box)
            if cost == 0:
                taken.append(box)
                break
            label.remove()
            tries.append((cost, attempt))
        else:
            # Nowhere is free: a name over something beats no name, so take the least-bad spot.
            _, attempt = min(tries)
            taken.append(text_extent(annotate(row, attempt)))

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

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from vilt_edge import __version__
from vilt_edge.errors import DataError
from vilt_edge.outputs import check_replaceable, staged_directory
from vilt_edge.report import markdown, plot
from vilt_edge.report.names import HTML_NAME, MARKDOWN_NAME, MARKER_NAME, PNG_NAME
from vilt_edge.report.rows import _check_comparable, _rows, pareto_front
from vilt_edge.results import read_results

__all__ = [
    "HTML_NAME",
    "MARKDOWN_NAME",
    "MARKER_NAME",
    "PNG_NAME",
    "ReportPaths",
    "pareto_front",
    "write_report",
]


@dataclass(frozen=True)
class ReportPaths:
    """Where write_report put its three files."""

    png: Path
    markdown: Path
    html: Path


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

    # Checked again before the swap: nothing else appeared there meanwhile.
    with staged_directory(out_dir, check=lambda: _check_out_dir(out_dir)) as staging:
        generated = datetime.now(timezone.utc)
        png = plot._render_plot(rows)
        (staging / PNG_NAME).write_bytes(png)
        (staging / MARKDOWN_NAME).write_text(markdown._markdown(rows, generated), encoding="utf-8")
        (staging / HTML_NAME).write_text(markdown._html(rows, generated, png), encoding="utf-8")
        marker = {"written_by": "vilt-edge report", "vilt_edge_version": __version__}
        (staging / MARKER_NAME).write_text(json.dumps(marker) + "\n", encoding="utf-8")
    return ReportPaths(out_dir / PNG_NAME, out_dir / MARKDOWN_NAME, out_dir / HTML_NAME)


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists() and not out_dir.is_dir():
        raise DataError(f"{out_dir} is a file; the report needs a folder")
    check_replaceable(out_dir, "report")  # an earlier report only: see vilt_edge.outputs

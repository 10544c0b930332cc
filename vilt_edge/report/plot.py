"""The accuracy-versus-latency plot, drawn with matplotlib (imported only when drawing)."""

from __future__ import annotations

import io
from typing import Any

from vilt_edge.report.rows import _machines, _Row, _subtitle, _title

# One colour for each precision a results file may name (vilt_edge.records.PRECISIONS).
_PRECISION_COLORS = {"fp32": "#4c72b0", "fp16": "#8172b3", "bf16": "#dd8452", "int8": "#55a868"}
_FRONT_COLOR = "#c44e52"
# Marker diameters (points). The reference's star is larger so it stands out among the dots;
# front members get a ring around their marker.
_DOT_SIZE = 9
_STAR_SIZE = 19
_RING_SIZE = {False: 16, True: 22}  # by is_reference


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

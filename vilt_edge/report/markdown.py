"""The report's table as Markdown (for a PR) and as a self-contained HTML page."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from datetime import datetime

from vilt_edge.report.names import PNG_NAME
from vilt_edge.report.rows import _COLUMNS, _NUMERIC_FROM, _cells, _machines, _notes, _Row, _title


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

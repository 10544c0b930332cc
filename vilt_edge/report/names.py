"""The report's file names, which `vilt_edge.outputs` also knows."""

from __future__ import annotations

from vilt_edge.outputs import REPORT_FILES, REPORT_MARKER

PNG_NAME = "report.png"
MARKDOWN_NAME = "report.md"
HTML_NAME = "report.html"
# Marks a folder as written by write_report, so a rerun may replace it but a folder of the
# user's own files is never overwritten.
MARKER_NAME = REPORT_MARKER
assert {PNG_NAME, MARKDOWN_NAME, HTML_NAME, MARKER_NAME} == REPORT_FILES  # what outputs.py knows

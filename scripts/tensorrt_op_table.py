#!/usr/bin/env python3
"""Turn onnx-tensorrt's docs/operators.md into a vilt_edge TensorRT operator table (JSON).

    python3 scripts/tensorrt_op_table.py MD --version 10.14 --commit <40-hex> --note "..." [-o OUT]
    python3 scripts/tensorrt_op_table.py MD --version 10.14 --commit <40-hex> --note-file F -o OUT

Output keys, in order: tensorrt, source, source_commit, note, opset_range, operators.
`operators` maps each ONNX operator name, in the doc's row order, to
{"supported": bool, "types": [...], "restrictions": str}. The tables in
vilt_edge/devices/tensorrt_ops/ for 10.13, 10.16 and 11.1 were made with it.

Parsing rules. Checked against tensorrt-10.15.json: parsing the 11.0 doc (2f3fa349), whose table
is the 10.15 table plus Swish, gives exactly the 200 rows of tensorrt-10.15.json, in the same
order. Parsing the 10.14 doc against tensorrt-10.3.json (the 10.8 doc) differs only in the rows
the Changelog explains (Attention, Pow, ScatterND):
- Rows are the `| ... |` lines after the "Operator Support Matrix" header and its `|---|`
  separator, up to the first line that does not start with `|`.
- Cells are split on `|` and stripped. A row may lack its trailing `|` (e.g. `| Xor | Y | BOOL`)
  or carry extra empty cells (e.g. `| Cast | Y | ... | <spaces> |`); both are handled.
- supported: the second cell is "Y" (anything else, normally "N", is False).
- types: the third cell split on commas, each token stripped, empty tokens dropped
  (`FP32, FP16, BF16, |` gives three types). Tokens are kept verbatim, doc typos included
  (the 10.8-10.14 docs spell INT64 as `INF64` in ConstantOfShape).
- If any token of the third cell is not a bare type name (uppercase letters/digits only), the
  cell is prose, not a type list (DynamicQuantizeLinear: "Not supported. TensorRT's
  IDynamicQuantize ..."): types is [] and the text goes to restrictions (before any text that was
  already in the restrictions cell, separated by a space).
- restrictions: the fourth cell, stripped; any further non-empty cells are re-joined with `|`
  (none of the known docs has any). Inner text, `<br />` and doubled spaces inside backticks are
  kept verbatim.
- opset_range: "9-24" from "...inclusive range of opset 9 to opset 24", "up to 17" from
  "...supports operators up to Opset 17"; "" if neither phrase is found.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

TYPE_TOKEN = re.compile(r"^[A-Z][A-Z0-9]*$")
RANGE_RE = re.compile(r"inclusive range of opset\s+(\d+)\s+to\s+opset\s+(\d+)", re.I)
UP_TO_RE = re.compile(r"supports operators up to opset\s+(\d+)", re.I)


def _cells(line: str) -> list[str]:
    parts = [c.strip() for c in line.strip().split("|")]
    if parts and parts[0] == "":
        parts = parts[1:]
    while parts and parts[-1] == "":
        parts.pop()
    return parts


def parse_rows(text: str) -> dict[str, dict]:
    lines = text.splitlines()
    start = None
    for i, line in enumerate(lines):
        if re.match(r"^\|\s*Operator\s*\|", line):
            start = i
            break
    if start is None:
        raise ValueError("no operator table header ('| Operator | ...') found")
    i = start + 1
    if i < len(lines) and re.match(r"^\|[\s\-:|]+$", lines[i]):
        i += 1
    ops: dict[str, dict] = {}
    for line in lines[i:]:
        if not line.startswith("|"):
            break
        cells = _cells(line)
        if not cells:
            continue
        name = cells[0]
        supported = len(cells) > 1 and cells[1].upper() == "Y"
        type_cell = cells[2] if len(cells) > 2 else ""
        rest = [c for c in cells[3:]]
        while rest and rest[-1] == "":
            rest.pop()
        restrictions = "|".join(rest).strip()
        tokens = [t.strip() for t in type_cell.split(",")]
        tokens = [t for t in tokens if t]
        if tokens and not all(TYPE_TOKEN.match(t) for t in tokens):
            restrictions = (type_cell + (" " + restrictions if restrictions else "")).strip()
            tokens = []
        if name in ops:
            raise ValueError(f"operator {name!r} listed twice")
        ops[name] = {"supported": supported, "types": tokens, "restrictions": restrictions}
    return ops


def opset_range(text: str) -> str:
    m = RANGE_RE.search(text)
    if m:
        return f"{m.group(1)}-{m.group(2)}"
    m = UP_TO_RE.search(text)
    if m:
        return f"up to {m.group(1)}"
    return ""


def build(text: str, version: str, commit: str, note: str) -> dict:
    return {
        "tensorrt": version,
        "source": f"https://github.com/onnx/onnx-tensorrt/blob/{commit}/docs/operators.md",
        "source_commit": commit,
        "note": note,
        "opset_range": opset_range(text),
        "operators": parse_rows(text),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("markdown", type=Path, help="path to a docs/operators.md copy")
    ap.add_argument("--version", required=True, help='TensorRT major.minor, e.g. "10.13"')
    ap.add_argument("--commit", required=True, help="onnx-tensorrt commit the markdown is from")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--note", help="note text")
    g.add_argument("--note-file", type=Path, help="file holding the note text")
    ap.add_argument("-o", "--output", type=Path, help="output JSON (default: stdout)")
    a = ap.parse_args(argv)
    if not re.fullmatch(r"[0-9a-f]{40}", a.commit):
        ap.error("--commit must be a full 40-hex commit id")
    note = a.note if a.note is not None else a.note_file.read_text(encoding="utf-8").strip()
    table = build(a.markdown.read_text(encoding="utf-8"), a.version, a.commit, note)
    out = json.dumps(table, indent=2) + "\n"
    if a.output:
        a.output.write_text(out, encoding="utf-8")
    else:
        sys.stdout.write(out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

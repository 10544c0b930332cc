"""Results files (schema, atomic write, one-line errors) and the accuracy-versus-latency report."""

from __future__ import annotations

import base64
import json
import os
import re
import stat
from pathlib import Path

import pytest

from vilt_edge.devices.host import machine_description
from vilt_edge.errors import DataError, OutputError
from vilt_edge.report import MARKER_NAME, pareto_front, write_report
from vilt_edge.results import SCHEMA_VERSION, Results, read_results, write_results

pytest.importorskip("matplotlib", reason="the report needs the `report` extra (matplotlib)")

MACHINE = {
    "cpu": "Intel(R) Xeon(R) Processor",
    "cores": 2,
    "isa": ["avx2", "avx512f", "avx512_vnni"],
    "gpu": None,
}
REFERENCE = {"bundle": "/b/fp32", "precision": "fp32", "accuracy": 0.9637}

# name: (bundle, model, precision, mode, accuracy, p50, p90, size_mb, compared with fp32)
VARIANTS = {
    "default fp32": ("/b/fp32", "default", "fp32", None, 0.9637, 24.1, 26.8, 12.1, False),
    "default int8 static": ("/b/s8", "default", "int8", "static", 0.9625, 9.8, 11.2, 3.1, True),
    "default int8 dynamic": ("/b/d8", "default", "int8", "dynamic", 0.9591, 13.5, 15.0, 3.2, True),
    "default fp16": ("/b/fp16", "default", "fp16", None, 0.9636, 31.0, 35.5, 6.1, True),
    "distilled student": ("/b/st", "student-4l", "fp32", None, 0.9480, 7.2, 8.1, 5.0, False),
}  # fmt: skip


def make_results(name: str, **overrides) -> Results:
    bundle, model, precision, mode, accuracy, p50, p90, size_mb, compared = VARIANTS[name]
    fields = dict(
        created="2026-11-28T06:00:00Z",
        variant={
            "name": name,
            "bundle": bundle,
            "model": model,
            "precision": precision,
            "mode": mode,
            "runtime": "onnxruntime",
            "device": "Intel Xeon, 2 cores (avx512_vnni)",
            "size_mb": size_mb,
        },
        data="easy-vqa:test",
        task="vqa",
        n=9673,
        accuracy=accuracy,
        accuracy_by_type={"yes/no": accuracy, "color": accuracy},
        reference=REFERENCE if compared else None,
        accuracy_delta=round((accuracy - REFERENCE["accuracy"]) * 100, 4) if compared else None,
        agreement=0.995 if compared else None,
        logit_cosine=0.9999 if compared else None,
        max_abs_logit_diff=0.03 if compared else None,
        latency_ms={"p50": p50, "p90": p90, "p99": p90 * 1.2},
        e2e_latency_ms={"p50": p50 + 2, "p90": p90 + 2, "p99": p90 * 1.2 + 2},
        throughput=1000 / (p50 + 2),
        batch_size=1,
        threads=2,
        peak_rss_mb=650 + size_mb * 4,  # the validating process: data sets, reference and all
        deploy_peak_rss_mb=80 + size_mb * 2,  # a fresh process that loads and answers
        machine=MACHINE,
        predictions=[
            {"id": "q1", "prediction": "red", "score": 0.98, "truth": "red", "correct": 1.0}
        ],
    )
    fields.update(overrides)
    return Results(**fields)


@pytest.fixture
def results_files(tmp_path: Path) -> list[Path]:
    paths = []
    for index, name in enumerate(VARIANTS):
        path = tmp_path / "runs" / f"{index}.json"
        write_results(make_results(name), path)
        paths.append(path)
    return paths


def write_json(path: Path, data) -> Path:
    path.write_text(json.dumps(data))
    return path


def rows_header(markdown: str) -> list[str]:
    line = next(line for line in markdown.splitlines() if line.startswith("| Pareto"))
    return [cell.strip() for cell in line.strip("|").split("|")]


def table_rows(markdown: str) -> list[list[str]]:
    """Data rows of the markdown table (header and rule left out), cells stripped."""
    lines = [line for line in markdown.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


# results.py


def test_results_round_trip_through_json(tmp_path: Path):
    results = make_results("default int8 static")
    assert Results.from_json(json.loads(json.dumps(results.to_json()))) == results
    path = write_results(results, tmp_path / "deep" / "int8.json")
    assert read_results(path) == results
    on_disk = json.loads(path.read_text())
    assert on_disk["schema"] == "vilt-edge-results"
    assert on_disk["schema_version"] == SCHEMA_VERSION
    assert list(tmp_path.joinpath("deep").iterdir()) == [path]  # no temp file left behind


def test_to_json_does_not_share_mutable_state():
    results = make_results("default fp32")
    results.to_json()["variant"]["name"] = "changed"
    assert results.name == "default fp32"


def test_optional_fields_may_be_absent_from_a_file(tmp_path: Path):
    data = make_results("default fp32").to_json()
    for name in ("reference", "accuracy_delta", "agreement", "e2e_latency_ms", "predictions"):
        del data[name]
    results = read_results(write_json(tmp_path / "minimal.json", data))
    assert results.reference is None and results.predictions == []


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path: Path, monkeypatch):
    path = write_results(make_results("default fp32"), tmp_path / "r.json")
    before = path.read_text()

    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("vilt_edge.outputs.os.replace", fail)
    with pytest.raises(OSError):
        write_results(make_results("default fp16"), path)
    assert path.read_text() == before
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda d: d.update(schema="something-else"), "not a vilt-edge results file"),
        (lambda d: d.pop("schema"), "not a vilt-edge results file"),
        (lambda d: d.update(schema_version=2), "reads schema_version 1"),
        (lambda d: d.pop("accuracy"), "'accuracy' is missing"),
        (lambda d: d["variant"].pop("precision"), "'variant.precision' is missing"),
        (lambda d: d.update(accuracy="96%"), "'accuracy' must be a finite number"),
        (lambda d: d.update(accuracy=96.4), "'accuracy' must be a fraction"),
        (lambda d: d.update(n=True), "'n' must be an integer"),
        (lambda d: d.update(task="captioning"), "'task' must be one of vqa, nlvr2"),
        (lambda d: d["variant"].update(precision="int4"), "'variant.precision' must be one of"),
        (lambda d: d["latency_ms"].pop("p90"), "'latency_ms.p90' is missing"),
        (lambda d: d["latency_ms"].update(p50=99.0), "p50 <= p90 <= p99"),
        (lambda d: d["machine"].update(isa="avx2"), "'machine.isa' must be a list"),
        (lambda d: d.update(reference={"bundle": "/b"}), "'reference.precision' is missing"),
        (lambda d: d.update(created="yesterday"), "'created' must be an ISO 8601 time"),
        (lambda d: d.update(latency_method=""), "'latency_method' must be a non-empty string"),
        (lambda d: d.update(validation_latency_ms={"p50": 1}), "'validation_latency_ms.p90'"),
    ],
)
def test_bad_results_file_is_one_line_data_error(tmp_path: Path, change, message):
    data = make_results("default int8 static").to_json()
    change(data)
    path = write_json(tmp_path / "bad.json", data)
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        read_results(path)
    text = str(caught.value)
    assert text.startswith(str(path)) and "\n" not in text


def test_written_files_follow_the_umask(tmp_path: Path, results_files: list[Path]):
    # Temp-file helpers create owner-only files; results and reports are meant to be shared.
    previous = os.umask(0o022)
    try:
        path = write_results(make_results("default fp32"), tmp_path / "shared.json")
        paths = write_report(results_files, tmp_path / "report")
    finally:
        os.umask(previous)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert stat.S_IMODE(paths.png.parent.stat().st_mode) == 0o755


def test_write_results_refuses_a_folder(tmp_path: Path):
    with pytest.raises(DataError, match="is a folder"):
        write_results(make_results("default fp32"), tmp_path)


def test_unreadable_results_files(tmp_path: Path):
    with pytest.raises(DataError, match="no such results file"):
        read_results(tmp_path / "missing.json")
    (tmp_path / "text.json").write_text("accuracy: 0.96\n")
    with pytest.raises(DataError, match="not a JSON file"):
        read_results(tmp_path / "text.json")
    with pytest.raises(DataError, match="top level is a list"):
        read_results(write_json(tmp_path / "list.json", [1, 2]))
    with pytest.raises(DataError, match="is a folder"):
        read_results(tmp_path)


def test_machine_description_shape(monkeypatch):
    two_gpus = "NVIDIA H100\nNVIDIA H100\n"
    monkeypatch.setattr("vilt_edge.devices.host._run_nvidia_smi", lambda: two_gpus)
    machine = machine_description()
    assert isinstance(machine["cpu"], str) and machine["cpu"]
    assert isinstance(machine["cores"], int) and machine["cores"] >= 1
    assert all(isinstance(flag, str) for flag in machine["isa"])
    assert machine["gpu"] == "2x NVIDIA H100"
    monkeypatch.setattr("vilt_edge.devices.host._run_nvidia_smi", lambda: None)
    assert machine_description()["gpu"] is None


def test_machine_description_reads_arm_features(monkeypatch):
    cpuinfo = "processor\t: 0\nFeatures\t: fp asimd evtstrm asimddp i8mm\nCPU part\t: 0xd0b\n"
    monkeypatch.setattr("vilt_edge.devices.host._read_cpuinfo", lambda: cpuinfo)
    monkeypatch.setattr("vilt_edge.devices.host._run_nvidia_smi", lambda: None)
    assert machine_description()["isa"] == ["asimd", "asimddp", "i8mm"]


# report.py


def test_pareto_front():
    assert pareto_front([]) == []
    assert pareto_front([(10.0, 0.9)]) == [0]
    # (latency, accuracy): 1 is faster and as accurate as 0; 3 is slower and worse than 2.
    points = [(20.0, 0.95), (10.0, 0.95), (5.0, 0.90), (8.0, 0.89), (30.0, 0.97)]
    assert pareto_front(points) == [1, 2, 4]
    # Exact duplicates dominate neither each other, so both stay.
    assert pareto_front([(5.0, 0.9), (5.0, 0.9), (6.0, 0.8)]) == [0, 1]
    # A trade-off curve: every point is on the front.
    assert pareto_front([(1.0, 0.1), (2.0, 0.2), (3.0, 0.3)]) == [0, 1, 2]


def test_report_writes_three_files(tmp_path: Path, results_files: list[Path]):
    from PIL import Image

    paths = write_report(results_files, tmp_path / "report")
    for path in (paths.png, paths.markdown, paths.html):
        assert path.is_file() and path.parent == tmp_path / "report"
    with Image.open(paths.png) as image:
        assert image.format == "PNG"
        assert image.width >= 1000 and image.height >= 700
    # Only the staging folder's final form is left next to the report, nothing temporary.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


def test_html_is_self_contained(tmp_path: Path, results_files: list[Path]):
    paths = write_report(results_files, tmp_path / "report")
    page = paths.html.read_text()
    assert 'src="http' not in page and 'href="http' not in page
    assert "<script" not in page and "<link" not in page
    embedded = re.search(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert embedded and base64.b64decode(embedded.group(1)) == paths.png.read_bytes()
    for name in VARIANTS:
        assert f"<td>{name}" in page


def test_html_escapes_names(tmp_path: Path):
    variant = {**make_results("default fp32").variant, "name": "<b>fp32 & co</b>"}
    path = write_results(make_results("default fp32", variant=variant), tmp_path / "odd.json")
    page = write_report([path], tmp_path / "report").html.read_text()
    assert "&lt;b&gt;fp32 &amp; co&lt;/b&gt;" in page and "<b>fp32" not in page


def test_markdown_table(tmp_path: Path, results_files: list[Path]):
    markdown = write_report(results_files, tmp_path / "report").markdown.read_text()
    assert "![Accuracy versus p50 latency](report.png)" in markdown
    assert "easy-vqa:test" in markdown and "9,673" in markdown
    assert "Intel(R) Xeon(R) Processor" in markdown and "2026-11-28" in markdown
    rows = table_rows(markdown)
    assert len(rows) == len(VARIANTS)
    by_name = {row[1].removesuffix(" (reference)"): row for row in rows}
    assert set(by_name) == set(VARIANTS)
    # Pareto, Variant, ..., Accuracy (%), delta, Agreement (%), p50, p90, ...
    assert by_name["default fp32"][1] == "default fp32 (reference)"
    assert by_name["default fp32"][7] == "ref"
    assert by_name["default int8 static"][7] == "-0.12"
    assert by_name["default int8 dynamic"][7] == "-0.46"
    assert by_name["default fp16"][7] == "-0.01"
    # The student was not validated against the reference: its delta is worked out here.
    assert by_name["distilled student"][7] == "-1.57"
    assert by_name["default int8 static"][6] == "96.25"
    assert by_name["default int8 static"][8] == "99.50"
    assert by_name["distilled student"][8] == "—"
    assert by_name["default int8 static"][3] == "int8 static"
    # Memory is what an app pays (a fresh process), not the validating process's peak.
    assert rows_header(markdown)[-1] == "Deploy peak RSS (MB)"
    size = float(by_name["default int8 static"][13])
    assert by_name["default int8 static"][14] == f"{80 + size * 2:.0f}"
    on_front = {name for name, row in by_name.items() if row[0] == "★"}
    assert on_front == {"distilled student", "default int8 static", "default fp32"}
    # Fastest first.
    assert [row[1] for row in rows][0] == "distilled student"


def test_reference_is_the_referenced_fp32_not_the_first(tmp_path: Path, results_files):
    # The student (also fp32) comes first, but the others name /bundles/fp32 as their reference.
    reordered = [results_files[4], *results_files[:4]]
    markdown = write_report(reordered, tmp_path / "report").markdown.read_text()
    assert "default fp32 (reference)" in markdown
    assert "distilled student (reference)" not in markdown


def test_rerun_replaces_a_previous_report(tmp_path: Path, results_files: list[Path]):
    out = tmp_path / "report"
    write_report(results_files, out)
    paths = write_report(results_files[:2], out)
    assert len(table_rows(paths.markdown.read_text())) == 2
    assert sorted(p.name for p in out.iterdir()) == sorted(
        [MARKER_NAME, "report.html", "report.md", "report.png"]
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


def test_refuses_a_folder_of_other_files(tmp_path: Path, results_files: list[Path]):
    out = tmp_path / "report"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="holding 'notes.txt', which vilt-edge did not write"):
        write_report(results_files, out)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    # An empty folder is fine.
    empty = tmp_path / "empty"
    empty.mkdir()
    assert write_report(results_files, empty).png.is_file()


def bad_inputs(tmp_path: Path, results_files: list[Path]) -> dict[str, tuple[list[Path], str]]:
    good = results_files[0]
    data = json.loads(good.read_text())
    other_data = {**data, "data": "easy-vqa:train", "variant": {**data["variant"], "name": "x"}}
    other_n = {**data, "n": 100, "variant": {**data["variant"], "name": "y"}}
    missing = {k: v for k, v in data.items() if k != "latency_ms"}
    (tmp_path / "not.json").write_text("{not json")
    return {
        "empty": ([], "no results files given"),
        "schema": ([write_json(tmp_path / "s.json", {**data, "schema": "other"})], "schema is"),
        "version": (
            [write_json(tmp_path / "v.json", {**data, "schema_version": 7})],
            "schema_version 7 is not supported",
        ),
        "missing field": (
            [good, write_json(tmp_path / "m.json", missing)],
            "'latency_ms' is missing",
        ),
        "not json": ([good, tmp_path / "not.json"], "not a JSON file"),
        "mixed data sets": (
            [good, write_json(tmp_path / "d.json", other_data)],
            "different data sets",
        ),
        "different n": ([good, write_json(tmp_path / "n.json", other_n)], "numbers of examples"),
        "duplicate name": ([good, good], "is in both"),
    }


@pytest.mark.parametrize(
    "case",
    [
        "empty",
        "schema",
        "version",
        "missing field",
        "not json",
        "mixed data sets",
        "different n",
        "duplicate name",
    ],
)
def test_bad_input_writes_nothing(tmp_path: Path, results_files: list[Path], case: str):
    paths, message = bad_inputs(tmp_path, results_files)[case]
    out = tmp_path / "report"
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(DataError, match=re.escape(message)) as caught:
        write_report(paths, out)
    assert "\n" not in str(caught.value)
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_failed_render_leaves_previous_report(tmp_path: Path, results_files, monkeypatch):
    out = tmp_path / "report"
    first = write_report(results_files, out).markdown.read_text()

    def broken(rows):
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("vilt_edge.report.plot._render_plot", broken)
    with pytest.raises(RuntimeError):
        write_report(results_files[:2], out)
    assert (out / "report.md").read_text() == first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report", "runs"]


def test_single_variant_without_fp32(tmp_path: Path, results_files: list[Path]):
    paths = write_report([results_files[1]], tmp_path / "report")
    rows = table_rows(paths.markdown.read_text())
    assert len(rows) == 1 and rows[0][0] == "★"
    assert rows[0][7] == "-0.12"  # recorded at validate time, against a bundle not in the report


def test_wide_latency_range_and_differing_machines(tmp_path: Path):
    # A log axis (latencies over a decade apart) and a machine mismatch both render.
    fast = make_results("default int8 static", latency_ms={"p50": 1.0, "p90": 1.2, "p99": 1.5})
    slow = make_results("default fp32", machine={**MACHINE, "cpu": "Arm Cortex-A76", "isa": []})
    paths = [write_results(r, tmp_path / f"{i}.json") for i, r in enumerate((fast, slow))]
    markdown = write_report(paths, tmp_path / "report").markdown.read_text()
    assert "Machines differ" in markdown


def test_report_says_how_latency_was_measured(tmp_path: Path):
    """The pipeline's side-by-side timing is named in the notes; a report that mixes it with a
    validation pass's timing says they compare less well."""
    method = "side by side: 5 rounds in which each variant answered the same 40 examples"
    validation = {"p50": 9.0, "p90": 9.5, "p99": 9.9}
    timed = [
        make_results(name, latency_method=method, validation_latency_ms=validation)
        for name in ("default fp32", "default int8 static")
    ]
    paths = [write_results(r, tmp_path / f"{i}.json") for i, r in enumerate(timed)]
    markdown = write_report(paths, tmp_path / "report").markdown.read_text()
    assert f"Latency measured {method}." in markdown and "compare less well" not in markdown
    alone = write_results(make_results("default fp16"), tmp_path / "alone.json")
    markdown = write_report([*paths, alone], tmp_path / "mixed").markdown.read_text()
    assert "in a validation pass over every example, the variant alone" in markdown
    assert "compare less well" in markdown
    plain = write_report([alone], tmp_path / "plain").markdown.read_text()
    assert "Latency measured" not in plain  # a report of validate's files reads as before


def test_report_names_whose_ceilings_the_floor_used(tmp_path: Path):
    """The floor note names the runtime behind each GEMM ceiling (the best any installed one
    reached); a floor from before OpenVINO's ceilings were measured names none: ONNX Runtime's.
    BF16 is named only where a variant computes in it. Throughput says what it includes."""

    def floor(**sources):
        return {"floor_ms": 1.0, "image_size": "384x512", "ceiling_runtimes": sources}

    ov = make_results("default int8 static", floor=floor(int8="openvino", fp32="onnxruntime"))
    old = make_results("default fp32", floor={"floor_ms": 2.0, "image_size": "384x512"})
    paths = [write_results(r, tmp_path / f"{i}.json") for i, r in enumerate((ov, old))]
    markdown = write_report(paths, tmp_path / "report").markdown.read_text()
    assert "(INT8: ONNX Runtime or OpenVINO's, FP32: ONNX Runtime's)" in markdown
    assert "BF16" not in markdown and "Throughput: examples answered per second" in markdown
    bf16 = make_results("default fp16", floor=floor(int8="openvino", fp32="openvino",
                                                    bf16="openvino"))  # fmt: skip
    bf16.variant["precision"] = "bf16"
    path = write_results(bf16, tmp_path / "bf16.json")
    markdown = write_report([path], tmp_path / "bf16").markdown.read_text()
    assert "(INT8: OpenVINO's, BF16: OpenVINO's, FP32: OpenVINO's)" in markdown


def test_plot_draws_every_precision(tmp_path: Path):
    """A BF16 variant (`quantize --precision bf16`) is drawn in its own colour: each precision
    a results file may name has one (the plot once stopped on BF16 with a KeyError)."""
    from vilt_edge.records import PRECISIONS
    from vilt_edge.report import plot

    assert set(plot._PRECISION_COLORS) == set(PRECISIONS)
    bf16 = make_results("default fp16")
    bf16.variant["precision"] = "bf16"
    paths = [write_results(r, tmp_path / f"{i}.json")
             for i, r in enumerate((make_results("default fp32"), bf16))]  # fmt: skip
    report = write_report(paths, tmp_path / "report")
    assert report.png.stat().st_size > 0 and "| bf16" in report.markdown.read_text()


def test_plot_subtitle_stays_inside_the_figure(monkeypatch, results_files: list[Path]):
    """A long machine description (an AMX Xeon's flags) is wrapped: drawn at the plot's size
    and font, every subtitle line ends inside the figure, settings included."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from vilt_edge.report import rows as report
    from vilt_edge.results import read_results

    machine = (
        "Intel(R) Xeon(R) Platinum 8581C CPU @ 2.30GHz, 2 cores (sse4_2, avx, avx2, fma, "
        "avx512f, avx512bw, avx512_vnni, avx512_bf16, amx_tile, amx_int8, amx_bf16), "
        "onnxruntime 1.32.0"
    )
    monkeypatch.setattr(report, "describe_machine", lambda _: machine)
    rows = report._rows([(path, read_results(path)) for path in results_files])
    subtitle = report._subtitle(rows)
    lines = subtitle.splitlines()
    assert len(lines) == 3 and lines[-1] == "batch 1, threads 2"
    assert " ".join(lines[:2]) == machine
    figure = Figure(figsize=(10, 6.4), dpi=150)  # as _render_plot draws it
    canvas = FigureCanvasAgg(figure)
    text = figure.text(0.08, 0.925, subtitle, fontsize=9, va="top", linespacing=1.3)
    canvas.draw()
    assert text.get_window_extent(canvas.get_renderer()).x1 < figure.bbox.x1
    unwrapped = figure.text(0.08, 0.5, f"{machine}  ·  batch 1, threads 2", fontsize=9.5)
    canvas.draw()  # what the plot drew before: past the right edge
    assert unwrapped.get_window_extent(canvas.get_renderer()).x1 > figure.bbox.x1

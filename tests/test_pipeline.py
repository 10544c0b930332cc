"""vilt-edge pipeline on a tiny teacher: every stage, the report, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import one_line_error, random_transformers_model, tiny_config, write_hf_directory
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.errors import BundleError, InputError
from vilt_edge.pipeline import PipelineOptions, run_pipeline


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    model = random_transformers_model("vqa", tiny_config("vqa", num_hidden_layers=3), seed=3)
    return write_hf_directory(model, tmp_path_factory.mktemp("teacher"), shortest_edge=64)


@pytest.fixture(scope="module")
def frames(tmp_path_factory) -> Path:
    from vilt_edge.data import load_easy_vqa

    folder = tmp_path_factory.mktemp("frames")
    lines = [
        json.dumps({"image": e.image_path, "question": e.question, "answers": list(e.answers)})
        for e in load_easy_vqa("train")[:64]
    ]
    (folder / "train.jsonl").write_text("\n".join(lines) + "\n")
    return folder / "train.jsonl"


def test_pipeline_runs_every_stage(teacher, frames, tmp_path):
    out = tmp_path / "run"
    stages = []
    options = PipelineOptions(model=str(teacher), target="x86-avx512-vnni", data="easy-vqa:test",
                              train=f"frames:{frames}", epochs=1, limit=12, threads=1,
                              calib_size=16)  # fmt: skip
    summary = run_pipeline(options, out, stage=stages.append).to_json()
    names = [row["variant"] for row in summary["rows"]]
    assert names == ["teacher-fp32", "teacher-int8", "student-fp32", "student-int8"]
    assert summary["distill"]["student_layers"] == 1 and summary["n"] == 12
    for name in names:  # validated as the compiled bundles, against the FP32 teacher
        results = json.loads((out / "results" / f"{name}.json").read_text())
        assert results["variant"]["bundle"] == str(out / f"{name}-x86-avx512-vnni")
        assert (results["reference"] is None) == (name == "teacher-fp32")
        # The report compares latencies timed side by side after validation (interleaved
        # rounds); the validation pass's own figures stay beside them.
        assert results["latency_method"].startswith("side by side: 10 rounds")
        assert set(results["validation_latency_ms"]) == {"p50", "p90", "p99"}
        assert set(results["validation_e2e_latency_ms"]) == {"p50", "p90", "p99"}
        assert results["validation_throughput"] > 0
        # Throughput is the side-by-side timing's too (batch 1, preprocessing included).
        mean_e2e = 1000 / results["throughput"]
        assert results["e2e_latency_ms"]["p50"] * 0.5 < mean_e2e < results["e2e_latency_ms"]["p99"]
        assert results["e2e_latency_ms"]["p50"] >= results["latency_ms"]["p50"]
        row = next(row for row in summary["rows"] if row["variant"] == name)
        assert row["p50_ms"] == results["latency_ms"]["p50"]
        assert row["validation_p50_ms"] == results["validation_latency_ms"]["p50"]
    assert "Latency measured side by side" in (out / "report" / "report.md").read_text()
    assert any("timing the 4 variants side by side" in s for s in stages)
    teacher_int8 = json.loads((out / "results" / "teacher-int8.json").read_text())
    assert teacher_int8["agreement"] >= 0.9
    for suffix in ("html", "md", "png"):
        assert (out / "report" / f"report.{suffix}").is_file()
    assert json.loads((out / "pipeline.json").read_text())["rows"] == summary["rows"]
    assert any("distilling 3 layers into 1" in s for s in stages)
    assert "note" not in summary  # CPU targets run here: nothing validated uncompiled

    with pytest.raises(BundleError, match="output exists"):
        run_pipeline(options, out)


def test_pipeline_for_a_jetson_without_tensorrt(teacher, frames, tmp_path):
    options = PipelineOptions(model=str(teacher), target="jetson-orin-nano", data="easy-vqa:test",
                              train=f"frames:{frames}", distill=False, limit=8, threads=1,
                              calib_size=16)  # fmt: skip
    summary = run_pipeline(options, tmp_path / "orin").to_json()
    names = [row["variant"] for row in summary["rows"]]
    assert names == ["teacher-fp32", "teacher-int8", "teacher-fp16"]
    assert all(c["state"] == "pending-build" for c in summary["compiled"].values())
    assert "validated as their uncompiled bundles" in summary["note"]
    assert (tmp_path / "orin" / "teacher-int8-jetson-orin-nano" / "BUILD.md").is_file()


def test_pipeline_cli(teacher, frames, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cli"
    args = ["pipeline", str(teacher), "-o", str(out), "--data", "easy-vqa:test", "--train",
            f"frames:{frames}", "--no-distill", "--limit", "6", "--threads", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Accuracy vs. latency" in result.stdout and "report: " in result.stdout
    one_line_error(runner.invoke(app, args), 4, "output exists")
    assert runner.invoke(app, [*args, "--overwrite"]).exit_code == 0
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    one_line_error(runner.invoke(app, [*args[:2], "-o", str(other), *args[4:], "--overwrite"]),
                   6, "holding 'keep.txt', which vilt-edge did not write")  # fmt: skip
    assert (other / "keep.txt").read_text() == "mine"
    one_line_error(runner.invoke(app, [*args, "--target", "nano-2019"]), 2, "unknown target")
    one_line_error(runner.invoke(app, [*args, "--layers", "0"]), 2, "--layers")
    missing = ["pipeline", str(tmp_path / "nope"), "-o", str(tmp_path / "x"), *args[4:]]
    one_line_error(runner.invoke(app, missing), 3, "nope")
    with pytest.raises(InputError, match="--data is required"):
        run_pipeline(PipelineOptions(model=str(teacher)), tmp_path / "y")

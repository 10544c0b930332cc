"""validate, bench and report on tiny bundles and the real VQAv2 / NLVR2 minis in ../shared/data.

Expected figures are recomputed here independently (through `ViltRuntime.ask` and the metrics
module), so a scoring or bookkeeping slip in `vilt_edge.validate` shows up as a mismatch.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import one_line_error, random_transformers_model, write_hf_directory
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.data import DataSet, load_data, load_nlvr2, load_vqav2
from vilt_edge.data.metrics import nlvr2_consistency, vqa_score
from vilt_edge.errors import DataError, InputError
from vilt_edge.results import read_results
from vilt_edge.runtime import ViltRuntime
from vilt_edge.validate import drift, side_by_side_latency, validate


@pytest.fixture(scope="module")
def other_vqa_bundle(tmp_path_factory):
    """Same labels and config as tiny_vqa_bundle, different random weights."""
    from vilt_edge.model.export import export_bundle

    hf = write_hf_directory(
        random_transformers_model("vqa", seed=1), tmp_path_factory.mktemp("other_hf")
    )
    return export_bundle(hf, tmp_path_factory.mktemp("other") / "vqa").path


# Data specs


def test_load_data_specs(shared_data):
    vqa = load_data(f"vqav2:{shared_data / 'vqav2-mini'}")
    assert (
        vqa.kind == "vqav2"
        and vqa.task == "vqa"
        and len(vqa) == len(load_vqav2(shared_data / "vqav2-mini"))
    )
    nlvr = load_data(f"nlvr2:{shared_data / 'nlvr2-mini'}")
    assert nlvr.task == "nlvr2" and len(nlvr) == 16
    easy = load_data("easy-vqa")
    assert easy.name == "easy-vqa:test" and len(easy) == 9673
    assert len(load_data("easy-vqa:train")) == 38575


def test_load_data_explicit_vqav2_files(shared_data):
    mini = shared_data / "vqav2-mini"
    data = load_data(
        "vqav2",
        questions=mini / "v2_OpenEnded_mscoco_val2014_questions.mini.json",
        annotations=mini / "v2_mscoco_val2014_annotations.mini.json",
        images=mini / "images" / "val2014",
    )
    assert len(data) > 0 and all(e.image_path.endswith(".jpg") for e in data.examples)


@pytest.mark.parametrize(
    "spec, kwargs, fragment",
    [
        ("coco:foo", {}, "unknown data spec"),
        ("vqav2", {}, "vqav2 needs a directory"),
        ("nlvr2", {}, "nlvr2 needs a path"),
        ("easy-vqa:dev", {}, "splits test and train"),
        ("nlvr2:x", {"questions": "q.json"}, "go with --data vqav2"),
    ],
)
def test_load_data_bad_specs(spec, kwargs, fragment):
    with pytest.raises(InputError, match=fragment):
        load_data(spec, **kwargs)


def test_load_data_missing_directory(tmp_path):
    with pytest.raises(DataError):
        load_data(f"vqav2:{tmp_path / 'nowhere'}")
    with pytest.raises(DataError):
        load_data(f"nlvr2:{tmp_path / 'nowhere.jsonl'}")


# Scores, against an independent recomputation


def test_validate_vqav2_matches_independent_scores(shared_data, tiny_vqa_bundle):
    data = load_data(f"vqav2:{shared_data / 'vqav2-mini'}")
    runtime = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    results = validate(runtime, data, warmup=1)
    top = [runtime.ask(e.image_path, e.question, top_k=1)[0].answer for e in data.examples]
    expected = [vqa_score(a, e.answers) for a, e in zip(top, data.examples, strict=True)]
    assert results.n == len(data) and results.task == "vqa"
    assert results.accuracy == pytest.approx(np.mean(expected), abs=1e-12)
    for answer_type in {e.answer_type for e in data.examples}:
        chosen = [
            s for s, e in zip(expected, data.examples, strict=True) if e.answer_type == answer_type
        ]
        assert results.accuracy_by_type[answer_type] == pytest.approx(np.mean(chosen))
    assert [p["answer"] for p in results.predictions] == top
    assert [p["id"] for p in results.predictions] == [e.question_id for e in data.examples]
    latency, e2e = results.latency_ms, results.e2e_latency_ms
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert e2e["p50"] >= latency["p50"]  # end to end includes the model call
    assert results.threads == 1 and results.batch_size == 1
    assert results.peak_rss_mb > 10 and results.throughput > 0
    assert results.machine["cores"] >= 1 and results.reference is None


def test_validate_nlvr2_accuracy_and_consistency(shared_data, tiny_nlvr2_bundle):
    path = shared_data / "nlvr2-mini"
    data = load_data(f"nlvr2:{path}")
    runtime = ViltRuntime.load(tiny_nlvr2_bundle)
    results = validate(runtime, data, batch_size=4, warmup=0)
    examples = load_nlvr2(path)
    says = [
        runtime.ask((e.left_image, e.right_image), e.sentence, top_k=1)[0].answer == "True"
        for e in examples
    ]
    correct = [s == e.label for s, e in zip(says, examples, strict=True)]
    assert results.accuracy == pytest.approx(np.mean(correct))
    assert results.consistency == pytest.approx(
        nlvr2_consistency([e.identifier for e in examples], correct)
    )
    assert results.batch_size == 4


def test_drift_against_itself_and_another_model(shared_data, tiny_vqa_bundle, other_vqa_bundle):
    data = load_data(f"vqav2:{shared_data / 'vqav2-mini'}")
    runtime = ViltRuntime.load(tiny_vqa_bundle)
    same = validate(runtime, data, reference=ViltRuntime.load(tiny_vqa_bundle), warmup=0)
    assert same.accuracy_delta == 0 and same.agreement == 1
    assert same.logit_cosine == pytest.approx(1.0) and same.max_abs_logit_diff < 1e-5

    other = ViltRuntime.load(other_vqa_bundle)
    results = validate(runtime, data, reference=other, warmup=0)
    mine = runtime.logits_batch(*data.inputs())
    theirs = other.logits_batch(*data.inputs())
    assert results.agreement == pytest.approx(np.mean(mine.argmax(1) == theirs.argmax(1)))
    assert results.max_abs_logit_diff == pytest.approx(np.abs(mine - theirs).max(), rel=1e-6)
    assert results.reference["accuracy"] == pytest.approx(validate(other, data).accuracy)
    assert results.accuracy_delta == pytest.approx(
        100 * (results.accuracy - results.reference["accuracy"]), abs=1e-3
    )
    assert results.logit_cosine < 0.999  # different weights do not point the same way


def test_side_by_side_latency_takes_turns_on_the_same_examples():
    """Every runtime answers the same first examples in each round, one at a time, the order
    rotated each round; the percentiles are of each runtime's own model times."""
    log = []

    class Data:
        def __len__(self):
            return 10

        def inputs(self, start, stop):
            return [f"image {start}"] * (stop - start), [f"question {start}"] * (stop - start)

    class Timed:
        def __init__(self, name, model_ms):
            self.name, self.model_ms = name, model_ms

        def logits_batch(self, images, questions, batch_size):
            assert batch_size == 1 and len(images) == len(questions) == 1
            log.append((self.name, images[0]))
            model = self.model_ms + len(log) / 1000
            self.last_latency_ms = {"model": model, "total": model + 3.0}

    done = []
    runtimes = {"a": Timed("a", 1.0), "b": Timed("b", 2.0)}
    latency = side_by_side_latency(runtimes, Data(), rounds=3, calls=4, on_progress=done.append)
    # Each turn: 3 untimed warm-up calls, then the 4 timed ones, on examples 0.. in order.
    turns = [log[k : k + 7] for k in range(0, len(log), 7)]
    assert [turn[0][0] for turn in turns] == ["a", "b", "b", "a", "a", "b"]  # rotated
    for turn in turns:
        assert len({name for name, _ in turn}) == 1
        assert [image for _, image in turn] == [f"image {i}" for i in (0, 1, 2, 0, 1, 2, 3)]
    assert done == [4] * 6
    a, b = latency["a"], latency["b"]
    assert 1.0 < a["latency_ms"]["p50"] < 1.1 and 2.0 < b["latency_ms"]["p50"] < 2.1
    # End to end (preprocessing included) and the throughput it gives at batch 1.
    assert 4.0 < a["e2e_latency_ms"]["p50"] < 4.1 and 5.0 < b["e2e_latency_ms"]["p50"] < 5.1
    assert 1000 / 4.1 < a["throughput"] < 1000 / 4.0 and 1000 / 5.1 < b["throughput"] < 200
    with pytest.raises(InputError, match="at least one round"):
        side_by_side_latency(runtimes, Data(), rounds=0)


def test_drift_edge_cases():
    a = np.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0]])
    b = np.array([[0.0, 0.0], [0.0, 1.0], [2.0, 2.0]])
    figures = drift(a, b)
    assert figures["logit_cosine"] == pytest.approx((1.0 + 0.0 + 1.0) / 3)
    assert figures["max_abs_logit_diff"] == 1.0
    assert figures["agreement"] == pytest.approx(2 / 3)


def test_validate_refuses_wrong_task_unlabeled_and_other_labels(
    shared_data, tiny_vqa_bundle, tiny_nlvr2_bundle, tmp_path
):
    vqa = ViltRuntime.load(tiny_vqa_bundle)
    with pytest.raises(DataError, match="NLVR2 data, but this bundle is a vqa model"):
        validate(vqa, load_data(f"nlvr2:{shared_data / 'nlvr2-mini'}"))
    nlvr = ViltRuntime.load(tiny_nlvr2_bundle)
    data = load_data(f"vqav2:{shared_data / 'vqav2-mini'}")
    with pytest.raises(DataError, match="reference"):
        validate(vqa, data, reference=nlvr)
    # Unlabeled NLVR2 (images and sentences only) is fine for calibration, not for validation.
    folder = tmp_path / "nlvr2"
    shutil.copytree(shared_data / "nlvr2-mini", folder)
    lines = (folder / "examples.jsonl").read_text().splitlines()
    stripped = [json.loads(line) for line in lines]
    for record in stripped:
        record.pop("label")
    (folder / "examples.jsonl").write_text("".join(json.dumps(r) + "\n" for r in stripped))
    with pytest.raises(DataError, match="have no label"):
        validate(nlvr, load_data(f"nlvr2:{folder}"))
    with pytest.raises(DataError, match="no examples"):
        validate(vqa, DataSet("empty", "vqav2", "vqa", []))


# Command line


def test_validate_cli_json_and_out_then_report(
    shared_data, tiny_vqa_bundle, other_vqa_bundle, tmp_path
):
    spec = f"vqav2:{shared_data / 'vqav2-mini'}"
    runner = CliRunner()
    first = runner.invoke(
        app,
        ["validate", str(tiny_vqa_bundle), "--data", spec, "--json", "--threads", "1",
         "--reference", str(other_vqa_bundle), "--out", str(tmp_path / "a.json"),
         "--name", "tiny a"],
    )  # fmt: skip
    assert first.exit_code == 0, first.output
    summary = json.loads(first.stdout)
    for key in ("n", "accuracy", "latency_ms", "e2e_latency_ms", "reference_accuracy",
                "accuracy_delta", "agreement"):  # fmt: skip
        assert key in summary, key
    assert set(summary["latency_ms"]) == {"p50", "p90", "p99"}
    assert summary["accuracy_delta"] == pytest.approx(
        100 * (summary["accuracy"] - summary["reference_accuracy"]), abs=1e-3
    )
    saved = read_results(tmp_path / "a.json")
    assert saved.n == summary["n"] and len(saved.predictions) == saved.n
    assert saved.variant["name"] == "tiny a" and saved.reference is not None

    second = runner.invoke(
        app,
        ["validate", str(other_vqa_bundle), "--data", spec, "--out", str(tmp_path / "b.json"),
         "--name", "tiny b", "--limit", "50"],
    )  # fmt: skip
    assert second.exit_code == 0, second.output
    assert "accuracy" in second.stdout and "p50/p90/p99" in second.stdout

    report = runner.invoke(
        app,
        ["report", str(tmp_path / "a.json"), str(tmp_path / "b.json"), "-o", str(tmp_path / "r")],
    )
    assert report.exit_code == 0, report.output
    assert "tiny a" in report.stdout and "tiny b" in report.stdout
    assert (tmp_path / "r" / "report.html").stat().st_size > 1000
    assert (tmp_path / "r" / "report.png").read_bytes()[:4] == b"\x89PNG"


def test_validate_cli_bad_inputs_are_one_line(shared_data, tiny_vqa_bundle, tmp_path):
    runner = CliRunner()
    nlvr = f"nlvr2:{shared_data / 'nlvr2-mini'}"
    cases = [
        (["--data", nlvr], 5, "this bundle is a vqa model"),
        (["--data", "imagenet:x"], 2, "unknown data spec"),
        (["--data", f"vqav2:{tmp_path}"], 5, str(tmp_path)),
        (["--limit", "0"], 2, "--limit"),
        (["--out", str(tmp_path)], 2, "is a folder"),
        (["--reference", str(tmp_path / "none-here")], 4, "none-here"),
    ]
    for args, code, fragment in cases:
        result = runner.invoke(app, ["validate", str(tiny_vqa_bundle), *args])
        one_line_error(result, code, fragment)
    assert not any(tmp_path.iterdir())  # nothing half-written


def test_report_cli_refuses_unknown_schema(tmp_path):
    bad = tmp_path / "x.json"
    bad.write_text(json.dumps({"schema": "vilt-edge-results", "schema_version": 99}))
    result = CliRunner().invoke(app, ["report", str(bad), "-o", str(tmp_path / "r")])
    one_line_error(result, 5, "schema_version 99")
    assert not (tmp_path / "r").exists()


def test_bench_cli(tiny_vqa_bundle, tiny_nlvr2_bundle):
    runner = CliRunner()
    result = runner.invoke(
        app,
        ["bench", str(tiny_vqa_bundle), "--image-size", "384x512", "--text-len", "12",
         "--batch", "2", "--runs", "5", "--threads", "1", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    latency = figures["latency_ms"]
    assert 0 < latency["p50"] <= latency["p90"] <= latency["p99"]
    assert figures["throughput"] > 0 and figures["batch"] == 2 and figures["threads"] == 1
    assert figures["image_size"] == "384x512" and figures["text_len"] == 12
    pair = runner.invoke(app, ["bench", str(tiny_nlvr2_bundle), "--runs", "2", "--json"])
    assert pair.exit_code == 0, pair.output
    assert json.loads(pair.stdout)["image_size"] == "384x384"


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--image-size", "384"], "HEIGHTxWIDTH"),
        (["--image-size", "384x500"], "multiples of the bundle's patch size 32"),
        (["--text-len", "41"], "text length 41"),
        (["--batch", "0"], "batch must be at least 1"),
        (["--runs", "0"], "--runs"),
    ],
)
def test_bench_cli_bad_inputs(tiny_vqa_bundle, args, fragment):
    result = CliRunner().invoke(app, ["bench", str(tiny_vqa_bundle), *args])
    one_line_error(result, 2, fragment)


def test_validate_cli_bad_data_names_the_file_and_writes_nothing(
    shared_data, tiny_vqa_bundle, tiny_nlvr2_bundle, tmp_path
):
    runner = CliRunner()
    vqa = tmp_path / "vqav2"
    shutil.copytree(shared_data / "vqav2-mini", vqa)
    image = sorted((vqa / "images").rglob("*.jpg"))[0]
    image.unlink()
    out = tmp_path / "results.json"
    result = runner.invoke(
        app, ["validate", str(tiny_vqa_bundle), "--data", f"vqav2:{vqa}", "--out", str(out)]
    )
    one_line_error(result, 5, image.name)
    questions = sorted(vqa.glob("v2_OpenEnded_mscoco_val2014_questions*.json"))[0]
    questions.unlink()
    result = runner.invoke(
        app, ["validate", str(tiny_vqa_bundle), "--data", f"vqav2:{vqa}", "--out", str(out)]
    )
    one_line_error(result, 5, "val2014")

    nlvr = tmp_path / "nlvr2"
    shutil.copytree(shared_data / "nlvr2-mini", nlvr)
    lines = (nlvr / "examples.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["label"] = "maybe"
    (nlvr / "examples.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    result = runner.invoke(
        app, ["validate", str(tiny_nlvr2_bundle), "--data", f"nlvr2:{nlvr}", "--out", str(out)]
    )
    one_line_error(result, 5, "maybe")
    assert not out.exists() and not list(tmp_path.glob(".results.json*"))

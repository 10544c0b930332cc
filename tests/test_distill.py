"""`vilt-edge distill`: layer plans, student initialisation, losses on labeled and unlabeled data,
VQA and NLVR2 teachers, lower student resolution, kill-and-resume, and one-line bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import (
    one_line_error,
    random_transformers_model,
    tiny_config,
    write_hf_directory,
)
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.distill import (
    DistillOptions,
    build_student,
    distill,
    epoch_batches,
    parse_layer_map,
    plan_layers,
)
from vilt_edge.errors import InputError

runner = CliRunner()


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory) -> Path:
    """A 4-layer tiny VQA teacher reading 64-pixel images (a 2x2 patch grid)."""
    config = tiny_config("vqa", num_hidden_layers=4)
    model = random_transformers_model("vqa", config, seed=1)
    return write_hf_directory(model, tmp_path_factory.mktemp("teacher"), shortest_edge=64)


@pytest.fixture(scope="module")
def nlvr2_teacher_dir(tmp_path_factory) -> Path:
    config = tiny_config("nlvr2", num_hidden_layers=3)
    model = random_transformers_model("nlvr2", config, seed=2)
    return write_hf_directory(model, tmp_path_factory.mktemp("nlvr2_teacher"), shortest_edge=64)


def _frames(folder: Path, count: int, labeled: bool) -> Path:
    """A frames:PATH data set from real easy-VQA images and questions."""
    from vilt_edge.data import load_easy_vqa

    folder.mkdir(parents=True, exist_ok=True)
    lines = []
    for example in load_easy_vqa("test")[:count]:
        record = {"image": example.image_path, "question": example.question}
        if labeled:
            record["answers"] = list(example.answers)
        lines.append(json.dumps(record))
    path = folder / "frames.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def labeled_frames(tmp_path_factory) -> Path:
    return _frames(tmp_path_factory.mktemp("labeled"), 60, labeled=True)


@pytest.fixture(scope="module")
def unlabeled_frames(tmp_path_factory) -> Path:
    return _frames(tmp_path_factory.mktemp("unlabeled"), 60, labeled=False)


def _options(data: Path | str, **overrides) -> DistillOptions:
    fields = dict(
        layers=2,
        data=data if isinstance(data, str) else f"frames:{data}",
        steps=6,
        batch_size=8,
        eval_size=12,
        eval_every=3,
        checkpoint_every=2,
        threads=1,
        lr=1e-3,
    )
    fields.update(overrides)
    return DistillOptions(**fields)


# Plans and initialisation


def test_plan_layers_even_and_explicit():
    assert plan_layers(6, 2, None) == [2, 5]
    assert plan_layers(6, 3, None) == [1, 3, 5]
    assert plan_layers(12, 4, None) == [2, 5, 8, 11]
    assert plan_layers(4, 1, None) == [3]
    assert plan_layers(6, 2, (0, 3)) == [0, 3]
    assert parse_layer_map("0, 2,4") == (0, 2, 4)
    assert parse_layer_map(None) is None


@pytest.mark.parametrize(
    ("teacher", "k", "layer_map", "message"),
    [
        (6, 6, None, "from 1 to 5"),
        (6, 0, None, "from 1 to 5"),
        (6, 2, (0, 6), "out of range"),
        (6, 2, (-1, 3), "out of range"),
        (6, 2, (3, 3), "repeats layer 3"),
        (6, 2, (1, 2, 3), "names 3 layers"),
    ],
)
def test_plan_layers_rejects(teacher, k, layer_map, message):
    with pytest.raises(InputError, match=message):
        plan_layers(teacher, k, layer_map)


def test_parse_layer_map_rejects_text():
    with pytest.raises(InputError, match="comma-separated"):
        parse_layer_map("1;2")


def test_student_starts_as_the_chosen_teacher_layers(teacher_dir):
    from vilt_edge.model.loading import load_model

    teacher = load_model(teacher_dir).model
    student = build_student(teacher, [1, 3])
    assert student.config.num_hidden_layers == 2 and teacher.config.num_hidden_layers == 4
    t_state, s_state = teacher.state_dict(), student.state_dict()
    for key, value in s_state.items():
        if key.startswith("vilt.encoder.layer."):
            index, rest = key[len("vilt.encoder.layer.") :].split(".", 1)
            source = f"vilt.encoder.layer.{[1, 3][int(index)]}.{rest}"
        else:
            source = key
        assert np.array_equal(value.numpy(), t_state[source].numpy()), key
    # Not the same storage: training the student must not move the teacher.
    first = "vilt.encoder.layer.0.attention.attention.query.weight"
    assert (
        s_state[first].data_ptr()
        != t_state["vilt.encoder.layer.1.attention.attention.query.weight"].data_ptr()
    )


def test_batches_depend_on_seed_and_epoch_only(teacher_dir, labeled_frames):
    from vilt_edge.distill import _Examples

    buckets = {((64, 64), (64, 64)): list(range(10)), ((64, 96), (64, 96)): list(range(10, 13))}
    examples = _Examples([], np.zeros((13, 4)), np.zeros((13, 4)), [], np.ones(13, bool), buckets)
    first = epoch_batches(examples, 4, seed=0, epoch=1)
    assert first == epoch_batches(examples, 4, seed=0, epoch=1)
    assert first != epoch_batches(examples, 4, seed=0, epoch=2)
    assert sorted(r for batch in first for r in batch) == list(range(13))
    # A batch never mixes image sizes.
    for batch in first:
        assert all(r < 10 for r in batch) or all(r >= 10 for r in batch)


# Training runs


def test_distill_labeled_vqa_writes_a_loadable_student(teacher_dir, labeled_frames, tmp_path):
    import torch
    from transformers import ViltForQuestionAnswering

    from vilt_edge.model.export import export_bundle
    from vilt_edge.runtime import ViltRuntime

    reports = []
    summary = distill(
        teacher_dir, tmp_path / "s", _options(labeled_frames), on_progress=reports.append
    ).summary
    assert [r.step for r in reports] == [1, 2, 3, 4, 5, 6]
    assert set(reports[0].parts) == {"soft", "hidden", "label"}
    assert all(np.isfinite(r.loss) for r in reports)
    assert summary["student_layers"] == 2 and summary["layer_map"] == [1, 3]
    assert summary["held_out_examples"] == 12 and summary["train_examples"] == 48
    assert [h["step"] for h in summary["history"]] == [3, 6]
    held = summary["held_out"]
    assert 0.0 <= held["agreement"] <= 1.0 and held["accuracy"] is not None

    student_dir = tmp_path / "s"
    assert not (student_dir / ".distill" / "checkpoint.pt").exists()  # removed when finished
    model = ViltForQuestionAnswering.from_pretrained(student_dir).eval()
    assert model.config.num_hidden_layers == 2
    assert (
        model.config.id2label
        == ViltForQuestionAnswering.from_pretrained(teacher_dir).config.id2label
    )
    bundle = export_bundle(student_dir, tmp_path / "bundle").path
    runtime = ViltRuntime.load(bundle)
    image = json.loads(labeled_frames.read_text().splitlines()[0])["image"]
    question = "what color is the shape?"
    answers = runtime.ask(image, question)
    assert answers and answers[0].answer in model.config.label2id
    # The exported student answers as the trained torch student does.
    (feeds,) = runtime.feeds([image], [question])
    with torch.no_grad():
        expected = model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).logits.numpy()
    assert np.abs(runtime.logits_batch([image], [question]) - expected).max() < 1e-4


def test_distill_moves_the_student_toward_the_teacher(teacher_dir, labeled_frames, tmp_path):
    """Soft-target loss falls over a short run on a fixed batch size (no ground truth)."""
    summary = distill(
        teacher_dir,
        tmp_path / "s",
        _options(labeled_frames, steps=30, label_weight=0.0, hidden_weight=0.0, eval_every=30),
        on_progress=(reports := []).append,
    ).summary
    first = np.mean([r.parts["soft"] for r in reports[:5]])
    last = np.mean([r.parts["soft"] for r in reports[-5:]])
    assert last < 0.7 * first, (first, last)
    assert "label" not in reports[0].parts and "hidden" not in reports[0].parts
    assert summary["held_out"]["agreement"] >= 0.5


def test_distill_unlabeled_data(teacher_dir, unlabeled_frames, tmp_path):
    reports = []
    summary = distill(
        teacher_dir, tmp_path / "s", _options(unlabeled_frames), on_progress=reports.append
    ).summary
    assert set(reports[0].parts) == {"soft", "hidden"}  # no ground truth to learn from
    assert summary["labeled"] is False
    assert summary["held_out"]["accuracy"] is None and summary["held_out"]["agreement"] >= 0
    assert (tmp_path / "s" / "config.json").is_file()


def test_distill_lower_resolution_student(teacher_dir, labeled_frames, tmp_path):
    from vilt_edge.model.export import export_bundle
    from vilt_edge.runtime import ViltRuntime

    summary = distill(
        teacher_dir, tmp_path / "s", _options(labeled_frames, image_short_side=32)
    ).summary
    assert summary["student_image_short_side"] == 32 and summary["teacher_image_short_side"] == 64
    config = json.loads((tmp_path / "s" / "preprocessor_config.json").read_text())
    assert config["size"] == {"shortest_edge": 32}
    runtime = ViltRuntime.load(export_bundle(tmp_path / "s", tmp_path / "b").path)
    assert runtime.bundle.preprocessing.shortest_edge == 32
    image = json.loads(labeled_frames.read_text().splitlines()[0])["image"]
    (feeds,) = runtime.feeds([image], ["what shape is it?"])
    assert feeds["pixel_values"].shape[-2:] == (32, 32)  # one patch instead of the teacher's 4
    assert runtime.logits_batch([image], ["what shape is it?"]).shape == (1, 7)


def test_distill_nlvr2(nlvr2_teacher_dir, tmp_path, shared_data):
    data = f"nlvr2:{shared_data / 'nlvr2-mini'}"
    reports = []
    summary = distill(
        nlvr2_teacher_dir,
        tmp_path / "s",
        _options(data, layers=1, steps=3, batch_size=4, eval_size=4, eval_every=3),
        on_progress=reports.append,
    ).summary
    assert summary["task"] == "nlvr2" and summary["layer_map"] == [2]
    assert set(reports[0].parts) == {"soft", "hidden", "label"}
    from transformers import ViltForImagesAndTextClassification

    model = ViltForImagesAndTextClassification.from_pretrained(tmp_path / "s")
    assert model.config.num_hidden_layers == 1 and model.config.num_images == 2


def test_restart_of_the_same_run_and_finished_resume(teacher_dir, labeled_frames, tmp_path):
    options = _options(labeled_frames, steps=2, eval_every=2)
    first = distill(teacher_dir, tmp_path / "s", options)
    again = distill(teacher_dir, tmp_path / "s", options, resume=True)  # already finished
    assert again == first
    restarted = distill(teacher_dir, tmp_path / "s", options)  # same run: starts over
    assert restarted.steps == 2


# Kill and resume


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "vilt_edge.cli", *args]


def _state(path: Path) -> dict:
    from safetensors.numpy import load_file

    return load_file(str(path / "model.safetensors"))


def test_killed_run_resumes_to_the_same_student(teacher_dir, labeled_frames, tmp_path):
    args = [
        "distill", str(teacher_dir), "--layers", "2", "--data", f"frames:{labeled_frames}",
        "--steps", "60", "--batch-size", "4", "--eval-size", "12", "--eval-every", "20",
        "--checkpoint-every", "5", "--threads", "1", "--lr", "1e-3", "--json",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    reference = subprocess.run(_cli(*args, "-o", str(tmp_path / "whole")), env=env,
                               capture_output=True, text=True, timeout=600)  # fmt: skip
    assert reference.returncode == 0, reference.stderr

    out = tmp_path / "killed"
    process = subprocess.Popen(_cli(*args, "-o", str(out)), env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoint = out / ".distill" / "checkpoint.pt"
    deadline = time.time() + 300
    step = 0
    while time.time() < deadline and process.poll() is None:
        if checkpoint.is_file():
            import torch

            try:
                step = torch.load(checkpoint, weights_only=True)["step"]
            except Exception:  # caught mid-rename on a slow disk; look again
                step = 0
            if step >= 15:
                break
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert 15 <= step < 60, f"the run was not caught mid-way (step {step})"
    assert not (out / "config.json").exists()  # no student before the run finishes

    resumed = subprocess.run(_cli(*args, "-o", str(out), "--resume"), env=env,
                             capture_output=True, text=True, timeout=600)  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    whole, again = _state(tmp_path / "whole"), _state(out)
    assert whole.keys() == again.keys()
    for key in whole:
        assert np.array_equal(whole[key], again[key]), key
    summary = json.loads(resumed.stdout)
    assert summary["steps"] == 60
    reference_summary = json.loads(reference.stdout)
    assert summary["history"][-1]["agreement"] == reference_summary["history"][-1]["agreement"]


# Bad input: one line, non-zero exit, nothing written


def _distill_cli(*args: str):
    return runner.invoke(app, ["distill", *args])


def test_cli_bad_layers_and_maps(teacher_dir, labeled_frames, tmp_path):
    data = ["--data", f"frames:{labeled_frames}"]
    out = tmp_path / "s"
    for extra, message in [
        (["--layers", "4"], "from 1 to 3"),
        (["--layers", "0"], "from 1 to 3"),
        (["--layers", "2", "--layer-map", "0,4"], "out of range"),
        (["--layers", "2", "--layer-map", "1,1"], "repeats layer 1"),
        (["--layers", "2", "--layer-map", "a,b"], "comma-separated"),
        (["--layers", "2", "--steps", "0"], "--steps"),
        (["--layers", "2", "--steps", "3", "--epochs", "1"], "not both"),
    ]:
        result = _distill_cli(str(teacher_dir), *data, "-o", str(out), *extra)
        one_line_error(result, 2, message)
        assert not out.exists()


def test_cli_wrong_task_data(teacher_dir, tmp_path, shared_data):
    result = _distill_cli(
        str(teacher_dir), "--layers", "2", "--data", f"nlvr2:{shared_data / 'nlvr2-mini'}",
        "-o", str(tmp_path / "s"),
    )  # fmt: skip
    one_line_error(result, 5, "NLVR2 data")
    assert not (tmp_path / "s").exists()


def test_cli_missing_teacher_and_data(labeled_frames, tmp_path):
    one_line_error(
        _distill_cli(str(tmp_path / "nope"), "--layers", "1", "-o", str(tmp_path / "s")),
        3,
        "model not found",
    )
    one_line_error(
        _distill_cli(
            "default",
            "--layers",
            "1",
            "--data",
            f"frames:{tmp_path / 'x.jsonl'}",
            "-o",
            str(tmp_path / "s"),
        ),  # fmt: skip
        5,
        "frames file not found",
    )
    assert not (tmp_path / "s").exists()


def test_cli_refuses_foreign_or_other_run_directories(teacher_dir, labeled_frames, tmp_path):
    data = ["--data", f"frames:{labeled_frames}", "--threads", "1", "--eval-size", "12"]
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    one_line_error(
        _distill_cli(str(teacher_dir), "--layers", "2", *data, "-o", str(foreign)),
        2,
        "not a vilt-edge distill run",
    )
    assert sorted(p.name for p in foreign.iterdir()) == ["notes.txt"]

    out = tmp_path / "run"
    result = _distill_cli(str(teacher_dir), "--layers", "2", *data, "--steps", "2", "-o", str(out))
    assert result.exit_code == 0, result.output
    before = (out / "model.safetensors").read_bytes()
    one_line_error(
        _distill_cli(str(teacher_dir), "--layers", "1", *data, "--steps", "2", "-o", str(out)),
        2,
        "another configuration",
        "layers",
    )
    one_line_error(
        _distill_cli(
            str(teacher_dir), "--layers", "1", *data, "--steps", "2", "-o", str(out), "--resume"
        ),  # fmt: skip
        2,
        "another configuration",
    )
    assert (out / "model.safetensors").read_bytes() == before


def test_cli_resume_without_checkpoint(teacher_dir, labeled_frames, tmp_path):
    one_line_error(
        _distill_cli(
            str(teacher_dir),
            "--layers",
            "2",
            "--data",
            f"frames:{labeled_frames}",
            "-o",
            str(tmp_path / "s"),
            "--resume",
        ),  # fmt: skip
        2,
        "no checkpoint",
    )
    assert not (tmp_path / "s").exists()


def test_cli_checkpoint_of_another_configuration(teacher_dir, labeled_frames, tmp_path):
    """A checkpoint whose fingerprint is not the run's (e.g. copied in from elsewhere)."""
    import torch

    out = tmp_path / "s"
    args = ["--layers", "2", "--data", f"frames:{labeled_frames}", "--threads", "1",
            "--eval-size", "12", "--steps", "2", "-o", str(out)]  # fmt: skip
    assert _distill_cli(str(teacher_dir), *args).exit_code == 0
    (out / "distill_summary.json").unlink()  # look unfinished
    torch.save({"fingerprint": "0" * 16, "step": 1}, out / ".distill" / "checkpoint.pt")
    one_line_error(_distill_cli(str(teacher_dir), *args, "--resume"), 2, "another configuration")


# Several workers: torch's DDP under torchrun (gloo on CPU; nccl on GPUs)


def test_torchrun_two_workers_with_gradient_accumulation(teacher_dir, labeled_frames, tmp_path):
    out = tmp_path / "s"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
        "--master_port", "29517", "-m", "vilt_edge.cli",
        "distill", str(teacher_dir), "--layers", "2", "--data", f"frames:{labeled_frames}",
        "--steps", "4", "--batch-size", "8", "--grad-accum", "2", "--eval-size", "12",
        "--threads", "1", "--json", "-o", str(out),
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    summaries = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(summaries) == 1  # only the first worker reports
    summary = json.loads(summaries[0])
    assert summary["workers"] == 2 and summary["steps"] == 4
    from transformers import ViltForQuestionAnswering

    assert ViltForQuestionAnswering.from_pretrained(out).config.num_hidden_layers == 2

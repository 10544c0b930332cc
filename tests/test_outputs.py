"""`--overwrite` replaces only what vilt-edge wrote: a user's folder or file is refused in one
line naming it and left as it was, for every command that writes; a command's own input is a
loadable bundle at every instant of its replacement (`vilt_edge.outputs`)."""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from vilt_edge import outputs
from vilt_edge.bundle import load_bundle
from vilt_edge.cli import app
from vilt_edge.errors import OutputError

runner = CliRunner()


@pytest.fixture
def users_folder(tmp_path: Path) -> Path:
    """A folder of the user's own: what a mistyped -o points at."""
    folder = tmp_path / "work"
    folder.mkdir()
    (folder / "thesis.txt").write_text("notes\n")
    return folder


def refused(result, folder: Path) -> None:
    one_line_error(result, OutputError.exit_code, str(folder), "vilt-edge did not write")
    assert (folder / "thesis.txt").read_text() == "notes\n"
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(".")] == []


def test_export_refuses_a_users_folder_and_replaces_its_own(tiny_vqa_dir, users_folder, tmp_path):
    refused(
        runner.invoke(app, ["export", str(tiny_vqa_dir), "-o", str(users_folder), "--overwrite"]),
        users_folder,
    )
    bundle = tmp_path / "bundle"
    for _ in range(2):  # the second replaces the first: a bundle vilt-edge wrote
        result = runner.invoke(app, ["export", str(tiny_vqa_dir), "-o", str(bundle), "--overwrite"])
        assert result.exit_code == 0, result.output
    load_bundle(bundle)
    # A bundle folder holding a file of the user's is theirs too: refused, naming the file.
    (bundle / "my-notes.txt").write_text("mine")
    result = runner.invoke(app, ["export", str(tiny_vqa_dir), "-o", str(bundle), "--overwrite"])
    one_line_error(result, OutputError.exit_code, str(bundle), "'my-notes.txt'")
    assert (bundle / "my-notes.txt").read_text() == "mine"


def test_quantize_refuses_a_users_folder(tiny_vqa_bundle, users_folder):
    args = ["quantize", str(tiny_vqa_bundle), "-o", str(users_folder), "--mode", "dynamic"]
    refused(runner.invoke(app, [*args, "--overwrite"]), users_folder)


def test_compile_refuses_a_users_folder(tiny_vqa_bundle, users_folder):
    args = ["compile", str(tiny_vqa_bundle), "--target", "x86-avx2", "-o", str(users_folder)]
    refused(runner.invoke(app, [*args, "--overwrite"]), users_folder)


def test_report_refuses_a_users_folder(users_folder, tmp_path):
    result = runner.invoke(app, ["report", str(tmp_path / "any.json"), "-o", str(users_folder)])
    refused(result, users_folder)


def test_validate_out_refuses_a_users_file(tiny_vqa_bundle, users_folder):
    target = users_folder / "thesis.txt"
    result = runner.invoke(
        app, ["validate", str(tiny_vqa_bundle), "--limit", "2", "--out", str(target)]
    )
    one_line_error(result, OutputError.exit_code, str(target), "vilt-edge did not write")
    assert target.read_text() == "notes\n"


def test_pipeline_refuses_a_users_folder(users_folder):
    result = runner.invoke(app, ["pipeline", "-o", str(users_folder), "--overwrite"])
    refused(result, users_folder)


def test_pipeline_refuses_to_replace_a_folder_holding_its_input(tmp_path, tiny_vqa_dir):
    """A previous pipeline folder may be replaced, but not while the model it is asked to read
    lies inside it (the old folder is removed before the new stages write)."""
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / "pipeline.json").write_text('{"options": {}, "stages": []}\n')
    model = shutil.copytree(tiny_vqa_dir, folder / "student")
    (model / ".distill").mkdir()
    (model / ".distill" / "run.json").write_text("{}")
    result = runner.invoke(app, ["pipeline", str(model), "-o", str(folder), "--overwrite",
                                 "--data", "easy-vqa:test", "--no-distill"])  # fmt: skip
    one_line_error(result, OutputError.exit_code, str(model), "this pipeline's input")
    assert (model / "config.json").is_file()


def test_train_default_refuses_an_existing_folder(users_folder):
    result = runner.invoke(app, ["train-default", "-o", str(users_folder)])
    one_line_error(result, 1, f"output exists: {users_folder}")
    assert (users_folder / "thesis.txt").read_text() == "notes\n"


def test_quantize_in_place_leaves_a_loadable_bundle_at_every_instant(tiny_vqa_bundle, tmp_path):
    """`quantize B -o B --overwrite`: B is swapped atomically for its INT8 version; a reader
    polling B all along never finds it missing or incomplete."""
    bundle = Path(shutil.copytree(tiny_vqa_bundle, tmp_path / "B"))
    seen: list[str] = []
    failures: list[BaseException] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            try:
                seen.append(load_bundle(bundle).manifest.precision)
            except BaseException as error:  # noqa: BLE001 - any failure is the finding
                failures.append(error)

    reader = threading.Thread(target=poll)
    reader.start()
    try:
        result = runner.invoke(
            app, ["quantize", str(bundle), "-o", str(bundle), "--mode", "dynamic", "--overwrite"]
        )
    finally:
        done.set()
        reader.join()
    assert result.exit_code == 0, result.output
    assert failures == []
    assert seen and set(seen) <= {"fp32", "int8"}
    assert load_bundle(bundle).manifest.precision == "int8"
    assert [p.name for p in tmp_path.iterdir()] == ["B"]  # no staging or retired folder left


def test_a_bundle_swapped_while_it_is_read_is_read_again(tiny_vqa_bundle, tmp_path, monkeypatch):
    """The race the polling test can only hit by chance, forced: the folder is exchanged after
    the reader took the old manifest and before it hashed the files. The reader reads again
    and returns the new bundle, whole, instead of reporting a mismatch."""
    import json

    from vilt_edge import bundle as bundle_module

    old = Path(shutil.copytree(tiny_vqa_bundle, tmp_path / "B"))
    new = Path(shutil.copytree(tiny_vqa_bundle, tmp_path / "staging"))
    with open(new / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    manifest = json.loads((new / "manifest.json").read_text())
    manifest["files"]["model.onnx"] = bundle_module.sha256_file(new / "model.onnx")
    manifest["precision"] = "int8"
    (new / "manifest.json").write_text(json.dumps(manifest))
    real_hash = bundle_module.sha256_file
    swapped: list[bool] = []

    def hash_then_swap(path, *args, **kwargs):
        if not swapped:
            swapped.append(outputs._exchange(new, old))
        return real_hash(path, *args, **kwargs)

    monkeypatch.setattr(bundle_module, "sha256_file", hash_then_swap)
    assert load_bundle(old).manifest.precision == "int8"
    assert swapped == [True]


def test_without_an_atomic_swap_in_place_is_refused_and_others_still_replace(
    tiny_vqa_dir, tiny_vqa_bundle, tmp_path, monkeypatch
):
    """Where the file system cannot exchange two folders, a command's own input is not
    replaced (there would be an instant without it); other outputs are moved aside instead."""
    monkeypatch.setattr(outputs, "_exchange", lambda first, second: False)
    bundle = Path(shutil.copytree(tiny_vqa_bundle, tmp_path / "B"))
    result = runner.invoke(
        app, ["quantize", str(bundle), "-o", str(bundle), "--mode", "dynamic", "--overwrite"]
    )
    one_line_error(result, OutputError.exit_code, "this command's input", "cannot swap")
    assert load_bundle(bundle).manifest.precision == "fp32"
    other = tmp_path / "other"
    for _ in range(2):
        result = runner.invoke(app, ["export", str(tiny_vqa_dir), "-o", str(other), "--overwrite"])
        assert result.exit_code == 0, result.output
    load_bundle(other)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["B", "other"]


def test_recognisers(tiny_vqa_bundle, tmp_path):
    assert outputs.is_bundle(tiny_vqa_bundle)
    assert not outputs.is_bundle(tmp_path)
    (tmp_path / "x.json").write_text('{"schema": "vilt-edge-results"}')
    (tmp_path / "y.json").write_text('{"schema": "something else"}')
    assert outputs.is_results_file(tmp_path / "x.json")
    assert not outputs.is_results_file(tmp_path / "y.json")
    outputs.check_replaceable(tmp_path / "absent", "bundle")
    empty = tmp_path / "empty"
    empty.mkdir()
    outputs.check_replaceable(empty, "bundle")  # nothing to lose
    with pytest.raises(OutputError, match="a file vilt-edge did not write"):
        outputs.check_replaceable(tmp_path / "y.json", "results")
    report = tmp_path / "report"
    report.mkdir()
    (report / ".vilt-edge-report").write_text("{}")
    (report / "report.md").write_text("# a report")
    outputs.check_replaceable(report, "report")
    with pytest.raises(OutputError, match="is a vilt-edge report, not a vilt-edge bundle"):
        outputs.check_replaceable(report, "bundle")
    link = tmp_path / "link"
    link.symlink_to(tiny_vqa_bundle)
    with pytest.raises(OutputError, match="symbolic link"):
        outputs.check_replaceable(link, "bundle")

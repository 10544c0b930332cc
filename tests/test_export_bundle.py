"""Export through the CLI, the bundle's integrity checks, and the loader's refusals."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest
from typer.testing import CliRunner

from vilt_edge.bundle import MANIFEST, load_bundle
from vilt_edge.cli import app
from vilt_edge.errors import BundleError, ModelError
from vilt_edge.model.loading import load_model

runner = CliRunner()


def one_line_error(result) -> str:
    """A user error: non-zero exit, exactly one line on stderr, no traceback."""
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_export_writes_a_complete_bundle(tiny_vqa_dir, tmp_path):
    out = tmp_path / "bundle"
    result = runner.invoke(app, ["export", str(tiny_vqa_dir), "-o", str(out), "--opset", "17"])
    assert result.exit_code == 0, result.output
    bundle = load_bundle(out)
    manifest = json.loads((out / MANIFEST).read_text())
    assert manifest["format_version"] == 1
    assert manifest["task"] == "vqa" and manifest["precision"] == "fp32"
    assert manifest["runtime"] == "onnxruntime"
    assert manifest["source"]["kind"] == "hf-directory" and len(manifest["source"]["sha256"]) == 64
    assert set(manifest["files"]) == {
        "model.onnx",
        "tokenizer.json",
        "preprocessor.json",
        "labels.json",
    }
    assert bundle.labels == ("no", "yes", "red", "blue", "circle", "two", "3")
    model = onnx.load(str(out / "model.onnx"))
    assert {o.domain: o.version for o in model.opset_import}[""] >= 17
    assert any(node.op_type == "LayerNormalization" for node in model.graph.node)
    pixel_dims = next(i for i in model.graph.input if i.name == "pixel_values").type.tensor_type
    assert [d.dim_param or d.dim_value for d in pixel_dims.shape.dim] == [
        "batch",
        3,
        "height",
        "width",
    ]
    text_dims = next(i for i in model.graph.input if i.name == "input_ids").type.tensor_type
    # Any text length up to 40: the runtime cuts the padding (see vilt_edge.runtime).
    assert [d.dim_param or d.dim_value for d in text_dims.shape.dim] == ["batch", "text"]


def test_export_refuses_an_existing_output(tiny_vqa_bundle):
    before = {p.name: p.stat().st_mtime for p in tiny_vqa_bundle.iterdir()}
    result = runner.invoke(app, ["export", "default", "-o", str(tiny_vqa_bundle)])
    assert "output exists" in one_line_error(result)
    assert {p.name: p.stat().st_mtime for p in tiny_vqa_bundle.iterdir()} == before


def test_interrupted_export_leaves_nothing(tiny_vqa_dir, tmp_path, monkeypatch):
    import vilt_edge.model.export as export_module

    def fail_midway(loaded, path, **kwargs):
        path.write_bytes(b"half an onnx file")
        raise KeyboardInterrupt

    monkeypatch.setattr(export_module, "export_onnx", fail_midway)
    out = tmp_path / "bundle"
    with pytest.raises(KeyboardInterrupt):
        export_module.export_bundle(tiny_vqa_dir, out)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging directory left behind


@pytest.fixture
def bundle_copy(tiny_vqa_bundle, tmp_path):
    return shutil.copytree(tiny_vqa_bundle, tmp_path / "copy")


@pytest.mark.parametrize(
    "name", ["model.onnx", "tokenizer.json", "labels.json", "preprocessor.json"]
)
def test_altered_file_is_named(bundle_copy, name):
    path = bundle_copy / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=name):
        load_bundle(bundle_copy)


def test_truncated_file_is_named(bundle_copy):
    path = bundle_copy / "model.onnx"
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(BundleError, match="model.onnx: altered or truncated"):
        load_bundle(bundle_copy)


def test_missing_file_is_named(bundle_copy):
    (bundle_copy / "labels.json").unlink()
    with pytest.raises(BundleError, match="labels.json: missing"):
        load_bundle(bundle_copy)


def test_unknown_format_version(bundle_copy):
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    manifest["format_version"] = 99
    (bundle_copy / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="unknown format version 99"):
        load_bundle(bundle_copy)


def test_cli_reports_a_tampered_bundle_in_one_line(bundle_copy, tmp_path):
    from PIL import Image

    (bundle_copy / "tokenizer.json").write_text("{}")
    image = tmp_path / "image.png"
    Image.new("RGB", (64, 64), "red").save(image)
    result = runner.invoke(app, ["ask", str(bundle_copy), "--image", str(image), "-q", "what?"])
    assert "tokenizer.json" in one_line_error(result)


def test_not_a_vilt_model(tmp_path):
    from transformers import BertConfig

    BertConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2).save_pretrained(
        tmp_path / "bert"
    )
    with pytest.raises(ModelError, match="not a ViLT model"):
        load_model(tmp_path / "bert")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match="no config.json"):
        load_model(tmp_path / "empty")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match="not a ViLT model"):
        load_model(tmp_path / "notes.txt")
    result = runner.invoke(app, ["export", str(tmp_path / "bert"), "-o", str(tmp_path / "out")])
    assert "not a ViLT model" in one_line_error(result)
    assert not (tmp_path / "out").exists()


def test_corrupt_weights_are_one_line(tiny_vqa_dir, tmp_path):
    broken = shutil.copytree(tiny_vqa_dir, tmp_path / "broken")
    (broken / "model.safetensors").write_bytes(b"\x00" * 100)
    with pytest.raises(ModelError, match="model.safetensors"):
        load_model(broken)


def test_hub_id_without_hub_says_to_pass_a_directory(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelError, match="pass the local directory"):
        load_model("dandelin/vilt-b32-finetuned-vqa")


def test_loaded_nlvr2_model_has_two_images(tiny_nlvr2_dir):
    loaded = load_model(tiny_nlvr2_dir)
    assert loaded.task == "nlvr2" and loaded.num_images == 2
    assert loaded.labels == ["False", "True"]


def test_hf_directory_with_bin_weights(tiny_vqa_dir, tmp_path):
    import torch
    from safetensors.torch import load_file

    directory = shutil.copytree(tiny_vqa_dir, tmp_path / "bin")
    weights = load_file(str(directory / "model.safetensors"))
    torch.save(weights, directory / "pytorch_model.bin")
    (directory / "model.safetensors").unlink()
    from_bin = load_model(directory)
    from_safetensors = load_model(tiny_vqa_dir)
    assert from_bin.source["sha256"] != from_safetensors.source["sha256"]
    input_ids = torch.randint(5, 40, (2, 40))
    pixel_values = torch.randn(2, 3, 384, 512)
    with torch.no_grad():
        first = from_bin.model(input_ids=input_ids, pixel_values=pixel_values).logits
        second = from_safetensors.model(input_ids=input_ids, pixel_values=pixel_values).logits
    assert torch.equal(first, second)

"""vilt-edge quantize on tiny bundles: graph layout per preset, drift, fallback, bad input.

Calibration and held-out examples come from easy-VQA (real images and questions); the tiny
models' labels overlap its answers (yes, no, red, blue, circle), so accuracy is meaningful.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import onnxruntime_layouts_only
from onnx import numpy_helper
from typer.testing import CliRunner

from vilt_edge.bundle import load_bundle
from vilt_edge.cli import app
from vilt_edge.data import DataSet, load_data
from vilt_edge.errors import DataError, InputError
from vilt_edge.quantize import QuantizeOptions, quantize_bundle
from vilt_edge.quantize.graph import fuse_for_onnxruntime_cpu, layer_groups
from vilt_edge.quantize.options import preset_for
from vilt_edge.quantize.presets import PRESETS
from vilt_edge.runtime import ViltRuntime
from vilt_edge.validate import validate

CALIB = "easy-vqa:train"


def initializers(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def consumers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    found: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            found.setdefault(name, []).append(node)
    return found


@pytest.fixture(scope="module")
def easy_sample():
    return load_data("easy-vqa:test").limited(64)


@pytest.fixture(scope="module")
def int8_cpu(tiny_vqa_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("q") / "int8"
    options = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=32, target="x86-avx512-vnni"
    )
    with onnxruntime_layouts_only():  # the family's ONNX Runtime layout, not OpenVINO's
        outcome = quantize_bundle(tiny_vqa_bundle, out, options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    return bundle, summary


def test_static_int8_cpu_bundle(int8_cpu, tiny_vqa_bundle, easy_sample):
    bundle, summary = int8_cpu
    manifest = bundle.manifest
    assert manifest.precision == "int8"
    recorded = manifest.extra["quantize"]
    assert recorded["mode"] == "static" and recorded["method"] == "minmax"
    assert recorded["preset"]["name"] == "x86-avx512-vnni"
    calibration = recorded["calibration"]
    assert calibration["data"] == CALIB and calibration["size"] == 32
    assert len(calibration["hash"]) == 64 and recorded["nodes_kept_fp32"] == []
    assert manifest.source["bundle"] == str(tiny_vqa_bundle.resolve())
    assert manifest.extra["export"]["opset"] == 17  # the source's export record is kept

    model = onnx.load(bundle.model_path)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("QuantizeLinear") > 10 and ops.count("DequantizeLinear") > 10
    # GELU and attention run as ONNX Runtime's fused CPU ops: one attention per layer, one
    # GELU per layer plus the VQA head's.
    layers = len([g for g in layer_groups(onnx.load(tiny_vqa_bundle / "model.onnx")) if "." in g])
    expected = {
        "gelu": layers + 1,
        "sdpa": layers,
        "multi_head_attention": layers,
        "unmasked_attention_branches": layers,
    }
    assert recorded["fusions"] == expected
    fused = [n for n in model.graph.node if n.domain == "com.microsoft"]
    assert sorted({n.op_type for n in fused}) == ["Gelu"]
    # Each attention sits in an If: unmasked when no token is padding, masked otherwise.
    branches = [n for n in model.graph.node if n.op_type == "If"]
    assert len(branches) == layers and ops.count("Softmax") == 0 and ops.count("Erf") == 0
    for node in branches:
        branch = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        then, otherwise = branch["then_branch"], branch["else_branch"]
        assert [n.op_type for n in then.node] == [n.op_type for n in otherwise.node]
        assert [n.op_type for n in then.node] == ["MultiHeadAttention"]
        assert len(then.node[0].input) <= 4 < len(otherwise.node[0].input)
    weights = initializers(model)
    per_channel = [
        n for n in model.graph.node
        if n.op_type == "DequantizeLinear" and weights.get(n.input[1]) is not None
        and weights[n.input[1]].size > 1
    ]  # fmt: skip
    assert per_channel, "weights should be quantized per channel"
    for node in per_channel:  # symmetric int8 weights (and int32 biases): zero points 0
        assert weights[node.input[0]].dtype in (np.int8, np.int32)
        assert not np.any(weights[node.input[2]])
    assert any(weights[n.input[0]].dtype == np.int8 for n in per_channel)
    # No Q/DQ pair on a MatMul's output (ONNX Runtime fuses DQ -> MatMul into
    # MatMulIntegerToFloat): every MatMul that reads quantized inputs writes float to its readers.
    outputs = {out for n in model.graph.node if n.op_type == "MatMul" for out in n.output}
    readers = {name: [n for n in model.graph.node if name in n.input] for name in outputs}
    quantized_matmuls = [
        n for n in model.graph.node if n.op_type == "MatMul"
        and all(any(p.op_type == "DequantizeLinear" and i in p.output for p in model.graph.node)
                for i in n.input)
    ]  # fmt: skip
    assert len(quantized_matmuls) >= 4 * layers
    for node in quantized_matmuls:
        assert all(r.op_type != "QuantizeLinear" for r in readers[node.output[0]]), node.name

    fp32 = ViltRuntime.load(tiny_vqa_bundle)
    int8 = ViltRuntime.load(bundle.path)
    results = validate(int8, easy_sample, reference=fp32, warmup=0)
    assert results.logit_cosine > 0.995, results.logit_cosine
    assert results.agreement >= 0.9
    assert results.max_abs_logit_diff > 0  # it really is a different model


def test_same_calibration_gives_same_hash_and_model(int8_cpu, tiny_vqa_bundle, tmp_path):
    bundle, summary = int8_cpu
    options = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=32, target="x86-avx512-vnni"
    )
    with onnxruntime_layouts_only():
        again = quantize_bundle(tiny_vqa_bundle, tmp_path / "again", options).bundle
    assert again.manifest.extra["quantize"]["calibration"] == summary["calibration"]
    assert again.manifest.files["model.onnx"] == bundle.manifest.files["model.onnx"]
    other = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=32, target="x86-avx512-vnni", seed=1
    )
    with onnxruntime_layouts_only():
        reseeded = quantize_bundle(tiny_vqa_bundle, tmp_path / "seed1", other).bundle
    assert (
        reseeded.manifest.extra["quantize"]["calibration"]["hash"] != summary["calibration"]["hash"]
    )


def test_tensorrt_preset_places_symmetric_qdq_only_where_tensorrt_runs_int8(
    tiny_vqa_bundle, tmp_path, easy_sample
):
    options = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=16, target="jetson-orin-nano"
    )
    outcome = quantize_bundle(tiny_vqa_bundle, tmp_path / "trt", options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    assert summary["preset"]["name"] == "tensorrt"
    model = onnx.load(bundle.model_path)
    weights = initializers(model)
    used_by = consumers(model)
    produced_by = {out: node for node in model.graph.node for out in node.output}
    quantized_ops = set()
    for node in model.graph.node:
        if node.op_type == "QuantizeLinear":
            zero_point = weights.get(node.input[2]) if len(node.input) > 2 else None
            assert zero_point is not None and zero_point.dtype == np.int8
            assert not np.any(zero_point), f"{node.name}: TensorRT needs zero point 0"
        if node.op_type == "DequantizeLinear":
            zero_point = weights[node.input[2]]
            assert zero_point.dtype == np.int8 and not np.any(zero_point)
            for user in used_by.get(node.output[0], []):
                quantized_ops.add(user.op_type)
            source = weights.get(node.input[0])
            if source is not None and source.ndim >= 2:  # a weight: per output channel
                axis = next(a.i for a in node.attribute if a.name == "axis")
                user = used_by[node.output[0]][0]
                trans_b = any(a.name == "transB" and a.i for a in user.attribute)
                # MatMul weight [in, out]: axis 1; Gemm with transB and Conv: [out, ...]: axis 0.
                expected = (
                    1 if user.op_type == "MatMul" or (user.op_type == "Gemm" and not trans_b) else 0
                )
                assert axis == expected, (node.name, user.op_type, axis)
                assert weights[node.input[1]].shape == (source.shape[axis],)
    assert quantized_ops <= {"MatMul", "Gemm", "Conv"}, quantized_ops
    assert "MatMul" in quantized_ops
    # Biases stay float: nothing is quantized to int32.
    assert not any(w.dtype == np.int32 for w in weights.values())
    for node in model.graph.node:  # LayerNorm and Softmax read float, not dequantized INT8
        if node.op_type in ("LayerNormalization", "Softmax") and node.input[0] in produced_by:
            assert produced_by[node.input[0]].op_type != "DequantizeLinear", node.name
    # The Q/DQ model also runs in ONNX Runtime here, close to FP32.
    results = validate(
        ViltRuntime.load(bundle.path), easy_sample, reference=ViltRuntime.load(tiny_vqa_bundle)
    )
    assert results.logit_cosine > 0.99


def test_dynamic_int8(tiny_vqa_bundle, tmp_path, easy_sample):
    options = QuantizeOptions(precision="int8", mode="dynamic", target="x86-avx2")
    outcome = quantize_bundle(tiny_vqa_bundle, tmp_path / "dyn", options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    assert summary["calibration"] is None and summary["preset"]["reduce_range"] is True
    graph = onnx.load(bundle.model_path).graph
    ops = {node.op_type for node in graph.node}
    assert {"DynamicQuantizeLinear", "MatMulInteger", "If", "Gelu"} <= ops
    # Attention (fused, float) sits in the If's branches: unmasked when no token is padding.
    branched = {n.op_type for node in graph.node for a in node.attribute if a.g for n in a.g.node}
    assert branched == {"MultiHeadAttention"}
    # The patch projection is a MatMul over flattened patches, quantized like the others: no
    # Conv (float or ConvInteger, which is slower than float on x86) is left.
    assert not {"Conv", "ConvInteger"} & ops
    weights = initializers(onnx.load(bundle.model_path))
    patch_in = 3 * 32 * 32
    assert any(a.dtype.itemsize == 1 and a.shape[:1] == (patch_in,) for a in weights.values())
    # The word-embedding table is stored in 8 bits (a fifth of ViLT-B/32's FP32 file).
    tables = {
        name: array for name, array in initializers(onnx.load(bundle.model_path)).items()
        if "word_embeddings.weight" in name and array.size > 1
    }  # fmt: skip
    assert tables and all(array.dtype.itemsize == 1 for array in tables.values()), tables.keys()
    results = validate(
        ViltRuntime.load(bundle.path), easy_sample, reference=ViltRuntime.load(tiny_vqa_bundle)
    )
    assert results.logit_cosine > 0.99


def test_fp16_keeps_layernorm_softmax_and_overflowing_tensors_fp32(
    tiny_vqa_bundle, tmp_path, easy_sample
):
    options = QuantizeOptions(precision="fp16", calib=CALIB, calib_size=16)
    outcome = quantize_bundle(tiny_vqa_bundle, tmp_path / "fp16", options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    assert bundle.manifest.precision == "fp16"
    model = onnx.load(bundle.model_path)
    weights = initializers(model)
    assert any(w.dtype == np.float16 for w in weights.values())
    io_types = {v.type.tensor_type.elem_type for v in model.graph.input if v.name == "pixel_values"}
    assert io_types == {onnx.TensorProto.FLOAT}  # the app still feeds float32
    # The additive attention mask (finfo(float32).min) cannot be FP16: the check caught it.
    assert summary["overflowing_tensors"] and summary["nodes_kept_fp32"]
    assert max(summary["overflowing_tensors"].values()) > 1e38
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax"):
            scale = weights.get(node.input[1]) if node.op_type == "LayerNormalization" else None
            assert scale is None or scale.dtype == np.float32
    results = validate(
        ViltRuntime.load(bundle.path), easy_sample, reference=ViltRuntime.load(tiny_vqa_bundle)
    )
    assert results.agreement == 1.0 and results.max_abs_logit_diff < 2e-2


@pytest.fixture(scope="module")
def seed3_vqa_bundle(tmp_path_factory):
    """A tiny VQA model (seed 3) with an activation outlier in layer 0 (one MLP unit with a
    large bias whose output weights are zero) and that layer's MLP output scaled up 10x so it
    matters: the outlier stretches the INT8 range of the MLP's input, and INT8 flips the
    random model's near-tied answers."""
    import torch
    from conftest import random_transformers_model, write_hf_directory

    from vilt_edge.model.export import export_bundle

    model = random_transformers_model("vqa", seed=3)
    with torch.no_grad():
        layer = model.vilt.encoder.layer[0]
        layer.intermediate.dense.bias[0] = 400.0
        layer.output.dense.weight[:, 0] = 0.0
        layer.output.dense.weight *= 10.0
    hf = write_hf_directory(model, tmp_path_factory.mktemp("s3"))
    return export_bundle(hf, tmp_path_factory.mktemp("s3b") / "vqa").path


@pytest.fixture
def unlabeled_calibration(monkeypatch):
    """easy-VQA images and questions without answers: a robot team's own frames. The drop is
    then measured as disagreement with the FP32 model's answers."""
    import dataclasses

    import vilt_edge.quantize.quantizer as quantizer

    def load_unlabeled(spec, **kwargs):
        data = load_data(spec, **kwargs)
        examples = [dataclasses.replace(e, answers=()) for e in data.examples]
        return DataSet(data.name, data.kind, data.task, examples)

    monkeypatch.setattr(quantizer, "load_data", load_unlabeled)


def test_max_drop_keeps_the_most_sensitive_layers_in_fp32(
    seed3_vqa_bundle, tmp_path, unlabeled_calibration
):
    options = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=32, max_drop=0.0, eval_size=200
    )
    outcome = quantize_bundle(seed3_vqa_bundle, tmp_path / "q", options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    fallback = summary["fallback"]
    first, last = fallback["attempts"][0], fallback["attempts"][-1]
    assert first["drop"] > 0 and not fallback["held_out"]["labeled"], fallback["attempts"]
    assert first["drop"] == pytest.approx(100 * (1 - first["agreement"]))
    sensitivity = fallback["sensitivity"]
    assert set(sensitivity) == {"embeddings", "layer.0", "layer.1", "head"}
    ranked = sorted(sensitivity, key=lambda g: -sensitivity[g])
    kept = fallback["groups_kept_fp32"]
    assert kept == ranked[: len(kept)] and 1 <= len(kept) <= 2
    assert last["drop"] <= 0.0 and last["agreement"] == 1.0
    assert fallback["measured_drop"] == last["drop"] and fallback["held_out"]["size"] == 200
    recorded = bundle.manifest.extra["quantize"]["nodes_kept_fp32"]
    assert recorded == fallback["nodes_kept_fp32"] and recorded
    model = onnx.load(bundle.model_path)
    produced_by = {out: node for node in model.graph.node for out in node.output}
    kept_nodes = set(recorded)
    for node in model.graph.node:  # no op of a kept group reads a dequantized tensor
        if node.name in kept_nodes and node.op_type in ("MatMul", "Gemm"):
            for name in node.input:
                assert name not in produced_by or produced_by[name].op_type != "DequantizeLinear"


def test_max_drop_says_clearly_when_it_cannot(
    seed3_vqa_bundle, tmp_path, monkeypatch, unlabeled_calibration
):
    import vilt_edge.quantize.quantizer as quantizer

    # Allow no layer to fall back: the drop measured first cannot be fixed.
    monkeypatch.setattr(quantizer, "MAX_FALLBACK_SHARE", 0.0)
    options = QuantizeOptions(precision="int8", calib=CALIB, calib_size=32, max_drop=0.0)
    with pytest.raises(DataError, match=r"with 0 of 4 layer groups kept in FP32"):
        quantize_bundle(seed3_vqa_bundle, tmp_path / "q", options)
    assert not (tmp_path / "q").exists()


def test_presets():
    assert preset_for("cpu").name in PRESETS  # this host's CPU family
    assert preset_for("cpu").family == "cpu"
    assert preset_for("tensorrt").name == "tensorrt"
    for name in ("jetson-orin-nano", "jetson-agx-orin", "cuda-gpu"):
        preset = preset_for(name)
        assert preset.name == "tensorrt" and preset.activation_symmetric
        assert preset.activation_type == "QInt8" and not preset.dynamic_ok
    with pytest.raises(InputError, match="unknown target"):
        preset_for("toaster")


def test_layer_groups_of_the_default_graph(tiny_vqa_bundle):
    groups = layer_groups(onnx.load(load_bundle(tiny_vqa_bundle).model_path))
    assert list(groups) == ["embeddings", "layer.0", "layer.1", "head"]
    kinds = {g: {n.split("_")[0] for n in names} for g, names in groups.items()}
    assert all(names for names in groups.values()), kinds


# Command line


def test_quantize_cli_then_validate_against_the_manifest_source(tiny_vqa_bundle, tmp_path):
    runner = CliRunner()
    out = tmp_path / "int8"
    result = runner.invoke(
        app,
        ["quantize", str(tiny_vqa_bundle), "-o", str(out), "--calib", CALIB, "--calib-size", "16",
         "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["bundle"] == str(out) and summary["calibration"]["size"] == 16
    checked = runner.invoke(
        app, ["validate", str(out), "--data", "easy-vqa:test", "--limit", "40", "--json"]
    )
    assert checked.exit_code == 0, checked.output
    figures = json.loads(checked.stdout)
    assert figures["reference"]["bundle"] == str(tiny_vqa_bundle.resolve())
    assert {"reference_accuracy", "accuracy_delta", "agreement"} <= figures.keys()

    # A moved source: one warning, validation without a reference.
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    manifest = json.loads((moved / "manifest.json").read_text())
    manifest["source"]["bundle"] = str(tmp_path / "gone")
    (moved / "manifest.json").write_text(json.dumps(manifest))
    alone = runner.invoke(app, ["validate", str(moved), "--limit", "5", "--json"])
    assert alone.exit_code == 0, alone.output
    assert "reference_accuracy" not in json.loads(alone.stdout)
    assert "not there; validating without one" in alone.stderr


def test_quantize_cli_bad_inputs_are_one_line(tiny_vqa_bundle, tmp_path, int8_cpu):
    from test_validate import one_line_error

    runner = CliRunner()
    out = str(tmp_path / "out")
    nlvr = "nlvr2:" + str(__import__("conftest").SHARED_DATA / "nlvr2-mini")
    bundle = str(tiny_vqa_bundle)
    cases = [
        ([bundle, "--calib", CALIB, "--calib-size", "8"], 2, "at least 16"),
        ([bundle, "--calib", nlvr], 5, "NLVR2 data"),
        ([bundle, "--target", "toaster"], 2, "unknown target"),
        ([bundle, "--precision", "int4"], 2, "unknown precision"),
        ([bundle, "--precision", "fp16", "--mode", "dynamic"], 2, "INT8 only"),
        ([bundle, "--mode", "dynamic", "--target", "jetson-orin-nano"], 2, "--mode static"),
        ([bundle, "--max-drop", "-1", "--calib", CALIB], 2, "--max-drop"),
        ([bundle], 2, "--calib"),
        ([str(int8_cpu[0].path), "--calib", CALIB], 4, "already int8"),
        ([str(tmp_path / "missing"), "--calib", CALIB], 4, "missing"),
        ([bundle, "--calib", "easy-vqa:dev"], 2, "splits test and train"),
    ]
    for args, code, fragment in cases:
        one_line_error(runner.invoke(app, ["quantize", *args, "-o", out]), code, fragment)
    assert not (tmp_path / "out").exists()
    (tmp_path / "out").mkdir()
    one_line_error(
        runner.invoke(app, ["quantize", bundle, "--calib", CALIB, "-o", out]), 4, "output exists"
    )


def test_unmasked_attention_branch_gives_the_same_logits(tiny_vqa_bundle, tmp_path):
    """The fused CPU graph (GELU, attention, If on an unpadded mask) against the exported one,
    in FP32: unpadded questions take the unmasked branch, padded batches the masked one."""
    import onnxruntime

    fused = tmp_path / "fused.onnx"
    counts = fuse_for_onnxruntime_cpu(tiny_vqa_bundle / "model.onnx", fused)
    layers = len([g for g in layer_groups(onnx.load(tiny_vqa_bundle / "model.onnx")) if "." in g])
    assert counts["unmasked_attention_branches"] == layers
    sessions = [
        onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        for path in (tiny_vqa_bundle / "model.onnx", fused)
    ]
    rng = np.random.default_rng(3)
    for length, padded in [(9, False), (40, False), (9, True)]:
        input_ids = rng.integers(5, 30, (2, length)).astype(np.int64)
        mask = np.ones_like(input_ids)
        if padded:
            mask[1, 5:] = 0
        feeds = {
            "input_ids": input_ids,
            "attention_mask": mask,
            "pixel_values": rng.standard_normal((2, 3, 64, 96)).astype(np.float32),
        }
        reference, branched = (s.run(["logits"], feeds)[0] for s in sessions)
        assert np.abs(reference - branched).max() <= 1e-4, (length, padded)


def test_quantize_leaves_nothing_in_the_working_directory(tiny_vqa_bundle, tmp_path, monkeypatch):
    """ONNX Runtime's shape inference drops debugging copies into the working directory when it
    fails; the quantizer runs it in its own temporary directory."""
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    options = QuantizeOptions(precision="int8", mode="dynamic")
    relative = Path(os.path.relpath(tiny_vqa_bundle, here))  # as a user in another folder types it
    summary = quantize_bundle(relative, tmp_path / "out", options).record.to_json()
    assert summary["preprocessed"] is True
    assert list(here.iterdir()) == []

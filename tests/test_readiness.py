"""TensorRT readiness check (runs anywhere) and GPU-target compile without TensorRT (build kit)."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from conftest import one_line_error, onnxruntime_layouts_only
from onnx import numpy_helper
from trt_stub import expected_logits, trt_stub_fixture  # noqa: F401
from typer.testing import CliRunner

from vilt_edge.bench import synthetic_feeds
from vilt_edge.bundle import load_bundle
from vilt_edge.cli import app
from vilt_edge.compile import CompileOptions, compile_bundle
from vilt_edge.compile.gpu import engine_shapes
from vilt_edge.compile.readiness import available_tables, check_model, operator_table
from vilt_edge.devices import get_profile, load_profiles
from vilt_edge.errors import BundleError, InputError
from vilt_edge.quantize import QuantizeOptions, quantize_bundle
from vilt_edge.runtime import ViltRuntime

CALIB = dict(calib="easy-vqa:train", calib_size=16)


@pytest.fixture(scope="module")
def trt_int8(tiny_vqa_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "trt-int8"
    options = QuantizeOptions(precision="int8", target="jetson-orin-nano", **CALIB)
    return quantize_bundle(tiny_vqa_bundle, out, options).bundle


@pytest.fixture(scope="module")
def cpu_int8(tiny_vqa_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("r") / "cpu-int8"
    options = QuantizeOptions(precision="int8", target="x86-avx512-vnni", **CALIB)
    with onnxruntime_layouts_only():  # ONNX Runtime's CPU layout, not OpenVINO's
        return quantize_bundle(tiny_vqa_bundle, out, options).bundle


def run_checks(bundle, target="jetson-orin-nano", version="10.3", workspace=1 << 30, sizes=()):
    profile = get_profile(target)
    shapes = engine_shapes(bundle, 1, sizes)
    model = onnx.load(bundle.model_path)
    manifest = bundle.manifest
    checks = check_model(
        model, profile, version, shapes, workspace, manifest.text_length, manifest.patch_size
    )
    return {c.name: c for c in checks}


def test_operator_tables_are_shipped_with_sources():
    assert {"8.5", "10.3"} <= set(available_tables())
    for version in available_tables():
        table = operator_table(version)
        assert table["source"].startswith("https://github.com/onnx/onnx-tensorrt/")
        assert table["operators"]["MatMul"]["supported"]
        assert "QuantizeLinear" in table["operators"]
    assert not operator_table("8.5")["operators"]["LayerNormalization"]["supported"]
    assert operator_table("10.3")["operators"]["LayerNormalization"]["supported"]
    with pytest.raises(InputError, match="no operator table for TensorRT 7.1"):
        operator_table("7.1")


def test_every_jetpacks_tensorrt_has_a_table_and_later_minors_take_the_earlier_one():
    # JetPack 5.1 (8.5), 6.2 (10.3), 7.1 on Thor (10.13), 7.2 (10.16), the newest 11.x found.
    assert {"8.5", "10.3", "10.13", "10.15", "10.16", "11.1"} <= set(available_tables())
    for profile in load_profiles().values():
        for version in profile.tensorrt:
            assert operator_table(version)["table"] == version, (profile.name, version)
    # 10.13's table is the 10.14 doc with its one 10.14 addition, Attention, taken back out.
    assert not operator_table("10.13")["operators"]["Attention"]["supported"]
    assert operator_table("10.16")["operators"]["Attention"]["supported"]
    assert operator_table("11.4.0.106")["table"] == "11.1"  # no 11.2-11.4 doc is stored
    assert operator_table("10.14")["table"] == "10.13"
    with pytest.raises(InputError, match="no operator table for TensorRT 10.2"):
        operator_table("10.2")  # nothing earlier of that major: no guess
    with pytest.raises(InputError, match="no operator table for TensorRT 12.0"):
        operator_table("12.0")


@pytest.mark.parametrize("target, version", [("jetson-agx-thor", "10.13"),
                                             ("jetson-agx-thor", "10.16"),
                                             ("jetson-orin-nano", "10.16"),
                                             ("cuda-gpu", "11.4")])  # fmt: skip
def test_tensorrt_bundles_pass_on_jetpack_7_and_tensorrt_11(trt_int8, target, version):
    checks = run_checks(trt_int8, target=target, version=version)
    assert all(c.ok for c in checks.values()), checks
    if version == "11.4":
        assert "by the 11.1 table" in checks["operators"].detail


def test_exported_and_tensorrt_quantized_bundles_pass(tiny_vqa_bundle, trt_int8):
    for bundle in (load_bundle(tiny_vqa_bundle), trt_int8):
        checks = run_checks(bundle)
        assert all(c.ok for c in checks.values()), checks
    assert "Q/DQ nodes" in run_checks(trt_int8)["qdq"].detail


def test_unsupported_ops_fail(cpu_int8, tiny_vqa_bundle):
    # The CPU preset's fused attention and GELU are ONNX Runtime contrib ops.
    operators = run_checks(cpu_int8)["operators"]
    assert not operators.ok
    assert "MultiHeadAttention (com.microsoft)" in operators.detail
    assert "Gelu (com.microsoft)" in operators.detail
    # TensorRT 8.5 (JetPack 5, Xavier NX) has no LayerNormalization, which opset 17 exports.
    old = run_checks(load_bundle(tiny_vqa_bundle), target="jetson-xavier-nx", version="8.5")
    assert not old["operators"].ok and "LayerNormalization" in old["operators"].detail


def test_qdq_rules(cpu_int8, trt_int8, tmp_path):
    qdq = run_checks(cpu_int8)["qdq"]  # uint8 activations (zero point 128), int32 biases
    assert not qdq.ok and "TensorRT quantizes to int8" in qdq.detail

    def broken(edit) -> object:
        model = onnx.load(trt_int8.model_path)
        edit(model)
        path = tmp_path / "m.onnx"
        onnx.save(model, path)
        return type("B", (), {"model_path": path, "manifest": trt_int8.manifest,
                              "preprocessing": trt_int8.preprocessing})()  # fmt: skip

    def zero_point_one(model):
        for init in model.graph.initializer:
            if init.name.endswith("zero_point") and init.data_type == onnx.TensorProto.INT8:
                array = numpy_helper.to_array(init).copy()
                if array.ndim == 0:
                    init.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), init.name))
                    return
        raise AssertionError("no scalar int8 zero point")

    checks = run_checks(broken(zero_point_one))
    assert not checks["qdq"].ok and "asymmetric" in checks["qdq"].detail

    def weight_axis_zero(model):
        for node in model.graph.node:
            if node.op_type == "DequantizeLinear":
                for attribute in node.attribute:
                    if attribute.name == "axis" and attribute.i == 1:
                        attribute.i = 0
                        return
        raise AssertionError("no per-channel MatMul weight")

    checks = run_checks(broken(weight_axis_zero))
    assert not checks["qdq"].ok and "output" in checks["qdq"].detail


def test_shapes_and_memory(trt_int8):
    assert run_checks(trt_int8, sizes=((384, 512), (384, 384)))["shapes"].ok
    memory = run_checks(trt_int8, workspace=16 << 30)["memory"]
    assert not memory.ok and "larger than" in memory.detail
    memory = run_checks(trt_int8, workspace=6 << 30)["memory"]  # 6 of 8 GB: over the share
    assert not memory.ok and "shared with the system" in memory.detail
    bad = engine_shapes(trt_int8, 1, ((384, 512),))
    bad["input_ids"] = ((1, 39), (1, 39), (1, 39))
    checks = check_model(onnx.load(trt_int8.model_path), get_profile("jetson-orin-nano"), "10.3",
                         bad, 1 << 30, trt_int8.manifest.text_length, 32)  # fmt: skip
    assert not checks[2].ok and "40 tokens" in checks[2].detail


def test_compile_without_tensorrt_writes_a_build_kit(trt_int8, tmp_path):
    out = tmp_path / "orin"
    options = CompileOptions(target="jetson-orin-nano", max_batch=2, image_sizes=((384, 512),))
    outcome = compile_bundle(trt_int8.path, out, options)
    bundle, summary = outcome.bundle, outcome.to_json()
    assert summary["ready"] and summary["state"] == "pending-build"
    assert "tensorrt is not installed" in summary["note"] or "no CUDA GPU" in summary["note"]
    record = bundle.manifest.extra["compile"]
    assert record["target"] == "jetson-orin-nano" and record["tensorrt"] == "10.3"
    assert bundle.manifest.runtime == "tensorrt" and bundle.manifest.model_file == "model.onnx"
    notes = (out / "BUILD.md").read_text()
    assert "vilt-edge compile orin --target jetson-orin-nano" in notes
    assert "trtexec --onnx=model.onnx --saveEngine=model.plan" in notes
    assert "--stronglyTyped" in notes and "--int8" not in notes  # TensorRT 10.3: typed by the graph
    plan = summary["build_plan"]
    assert plan["strongly_typed"] and plan["builder_flags"] == []
    assert plan["checked_against"] == "10.3.0"  # the real TensorRT 10.3 API
    assert "pixel_values:2x3x384x512" in notes  # max batch 2 at the one image size
    with pytest.raises(BundleError, match="not an engine: on the device run: vilt-edge compile"):
        ViltRuntime.load(out)
    # The kit compiles again (on the device) for its own target, and for no other.
    again = compile_bundle(out, None, CompileOptions(target="jetson-orin-nano",
                                                        check_only=True)).bundle  # fmt: skip
    assert again is None
    with pytest.raises(InputError, match="already compiled"):
        compile_bundle(out, None, CompileOptions(target="jetson-agx-orin", check_only=True))


def test_compile_check_cli(trt_int8, cpu_int8, tiny_vqa_bundle, tmp_path):
    runner = CliRunner()
    result = runner.invoke(app, ["compile", str(trt_int8.path), "--target", "jetson-orin-nano",
                                 "--check", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["ready"] and {c["name"] for c in summary["checks"]} == {
        "operators", "qdq", "shapes", "memory"}  # fmt: skip
    assert not any(tmp_path.iterdir())  # --check writes nothing
    one_line_error(
        runner.invoke(app, ["compile", str(cpu_int8.path), "--target", "jetson-orin-nano",
                            "--check"]),
        2, "quantized for cpu",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(tiny_vqa_bundle), "--target", "jetson-xavier-nx",
                            "--check"]),
        2, "not ready for jetson-xavier-nx", "LayerNormalization",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(trt_int8.path), "--target", "jetson-orin-nano",
                            "--workspace-gb", "12", "-o", str(tmp_path / "o")]),
        2, "larger than",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(trt_int8.path), "--target", "jetson-orin-nano",
                            "--tensorrt-version", "9.9", "--check"]),
        2, "ships TensorRT",
    )  # fmt: skip
    assert not (tmp_path / "o").exists()


def test_compile_builds_and_runs_an_engine_where_tensorrt_is(trt_int8, tmp_path, trt_stub):
    """The whole GPU flow against the TensorRT stub (`tests/trt_stub.py`): readiness, build
    with the profile's shapes, a bundle whose runtime refuses another TensorRT or GPU."""
    trt_stub(version="10.3.0.30", gpu="Orin", cc=(8, 7))
    out = tmp_path / "engine"
    options = CompileOptions(target="jetson-orin-nano", max_batch=2, image_sizes=((384, 512),))
    outcome = compile_bundle(trt_int8.path, out, options)
    bundle, summary = outcome.bundle, outcome.to_json()
    assert summary["state"] == "built" and bundle.manifest.model_file == "model.plan"
    settings = bundle.manifest.extra["runtime_settings"]
    assert settings["tensorrt_version"] == "10.3.0.30" and settings["gpu"] == "Orin"
    assert settings["max_shapes"]["pixel_values"] == [2, 3, 384, 512]
    assert (out / "model.plan").is_file() and (out / "timing.cache").is_file()
    runtime = ViltRuntime.load(out)
    assert runtime.runner.name == "tensorrt"
    feeds = synthetic_feeds(runtime, (384, 512), runtime.bundle.manifest.text_length, 2)
    expected = expected_logits(feeds, len(runtime.labels))
    np.testing.assert_allclose(runtime.runner.run(feeds), expected, rtol=1e-5)
    runtime.runner.close()
    trt_stub(version="8.5.2.2", gpu="Orin", cc=(8, 7))  # JetPack 5: another TensorRT
    with pytest.raises(BundleError, match="TensorRT"):
        ViltRuntime.load(out)

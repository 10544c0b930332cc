"""vilt-edge compile: CPU targets (ONNX Runtime offline optimization, ORT format, settings)."""

from __future__ import annotations

import json

import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.compile import CompileOptions, compile_bundle
from vilt_edge.data import load_data
from vilt_edge.errors import InputError
from vilt_edge.quantize import QuantizeOptions, quantize_bundle
from vilt_edge.runtime import ViltRuntime
from vilt_edge.validate import validate


@pytest.fixture(scope="module")
def easy_sample():
    return load_data("easy-vqa:test").limited(32)


@pytest.fixture(scope="module")
def int8_dynamic(tiny_vqa_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("c") / "int8"
    return quantize_bundle(
        tiny_vqa_bundle, out, QuantizeOptions(precision="int8", mode="dynamic")
    ).bundle.path


@pytest.mark.parametrize("target, model_file", [("x86-avx512-vnni", "model.onnx"),
                                                ("arm64", "model.ort")])  # fmt: skip
def test_cpu_targets_keep_the_answers(tiny_vqa_bundle, int8_dynamic, tmp_path, easy_sample,
                                      target, model_file):  # fmt: skip
    for source in (tiny_vqa_bundle, int8_dynamic):
        outcome = compile_bundle(
            source, tmp_path / f"{target}-{source.name}", CompileOptions(target=target)
        )
        bundle = outcome.bundle
        manifest = bundle.manifest
        assert manifest.model_file == model_file and (bundle.path / model_file).is_file()
        assert not (bundle.path / "model.onnx").exists() or model_file == "model.onnx"
        record = manifest.extra["compile"]
        assert record["target"] == target and record["profile"]["name"] == target
        assert record["format"] == model_file.split(".")[1]
        settings = manifest.extra["runtime_settings"]
        assert settings["intra_op_num_threads"] == record["profile"]["cores"]
        assert (
            manifest.source["bundle_model_sha256"]
            == json.loads((source / "manifest.json").read_text())["files"]["model.onnx"]
        )

        compiled = ViltRuntime.load(bundle.path)
        assert compiled.runner.threads == settings["intra_op_num_threads"]
        session_options = compiled.runner._session.get_session_options()
        assert settings["enable_mem_pattern"] is False
        assert session_options.enable_mem_pattern is False
        assert session_options.enable_cpu_mem_arena is settings["enable_cpu_mem_arena"]
        results = validate(compiled, easy_sample, reference=ViltRuntime.load(source), warmup=0)
        assert results.agreement == 1.0
        # FP32: the same arithmetic. INT8: ORT may fuse the dynamic quantization differently
        # offline than at load time, which rounds differently (measured 2e-3 max abs).
        limit = 1e-4 if source == tiny_vqa_bundle else 1e-2
        assert results.max_abs_logit_diff < limit and results.logit_cosine > 0.9999


def test_compile_cli_and_bad_inputs(tiny_vqa_bundle, int8_dynamic, tmp_path):
    runner = CliRunner()
    out = tmp_path / "cpu"
    result = runner.invoke(
        app, ["compile", str(tiny_vqa_bundle), "--target", "cpu", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["extra"]["compile"]["target"]
    # nothing is overwritten silently; compiled bundles are not compiled again
    one_line_error(
        runner.invoke(app, ["compile", str(tiny_vqa_bundle), "--target", "cpu", "-o", str(out)]),
        4, "output exists",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(out), "--target", "cpu", "-o", str(tmp_path / "x")]),
        2, "already compiled",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(tiny_vqa_bundle), "--target", "jetson-nano-2019",
                            "-o", str(tmp_path / "y")]),
        2, "unknown target", "jetson-orin-nano", "x86-avx2",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(tiny_vqa_bundle), "--target", "x86-avx2", "--dla",
                            "-o", str(tmp_path / "z")]),
        2, "no DLA",
    )  # fmt: skip
    one_line_error(
        runner.invoke(app, ["compile", str(tmp_path / "missing"), "--target", "cpu",
                            "-o", str(tmp_path / "w")]),
        4, "not found",
    )  # fmt: skip
    for flags, fragment in [
        (["--max-batch", "0"], "--max-batch"),
        (["--image-sizes", "384x500"], "multiples of 32"),
        (["--image-sizes", "abc"], "HEIGHTxWIDTH"),
        (["--compiler", "tvm"], "unknown compiler"),
    ]:
        result = runner.invoke(
            app, ["compile", str(tiny_vqa_bundle), "--target", "jetson-orin-nano",
                  "-o", str(tmp_path / "v"), *flags],
        )  # fmt: skip
        one_line_error(result, 2, fragment)
    assert not (tmp_path / "v").exists() and not (tmp_path / "x").exists()


def test_precision_and_preset_must_suit_the_device(tiny_vqa_bundle, tmp_path):
    fp16 = quantize_bundle(
        tiny_vqa_bundle, tmp_path / "fp16",
        QuantizeOptions(precision="fp16", calib="easy-vqa:train", calib_size=16),
    ).bundle  # fmt: skip
    with pytest.raises(InputError, match="does not run FP16"):
        compile_bundle(fp16.path, tmp_path / "a", CompileOptions(target="x86-avx512-vnni"))
    trt = quantize_bundle(
        tiny_vqa_bundle, tmp_path / "trt",
        QuantizeOptions(precision="int8", target="jetson-orin-nano", calib="easy-vqa:train",
                        calib_size=16),
    ).bundle  # fmt: skip
    with pytest.raises(InputError, match="quantized for tensorrt"):
        compile_bundle(trt.path, tmp_path / "b", CompileOptions(target="arm64"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_torch_cuda_bundle_runs_the_source_model(tiny_vqa_bundle, tmp_path, easy_sample):
    from vilt_edge.errors import BundleError
    from vilt_edge.runtimes.torch_cuda import TorchCudaRunner

    outcome = compile_bundle(tiny_vqa_bundle, tmp_path / "gpu", CompileOptions("cuda-gpu"))
    bundle = outcome.bundle
    manifest = bundle.manifest
    assert manifest.runtime == "torch-cuda" and manifest.model_file == "model.safetensors"
    assert manifest.extra["runtime_settings"] == {
        "device": "cuda", "dtype": "float16", "cuda_graphs": True, "compile": None}  # fmt: skip
    assert sorted(p.name for p in bundle.path.iterdir()) == [
        "config.json", "labels.json", "manifest.json", "model.safetensors", "preprocessor.json",
        "tokenizer.json"]  # fmt: skip
    import torch

    if not torch.cuda.is_available():
        with pytest.raises(BundleError, match="none is visible here"):
            ViltRuntime.load(bundle.path)
    # The same weights on the CPU (FP32, SDPA attention, no graphs) give the ONNX bundle's logits.
    onnx_runtime = ViltRuntime.load(tiny_vqa_bundle)
    runner = TorchCudaRunner.load(bundle.model_path, settings={"device": "cpu"})
    for index in range(4):
        (feeds,) = onnx_runtime.feeds(*easy_sample.inputs(index, index + 1))
        expected = onnx_runtime.runner.run(feeds)
        assert abs(runner.run(feeds) - expected).max() < 1e-4
    assert runner.describe()["runtime"] == "torch-cuda"
    runner.close()
    with pytest.raises(InputError, match="torch-cuda runs FP16"):
        options = QuantizeOptions(
            precision="int8", target="cuda-gpu", calib="easy-vqa:train", calib_size=16
        )
        int8 = quantize_bundle(tiny_vqa_bundle, tmp_path / "i8", options).bundle
        compile_bundle(int8.path, tmp_path / "gpu8", CompileOptions("cuda-gpu"))


def test_torch_tensorrt_path_with_a_stub(tiny_vqa_bundle, tmp_path, easy_sample, monkeypatch):
    """torch-tensorrt is not installable here: a stub records the documented calls
    (`compile(ir="dynamo", inputs=[Input(min, opt, max, dtype)])`, `save(...)`) and stands in
    for the engine with torch.export, so the bundle's ExportedProgram path runs end to end."""
    import sys
    import types

    import torch

    from vilt_edge.bundle import load_bundle
    from vilt_edge.compile.gpu import _torch_tensorrt_compile, engine_shapes
    from vilt_edge.model.loading import load_model
    from vilt_edge.runtimes.torch_cuda import TorchCudaRunner

    with pytest.raises(InputError, match="needs torch-tensorrt"):
        monkeypatch.setitem(sys.modules, "torch_tensorrt", None)
        compile_bundle(tiny_vqa_bundle, tmp_path / "no",
                       CompileOptions("cuda-gpu", compiler="torch-tensorrt"))  # fmt: skip
    calls = []
    stub = types.ModuleType("torch_tensorrt")
    stub.__version__ = "2.99-stub"

    class Input:
        def __init__(self, min_shape, opt_shape, max_shape, dtype):
            calls.append(("Input", min_shape, opt_shape, max_shape, dtype))

    def compile_(module, ir, inputs, **settings):
        calls.append(("compile", ir, len(inputs), settings))
        return module

    def save(module, path, output_format, inputs):
        calls.append(("save", output_format))
        torch.export.save(torch.export.export(module, tuple(inputs)), path)

    stub.Input, stub.compile, stub.save = Input, compile_, save
    monkeypatch.setitem(sys.modules, "torch_tensorrt", stub)
    bundle = load_bundle(tiny_vqa_bundle)
    shapes = engine_shapes(bundle, 2, ((384, 384),))
    record = _torch_tensorrt_compile(
        load_model(bundle.manifest.source["model"]), shapes, tmp_path / "m.ep", 1 << 30, "cpu"
    )
    assert record["torch_tensorrt"] == "2.99-stub"
    assert calls[0] == ("Input", (1, 40), (1, 40), (2, 40), torch.long)
    assert calls[2][1:4] == ((1, 3, 384, 384), (1, 3, 384, 384), (2, 3, 384, 384))
    assert calls[3] == ("compile", "dynamo", 3, {"enabled_precisions": {torch.float32},
                                                  "workspace_size": 1 << 30})  # fmt: skip
    runner = TorchCudaRunner.load(tmp_path / "m.ep", settings={"device": "cpu"})
    reference = ViltRuntime.load(tiny_vqa_bundle)
    (feeds,) = reference.feeds(*easy_sample.inputs(0, 1))
    assert abs(runner.run(feeds) - reference.runner.run(feeds)).max() < 1e-4


def test_image_short_side_is_a_compile_option(tiny_vqa_bundle, tmp_path, easy_sample):
    from vilt_edge.bundle import load_bundle

    options = CompileOptions("x86-avx512-vnni", image_short_side=64)
    outcome = compile_bundle(tiny_vqa_bundle, tmp_path / "small", options)
    bundle = outcome.bundle
    assert load_bundle(bundle.path).preprocessing.shortest_edge == 64
    assert bundle.manifest.extra["compile"]["resolution"] == {
        "shortest_edge": 64, "longest_edge": 106}  # fmt: skip
    small = ViltRuntime.load(bundle.path)
    pixels = small.feeds(*easy_sample.inputs(0, 1))[0]["pixel_values"]
    assert pixels.shape[-2:] == (64, 64)  # 2x2 patches instead of 12x12
    results = validate(small, easy_sample, warmup=0)
    assert results.n == len(easy_sample)
    runner = CliRunner()
    args = ["compile", str(tiny_vqa_bundle), "--target", "cpu", "--image-short-side", "48"]
    result = runner.invoke(app, [*args, "-o", str(tmp_path / "x")])
    one_line_error(result, 2, "multiple of the patch size 32")


def test_large_models_keep_weights_beside_the_graph(tiny_vqa_dir, tiny_vqa_bundle, tmp_path,
                                                    easy_sample, monkeypatch):  # fmt: skip
    """Above `EXTERNAL_DATA_MIN_BYTES` (0 here, so the tiny model counts as large) a bundle's
    weights live in model.onnx.data, which ONNX Runtime memory-maps; every stage keeps that."""
    import numpy as np

    import vilt_edge.bundle
    from vilt_edge.errors import BundleError
    from vilt_edge.model.export import export_bundle

    monkeypatch.setattr(vilt_edge.bundle, "EXTERNAL_DATA_MIN_BYTES", 0)
    fp32 = export_bundle(tiny_vqa_dir, tmp_path / "fp32")
    assert {"model.onnx", "model.onnx.data"} <= set(fp32.manifest.files)
    assert (tmp_path / "fp32" / "model.onnx").stat().st_size < 100_000  # graph only
    reference = ViltRuntime.load(tiny_vqa_bundle)
    external = ViltRuntime.load(fp32.path)
    (feeds,) = reference.feeds(*easy_sample.inputs(0, 2))  # one size: one feed
    np.testing.assert_array_equal(external.runner.run(feeds), reference.runner.run(feeds))

    int8 = quantize_bundle(fp32.path, tmp_path / "int8",
                              QuantizeOptions(precision="int8", mode="dynamic")).bundle  # fmt: skip
    data = tmp_path / "int8" / "model.onnx.data"
    assert (
        data.is_file()
        and data.stat().st_size < (tmp_path / "fp32" / "model.onnx.data").stat().st_size
    )
    compiled = compile_bundle(int8.path, tmp_path / "cpu", CompileOptions("x86-avx512-vnni")).bundle
    assert "model.onnx.data" in compiled.manifest.files
    results = validate(ViltRuntime.load(compiled.path), easy_sample, reference=reference, warmup=0)
    assert results.agreement >= 0.9
    kit = compile_bundle(fp32.path, tmp_path / "orin", CompileOptions("jetson-orin-nano")).bundle
    assert {"model.onnx", "model.onnx.data", "BUILD.md"} <= set(kit.manifest.files)

    with open(data, "r+b") as handle:  # a tampered weight file is refused
        handle.seek(100)
        handle.write(b"\x00\x01\x02")
    with pytest.raises(BundleError, match="model.onnx.data: altered"):
        ViltRuntime.load(tmp_path / "int8")


def test_cpu_means_this_machines_cores(tiny_vqa_bundle, tmp_path, monkeypatch):
    """`--target cpu` compiles for this host: one thread per CPU it may use, not per core of
    its family's reference device (4 threads on 2 cores ran 2-3x slower, measured)."""
    from vilt_edge.devices import host, resolve_target

    monkeypatch.setattr(host.os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    here = compile_bundle(tiny_vqa_bundle, tmp_path / "here", CompileOptions("cpu")).bundle
    profile = resolve_target("cpu").profile
    assert here.manifest.compile_record.target == profile.name
    assert here.manifest.runtime_settings.values["intra_op_num_threads"] == 3
    named = compile_bundle(tiny_vqa_bundle, tmp_path / "named", CompileOptions(profile.name))
    assert named.bundle.manifest.runtime_settings.values["intra_op_num_threads"] == profile.cores
    assert resolve_target("cpu").is_host and not resolve_target(profile.name).is_host

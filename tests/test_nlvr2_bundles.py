"""Every stage with the NLVR2 bundle layout (an encoder of one image plus the pair head), on the
real pairs of ../shared/data/nlvr2-mini: quantize (INT8 static and dynamic, FP16), compile for a
CPU and as a TensorRT build kit (profiles over one image), torch-cuda's runner on the CPU,
validate and the report, bench."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from vilt_edge.bundle import load_bundle
from vilt_edge.cli import app
from vilt_edge.compile import CompileOptions, compile_bundle
from vilt_edge.data import load_data
from vilt_edge.quantize import QuantizeOptions, quantize_bundle
from vilt_edge.runtime import ViltRuntime


@pytest.fixture(scope="module")
def pairs(shared_data):
    return load_data(f"nlvr2:{shared_data / 'nlvr2-mini'}")


@pytest.fixture(scope="module")
def fp32_logits(tiny_nlvr2_bundle, pairs):
    with ViltRuntime.load(tiny_nlvr2_bundle, threads=1) as runtime:
        return runtime.logits_batch(*pairs.inputs(), batch_size=8)


def p_true(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted[:, 1] / shifted.sum(axis=1)


def same_head(bundle, source) -> None:
    """The pair head is carried over as it was (it runs in FP32 on ONNX Runtime's CPU)."""
    manifest = load_bundle(bundle).manifest
    assert manifest.head_file == "head.onnx"
    assert manifest.files["head.onnx"] == load_bundle(source).manifest.files["head.onnx"]


@pytest.mark.parametrize(
    "precision,mode,limit",
    [("int8", "static", 0.05), ("int8", "dynamic", 0.05), ("fp16", "static", 2e-3)],
)
def test_quantized_nlvr2_bundles_answer_the_real_pairs(
    tiny_nlvr2_bundle, pairs, fp32_logits, tmp_path, precision, mode, limit
):
    calib = f"nlvr2:{pairs.name.split(':', 1)[1]}"
    options = QuantizeOptions(precision=precision, mode=mode, calib=calib, calib_size=16)
    outcome = quantize_bundle(tiny_nlvr2_bundle, tmp_path / "q", options)
    bundle, summary = outcome.bundle, outcome.record.to_json()
    same_head(bundle.path, tiny_nlvr2_bundle)
    assert bundle.manifest.precision == precision
    with ViltRuntime.load(bundle.path, threads=1) as runtime:
        logits = runtime.logits_batch(*pairs.inputs(), batch_size=8)
    difference = float(np.abs(p_true(logits) - p_true(fp32_logits)).max())
    print(f"{precision} {mode}: max |P(True) - FP32| over 16 pairs {difference:.2e}")
    assert difference < limit
    if precision == "int8" and mode == "static":  # calibration saw both images of each pair
        assert summary["calibration"]["size"] == 16


def test_held_out_sessions_run_the_pair_head(tiny_nlvr2_bundle, pairs, fp32_logits):
    """`--max-drop`'s held-out scoring runs each example's images and then the head."""
    from vilt_edge.quantize.quantizer import _Session

    bundle = load_bundle(tiny_nlvr2_bundle)
    with ViltRuntime.load(tiny_nlvr2_bundle, threads=1) as runtime:
        examples = [runtime.feeds(*pairs.inputs(i, i + 1)) for i in range(len(pairs))]
    assert any(len(feeds) == 2 for feeds in examples)  # pairs of two sizes: two encoder calls
    logits = _Session(bundle.model_path, 1, bundle.head_path).logits(examples)
    assert np.abs(logits - fp32_logits).max() < 1e-5


def test_cpu_compile_keeps_the_pair_answers(tiny_nlvr2_bundle, pairs, fp32_logits, tmp_path):
    bundle = compile_bundle(tiny_nlvr2_bundle, tmp_path / "cpu", CompileOptions("x86-avx2")).bundle
    same_head(bundle.path, tiny_nlvr2_bundle)
    with ViltRuntime.load(bundle.path, threads=1) as runtime:
        logits = runtime.logits_batch(*pairs.inputs(), batch_size=8)
    assert np.abs(logits - fp32_logits).max() < 1e-4


def test_tensorrt_build_kit_profiles_cover_one_image(tiny_nlvr2_bundle, pairs, tmp_path):
    calib = f"nlvr2:{pairs.name.split(':', 1)[1]}"
    options = QuantizeOptions(
        precision="fp16", target="jetson-orin-nano", calib=calib, calib_size=16
    )
    fp16 = quantize_bundle(tiny_nlvr2_bundle, tmp_path / "fp16", options).bundle
    outcome = compile_bundle(
        fp16.path, tmp_path / "kit", CompileOptions("jetson-orin-nano", max_batch=2)
    )
    kit, summary = outcome.bundle, outcome.to_json()
    same_head(kit.path, tiny_nlvr2_bundle)
    shapes = summary["input_shapes"]
    assert shapes["pixel_values"][2][:2] == [2, 3]  # batch x 3 x H x W: one image a row
    assert shapes["image_token_type_ids"] == [[1], [1], [2]]
    assert "image_token_type_ids:2" in summary["trtexec"]
    assert (kit.path / "BUILD.md").is_file()


def test_torch_cuda_runner_encodes_one_image_per_row(tiny_nlvr2_bundle, pairs, tmp_path):
    """The torch-cuda bundle's runner (here on the CPU) returns the pooled vectors the ONNX
    encoder returns; the runtime applies the pair head to them."""
    from vilt_edge.runtimes.torch_cuda import TorchCudaRunner

    bundle = compile_bundle(tiny_nlvr2_bundle, tmp_path / "gpu", CompileOptions("cuda-gpu")).bundle
    same_head(bundle.path, tiny_nlvr2_bundle)
    runner = TorchCudaRunner.load(bundle.model_path, settings={"device": "cpu"})
    with ViltRuntime.load(tiny_nlvr2_bundle, threads=1) as runtime:
        for index in range(3):
            for feeds in runtime.feeds(*pairs.inputs(index, index + 1)):
                expected = runtime.runner.run(feeds)
                assert runner.run(feeds).shape == expected.shape
                assert np.abs(runner.run(feeds) - expected).max() < 1e-4
    runner.close()


def test_validate_report_and_bench_of_nlvr2_bundles(tiny_nlvr2_bundle, pairs, tmp_path):
    runner = CliRunner()
    data = ["--data", pairs.name]
    dynamic = tmp_path / "int8"
    result = runner.invoke(app, ["quantize", str(tiny_nlvr2_bundle), "-o", str(dynamic),
                                 "--mode", "dynamic", "--json"])  # fmt: skip
    assert result.exit_code == 0, result.output
    for name, bundle in (("fp32", tiny_nlvr2_bundle), ("int8", dynamic)):
        out = str(tmp_path / f"{name}.json")
        result = runner.invoke(
            app, ["validate", str(bundle), *data, "--name", name, "--out", out, "--json"]
        )
        assert result.exit_code == 0, result.output
        summary = json.loads(result.stdout)
        assert summary["n"] == 16 and summary["deploy_peak_rss_mb"] > 0
    assert json.loads(result.stdout)["agreement"] >= 0.8
    result = runner.invoke(app, ["report", str(tmp_path / "fp32.json"), str(tmp_path / "int8.json"),
                                 "-o", str(tmp_path / "report")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "int8" in (tmp_path / "report" / "report.md").read_text()
    bench = runner.invoke(app, ["bench", str(tiny_nlvr2_bundle), "--runs", "3", "--json"])
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["latency_ms"]["p50"] > 0

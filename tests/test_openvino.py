"""Intel CPUs: OpenVINO as a runtime (directly and as ONNX Runtime's execution provider), the
x86-amx family (AMX flags and the kernel's tile grant), BF16 bundles, the model cache, and the
roofline's best ceiling across runtimes.

OpenVINO itself runs on any x86 CPU, so the `openvino` runner is checked for real here. ONNX
Runtime's OpenVINO provider lists Intel CPUs only; where the host is not one, its test checks
the one-line refusal instead of the answers (and says which it checked)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import one_line_error
from typer.testing import CliRunner

from vilt_edge.bench import synthetic_feeds
from vilt_edge.bundle import sha256_file
from vilt_edge.cli import app
from vilt_edge.devices import detect_host, resolve_target, roofline
from vilt_edge.devices import host as host_module
from vilt_edge.errors import BundleError, InputError
from vilt_edge.quantize import QuantizeOptions, quantize_bundle
from vilt_edge.runtime import ViltRuntime
from vilt_edge.runtimes import openvino as ov_module
from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner
from vilt_edge.runtimes.openvino import OpenVinoRunner, model_cache_dir

CALIB = "easy-vqa:train"
AMX = {"fma", "avx2", "avx512f", "avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}


@pytest.fixture(autouse=True)
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("VILT_EDGE_CACHE", str(tmp_path / "cache"))


def flags(monkeypatch, values: set[str]) -> None:
    """Make this host's usable ISA flags `values` for every module that asks."""
    monkeypatch.setattr(host_module, "usable_cpu_flags", lambda *a, **k: set(values))


# Host detection: AMX counts only where the kernel grants tile data


@pytest.mark.parametrize(
    "tiles, expected", [(True, "x86-amx"), (False, "x86-avx512-vnni")]
)  # fmt: skip
def test_amx_needs_the_flags_and_the_kernels_grant(tiles, expected):
    found = detect_host(
        device_tree_model="", has_nvidia_gpu=False, machine="x86_64", cpu_flags=AMX,
        amx_tiles=tiles,
    )  # fmt: skip
    assert found.name == expected


@pytest.mark.real_amx_grant
def test_tile_grant_is_asked_of_the_kernel_once(monkeypatch):
    calls = []
    monkeypatch.setattr(host_module, "host_cpu_flags", lambda: set(AMX))
    monkeypatch.setattr(host_module, "_request_tile_data", lambda: calls.append(1) or False)
    host_module.amx_tiles_granted.cache_clear()
    try:
        assert host_module.usable_cpu_flags() == AMX - host_module.AMX_FLAGS
        assert host_module.amx_tiles_granted() is False and calls == [1]
        assert "AMX tiles not granted" in host_module.describe_machine(
            {**host_module.machine_description(), "amx_tiles_granted": False}
        )
    finally:
        host_module.amx_tiles_granted.cache_clear()


@pytest.mark.real_amx_grant
def test_this_hosts_amx_answer_is_the_kernels():
    """On this machine: AMX is usable exactly when the flags are there and the real
    arch_prctl request succeeds; without the flags the request is not even made."""
    has_flags = bool(host_module.host_cpu_flags() & host_module.AMX_FLAGS)
    granted = host_module.amx_tiles_granted()
    assert granted == (has_flags and host_module._request_tile_data())
    detected = detect_host(has_nvidia_gpu=False)
    if detected is not None and detected.name == "x86-amx":
        assert granted


def test_cpu_on_an_amx_host_needs_the_extra_for_x86_amx(monkeypatch):
    import importlib.util

    from vilt_edge.devices import target as target_module

    amx = host_module.load_profiles()["x86-amx"]
    vnni = host_module.load_profiles()["x86-avx512-vnni"]
    monkeypatch.setattr(
        target_module, "detect_host", lambda **k: vnni if k.get("amx_tiles") is False else amx
    )
    assert resolve_target("cpu").name == "x86-amx"  # the extra is installed here
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "onnxruntime_ep_openvino" else real(name, *a),
    )
    assert resolve_target("cpu").name == "x86-avx512-vnni"  # as before x86-amx existed
    assert resolve_target("x86-amx").name == "x86-amx"  # named: the user asked for it


# The openvino runner (OpenVINO directly)


def test_openvino_runner_answers_as_onnxruntime(tiny_vqa_bundle):
    runtime = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    with OpenVinoRunner(tiny_vqa_bundle / "model.onnx", threads=1) as runner:
        for size, text, batch in [((64, 64), 40, 1), ((64, 96), 9, 3), ((96, 64), 2, 2)]:
            feeds = synthetic_feeds(runtime, size, text, batch)
            expected = runtime.runner.run(feeds)
            got = runner.run(feeds)
            assert got.shape == expected.shape
            np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)
        described = runner.describe()
    assert described["runtime"] == "openvino" and described["inference_precision"] == "f32"
    assert described["threads"] == 1


def test_model_cache_makes_a_warm_start_and_is_keyed_by_cpu_and_version(
    tiny_vqa_bundle, monkeypatch
):
    with OpenVinoRunner(tiny_vqa_bundle / "model.onnx", threads=1) as cold:
        cache = cold.cache
    blobs = sorted(p.name for p in cache.iterdir())
    assert blobs, "OpenVINO wrote no compiled blob into the model cache"
    with OpenVinoRunner(tiny_vqa_bundle / "model.onnx", threads=1) as warm:
        assert warm.cache == cache
    assert sorted(p.name for p in cache.iterdir()) == blobs  # loaded, not compiled anew
    with OpenVinoRunner(tiny_vqa_bundle / "model.onnx", settings={"model_cache": False}) as off:
        assert off.cache is None

    assert model_cache_dir("2026.4.1") != model_cache_dir("2026.5.0")
    before = model_cache_dir("2026.4.1")
    flags(monkeypatch, AMX)
    assert model_cache_dir("2026.4.1") != before  # another CPU's blobs are not this one's


def test_a_damaged_or_unsealed_cache_blob_is_dropped_and_compiled_anew(tiny_vqa_bundle):
    """OpenVINO loads a damaged blob without noticing and answers wrongly; the runner checks
    each blob against the sha256 recorded when it was written and drops what does not match
    (a bad sector) or has none (a write cut short), so the model is compiled anew."""
    model = tiny_vqa_bundle / "model.onnx"
    runtime = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    feeds = synthetic_feeds(runtime, (64, 64), 12, 2)
    with OpenVinoRunner(model, threads=1) as cold:
        expected, cache = cold.run(feeds), cold.cache
        assert cold.describe()["model_cache_dropped"] == []
    blobs = [p for p in cache.rglob("*") if p.is_file() and not p.name.endswith(".sha256")]
    assert blobs and all(p.with_name(p.name + ".sha256").is_file() for p in blobs)
    blob = blobs[0]
    data = bytearray(blob.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = bytes(min(4096, len(data) - middle))
    blob.write_bytes(bytes(data))
    with OpenVinoRunner(model, threads=1) as repaired:
        assert repaired.describe()["model_cache_dropped"] == [blob.name]
        np.testing.assert_allclose(repaired.run(feeds), expected, atol=1e-5)
    assert sha256_file(blob) == blob.with_name(blob.name + ".sha256").read_text().strip()

    blob.with_name(blob.name + ".sha256").unlink()  # as if the write had been cut short
    with OpenVinoRunner(model, threads=1) as again:
        assert again.describe()["model_cache_dropped"] == [blob.name]
    with OpenVinoRunner(model, threads=1) as warm:
        assert warm.describe()["model_cache_dropped"] == []  # sealed again: kept


def test_openvino_runner_refuses_bad_settings_and_files(tiny_vqa_bundle, tmp_path):
    with pytest.raises(BundleError, match="inference_precision must be one of f32, bf16"):
        OpenVinoRunner(tiny_vqa_bundle / "model.onnx", settings={"inference_precision": "fp8"})
    with pytest.raises(BundleError, match="model file not found"):
        OpenVinoRunner(tmp_path / "none.onnx")
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(BundleError, match="OpenVINO cannot compile this model"):
        OpenVinoRunner(broken)
    with pytest.raises(InputError, match="threads must be a positive"):
        OpenVinoRunner(tiny_vqa_bundle / "model.onnx", threads=0)


def test_without_the_extra_the_runners_say_what_to_install(tiny_vqa_bundle, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(BundleError, match=r"pip install 'vilt-edge\[openvino\]'"):
        OpenVinoRunner(tiny_vqa_bundle / "model.onnx")
    monkeypatch.setitem(sys.modules, "onnxruntime_ep_openvino", None)
    with pytest.raises(BundleError, match=r"execution provider, which is not installed.*openvino"):
        OnnxRuntimeRunner(
            tiny_vqa_bundle / "model.onnx", settings={"execution_provider": "openvino"}
        )
    with pytest.raises(BundleError, match="execution_provider must be cpu or openvino"):
        OnnxRuntimeRunner(tiny_vqa_bundle / "model.onnx", settings={"execution_provider": "x"})


# ONNX Runtime's OpenVINO execution provider


def test_openvino_provider_runs_here_or_says_why_not(tiny_vqa_bundle, capfd):
    runtime = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    feeds = synthetic_feeds(runtime, (64, 96), 11, 2)
    settings = {"execution_provider": "openvino", "intra_op_num_threads": 1}
    try:
        runner = OnnxRuntimeRunner(tiny_vqa_bundle / "model.onnx", settings=settings)
    except BundleError as error:  # a CPU the plugin lists no device for (non-Intel)
        import onnxruntime

        vendors = {d.device.vendor for d in onnxruntime.get_ep_devices()}
        assert "GenuineIntel" not in vendors and "Intel" not in str(vendors)
        assert "offers no device on this CPU" in str(error) and "\n" not in str(error)
        return
    with runner:
        assert "OpenVINOExecutionProvider" in runner.describe()["providers"]
        np.testing.assert_allclose(
            runner.run(feeds), runtime.runner.run(feeds), atol=1e-4, rtol=1e-4
        )
    # The provider took every option (it ignores its classic ones with a warning on stderr),
    # and its model cache was written and sealed, so the next load finds it and keeps it.
    assert "is ignored" not in capfd.readouterr().err
    _, cache = ov_module.openvino_ep_options(settings, 1, tiny_vqa_bundle / "model.onnx")
    blobs = [p for p in cache.iterdir() if not p.name.endswith(ov_module.SEAL)]
    assert blobs and all(p.with_name(p.name + ov_module.SEAL).is_file() for p in blobs)
    OnnxRuntimeRunner(tiny_vqa_bundle / "model.onnx", settings=settings).close()
    assert sorted(cache.iterdir()) == sorted(
        [*blobs, *(p.with_name(p.name + ov_module.SEAL) for p in blobs)]
    )


def test_openvino_provider_without_a_device_is_one_line(tiny_vqa_bundle, monkeypatch):
    import onnxruntime

    monkeypatch.setattr(onnxruntime, "get_ep_devices", lambda: [])
    with pytest.raises(BundleError) as caught:
        OnnxRuntimeRunner(
            tiny_vqa_bundle / "model.onnx", settings={"execution_provider": "openvino"}
        )
    assert "offers no device on this CPU" in str(caught.value)
    assert "compile the bundle with --target cpu" in str(caught.value)


def test_openvino_provider_options(tiny_vqa_bundle, monkeypatch):
    model = tiny_vqa_bundle / "model.onnx"
    options, cache = ov_module.openvino_ep_options({"inference_precision": "f32"}, 3, model)
    # Everything as OpenVINO properties: the plugin ignores its classic options (with a warning)
    assert list(options) == ["load_config"]
    cpu = json.loads(options["load_config"])["CPU"]
    assert cpu["INFERENCE_PRECISION_HINT"] == "f32" and cpu["INFERENCE_NUM_THREADS"] == "3"
    assert Path(cpu["CACHE_DIR"]) == cache and cache.is_dir()
    flags(monkeypatch, AMX)
    bf16, _ = ov_module.openvino_ep_options({"inference_precision": "bf16"}, None, model)
    cpu = json.loads(bf16["load_config"])["CPU"]
    assert cpu["INFERENCE_PRECISION_HINT"] == "bf16" and "INFERENCE_NUM_THREADS" not in cpu
    # One cache folder per compile config: the provider names its blob by the model alone, and
    # a BF16 session loading an FP32 session's blob of the same file fails in OpenVINO.
    _, f32 = ov_module.openvino_ep_options({"inference_precision": "f32"}, None, model)
    _, again = ov_module.openvino_ep_options({"inference_precision": "f32"}, None, model)
    assert Path(cpu["CACHE_DIR"]) != f32 and f32 == again


# BF16 bundles


def test_bf16_bundle_is_the_fp32_graph_at_bf16(tiny_vqa_bundle, tmp_path, monkeypatch):
    flags(monkeypatch, {"avx2", "fma"})
    with pytest.raises(InputError, match="needs a CPU with AMX-BF16 or AVX512-BF16"):
        QuantizeOptions(precision="bf16").check()
    with pytest.raises(InputError, match="x86-avx2 does not run BF16"):
        QuantizeOptions(precision="bf16", target="x86-avx2").check()
    with pytest.raises(InputError, match="--mode dynamic is INT8 only; BF16"):
        QuantizeOptions(precision="bf16", mode="dynamic", target="x86-amx").check()
    assert not QuantizeOptions(precision="bf16", target="x86-amx").needs_data

    result = quantize_bundle(
        tiny_vqa_bundle, tmp_path / "bf16", QuantizeOptions(precision="bf16", target="x86-amx")
    )
    manifest = json.loads((tmp_path / "bf16" / "manifest.json").read_text())
    assert manifest["precision"] == "bf16" and manifest["runtime"] == "openvino"
    assert manifest["extra"]["runtime_settings"] == {"inference_precision": "bf16"}
    assert result.record.data["calibration"] is None
    source = json.loads((tiny_vqa_bundle / "manifest.json").read_text())
    assert manifest["files"]["model.onnx"] == source["files"]["model.onnx"]  # the same graph

    # A CPU without BF16: one line, whichever way OpenVINO would have gone.
    with pytest.raises(BundleError, match="computes in BF16, which this CPU"):
        ViltRuntime.load(tmp_path / "bf16")
    result = CliRunner().invoke(
        app, ["ask", str(tmp_path / "bf16"), "-i", str(_image(tmp_path)), "-q", "what shape?"]
    )
    one_line_error(result, 4, "computes in BF16")


def test_bf16_bundle_runs_where_the_cpu_has_bf16(tiny_vqa_bundle, tmp_path):
    """Real on this host: with AMX-BF16 or AVX512-BF16 it answers within BF16's error of the
    FP32 bundle; without, OpenVINO would quietly compute in FP32, and the runner refuses."""
    bundle = quantize_bundle(
        tiny_vqa_bundle, tmp_path / "bf16", QuantizeOptions(precision="bf16", target="x86-amx")
    ).bundle.path
    has_bf16 = bool({"amx_bf16", "avx512_bf16"} & host_module.usable_cpu_flags())
    if not has_bf16:
        with pytest.raises(BundleError, match="computes in BF16"):
            ViltRuntime.load(bundle)
        return
    fp32 = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    with ViltRuntime.load(bundle, threads=1) as bf16:
        assert bf16.runner.describe()["inference_precision"] == "bf16"
        feeds = synthetic_feeds(fp32, (64, 64), 12, 2)
        np.testing.assert_allclose(bf16.runner.run(feeds), fp32.runner.run(feeds), atol=5e-2)


def test_bf16_precision_reported_by_openvino_is_checked(tiny_vqa_bundle, monkeypatch):
    """Where the flags say BF16 but OpenVINO compiles FP32 anyway, the runner refuses."""
    flags(monkeypatch, {"avx2", "fma", "amx_bf16"})
    import openvino

    real = openvino.Core.compile_model

    def f32_anyway(self, model, device, config):
        return real(self, model, device, {**config, "INFERENCE_PRECISION_HINT": "f32"})

    monkeypatch.setattr(openvino.Core, "compile_model", f32_anyway)
    with pytest.raises(BundleError, match="would run this BF16 bundle in FP32"):
        OpenVinoRunner(tiny_vqa_bundle / "model.onnx", settings={"inference_precision": "bf16"})


def _image(tmp_path: Path) -> Path:
    from PIL import Image

    path = tmp_path / "red.png"
    Image.new("RGB", (64, 64), (255, 0, 0)).save(path)
    return path


# Compiling for x86-amx and BF16


def _standard_ops_only(model_path: Path) -> None:
    model = onnx.load(model_path, load_external_data=False)
    domains = {node.domain for node in model.graph.node}
    assert domains <= {"", "ai.onnx"}, domains  # no ONNX Runtime contrib ops for OpenVINO


def test_x86_amx_int8_is_symmetric_qdq_on_matmul_inputs(tiny_vqa_bundle, tmp_path):
    options = QuantizeOptions(precision="int8", calib=CALIB, calib_size=16, target="x86-amx")
    int8 = quantize_bundle(tiny_vqa_bundle, tmp_path / "int8", options).bundle.path
    model = onnx.load(int8 / "model.onnx")
    _standard_ops_only(int8 / "model.onnx")
    values = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    readers = {}
    for node in model.graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node.op_type)
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    assert dq
    for node in dq:
        zero = values.get(node.input[2]) if len(node.input) > 2 else None
        assert zero is None or (zero.dtype == np.int8 and not zero.any())  # symmetric int8
        assert set(readers.get(node.output[0], [])) <= {"MatMul", "Gemm"}

    # Dynamic INT8 (no calibration data) takes ONNX Runtime's layout instead: see below.
    dynamic = QuantizeOptions(precision="int8", mode="dynamic", target="x86-amx").check()
    assert dynamic.name == "x86-avx512-vnni" and dynamic.dynamic_ok

    out = tmp_path / "amx"
    result = CliRunner().invoke(app, ["compile", str(int8), "--target", "x86-amx", "-o", str(out)])
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "manifest.json").read_text())
    settings = manifest["extra"]["runtime_settings"]
    assert manifest["runtime"] == "onnxruntime"
    assert settings["execution_provider"] == "openvino"
    assert settings["inference_precision"] == "bf16"  # float parts of INT8 on an AMX target
    _standard_ops_only(out / "model.onnx")


def test_float_attention_keeps_attentions_activation_products_float(
    tiny_vqa_bundle, tmp_path, monkeypatch
):
    """The x86-amx-float-attention preset, named by a user's device profile: every MatMul with
    a weight reads int8 Q/DQ, the two activation products of each layer's attention read float,
    and the bundle answers close to its FP32 source."""
    from vilt_edge.devices import profiles
    from vilt_edge.quantize.graph import activation_matmuls, layer_groups

    fp32 = onnx.load(tiny_vqa_bundle / "model.onnx")
    layers = sum(group.startswith("layer.") for group in layer_groups(fp32))
    attention = activation_matmuls(fp32)
    assert layers and len(attention) == 2 * layers, attention
    folder = tmp_path / "devices"
    folder.mkdir()
    text = (profiles.PROFILE_DIR / "x86-amx.toml").read_text()
    (folder / "x86-mine.toml").write_text(
        text.replace('name = "x86-amx"', 'name = "x86-mine"').replace(
            'quantize_preset = "x86-amx"', 'quantize_preset = "x86-amx-float-attention"'
        )
    )
    monkeypatch.setenv("VILT_EDGE_DEVICES", str(folder))
    options = QuantizeOptions(precision="int8", calib=CALIB, calib_size=16, target="x86-mine")
    int8 = quantize_bundle(tiny_vqa_bundle, tmp_path / "int8", options).bundle.path
    preset = json.loads((int8 / "manifest.json").read_text())["extra"]["quantize"]["preset"]
    assert preset["name"] == "x86-amx-float-attention" and preset["float_attention"]
    model = onnx.load(int8 / "model.onnx")
    _standard_ops_only(int8 / "model.onnx")
    produced_by = {out: node.op_type for node in model.graph.node for out in node.output}
    matmuls = [node for node in model.graph.node if node.op_type == "MatMul"]
    float_products = [
        node
        for node in matmuls
        if all(produced_by.get(name) != "DequantizeLinear" for name in node.input)
    ]
    assert len(float_products) == len(attention)
    assert len(matmuls) > len(float_products)
    for node in matmuls:
        if node not in float_products:
            assert all(produced_by.get(i) == "DequantizeLinear" for i in node.input), node.name
    ort_int8 = OnnxRuntimeRunner(int8 / "model.onnx", threads=1)
    ort_fp32 = OnnxRuntimeRunner(tiny_vqa_bundle / "model.onnx", threads=1)
    with ViltRuntime.load(tiny_vqa_bundle, threads=1) as runtime:
        feeds = synthetic_feeds(runtime, (64, 64), 12, 2)
    np.testing.assert_allclose(ort_int8.run(feeds), ort_fp32.run(feeds), atol=0.1)


def test_x86_amx_dynamic_int8_runs_on_onnxruntimes_cpu_provider(tiny_vqa_bundle, tmp_path):
    """`quantize --mode dynamic` for an AMX host, as the README offers it for a host short of
    memory: ONNX Runtime's layout (its fused contrib ops, which OpenVINO's provider would hand
    back to the CPU provider op by op), compiled and run on ONNX Runtime's CPU provider, whose
    MLAS kernels use AMX for it; the compiled bundle answers as the quantized one does."""
    amx = resolve_target("x86-amx")
    assert amx.preset_for("dynamic").name == "x86-avx512-vnni"
    assert amx.execution_provider_for("int8", "dynamic") == "cpu"
    assert not amx.runs_on_openvino("int8", "x86-avx512-vnni", "dynamic")
    assert amx.runs_on_openvino("int8", "x86-amx", "static") and amx.runs_on_openvino("fp32")
    # The static ONNX Runtime layout ran faster through OpenVINO's provider (issue 18's table).
    assert amx.execution_provider_for("int8", "static") == "openvino"
    settings = amx.session_settings(2, "int8", "x86-avx512-vnni", "dynamic")
    assert "execution_provider" not in settings and "inference_precision" not in settings
    options = QuantizeOptions(precision="int8", mode="dynamic", target="x86-amx")
    dynamic = quantize_bundle(tiny_vqa_bundle, tmp_path / "dyn", options).bundle.path
    manifest = json.loads((dynamic / "manifest.json").read_text())
    assert manifest["extra"]["quantize"]["preset"]["name"] == "x86-avx512-vnni"
    assert manifest["runtime"] == "onnxruntime"

    out = tmp_path / "amx"
    result = CliRunner().invoke(
        app, ["compile", str(dynamic), "--target", "x86-amx", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    compiled = json.loads((out / "manifest.json").read_text())
    assert compiled["runtime"] == "onnxruntime"
    assert "execution_provider" not in compiled["extra"]["runtime_settings"]
    assert "inference_precision" not in compiled["extra"]["runtime_settings"]
    ops = {node.op_type for node in onnx.load(out / "model.onnx").graph.node}
    assert "DynamicQuantizeMatMul" in ops or "MatMulInteger" in ops, ops  # ORT's INT8 kernels
    with ViltRuntime.load(dynamic, threads=1) as before, ViltRuntime.load(out, threads=1) as after:
        assert after.runner.describe()["providers"] == ["CPUExecutionProvider"]
        feeds = synthetic_feeds(after, (64, 64), 12, 2)
        np.testing.assert_allclose(after.runner.run(feeds), before.runner.run(feeds), atol=1e-4)


def test_compile_for_openvino_targets(tiny_vqa_bundle, tmp_path, monkeypatch):
    runner = CliRunner()
    out = tmp_path / "fp32-amx"
    result = runner.invoke(
        app, ["compile", str(tiny_vqa_bundle), "--target", "x86-amx", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    settings = json.loads((out / "manifest.json").read_text())["extra"]["runtime_settings"]
    assert settings["inference_precision"] == "f32"  # FP32 stays FP32 (not OpenVINO's BF16)
    assert settings["intra_op_num_threads"] == 2  # the profile's cores: a named target

    # Named: `cpu` on an AMX host is x86-amx, whose dynamic INT8 is another test's.
    dynamic_options = QuantizeOptions(precision="int8", mode="dynamic", target="x86-avx512-vnni")
    dynamic = quantize_bundle(tiny_vqa_bundle, tmp_path / "dyn", dynamic_options).bundle.path
    result = runner.invoke(
        app, ["compile", str(dynamic), "--target", "arm64", "-o", str(tmp_path / "x")]
    )
    assert result.exit_code == 0, result.output  # a CPU family's ONNX Runtime layout
    assert json.loads((tmp_path / "x" / "manifest.json").read_text())["runtime"] == "onnxruntime"

    bf16 = quantize_bundle(
        tiny_vqa_bundle, tmp_path / "bf16", QuantizeOptions(precision="bf16", target="x86-amx")
    ).bundle.path
    result = runner.invoke(
        app, ["compile", str(bf16), "--target", "x86-avx2", "-o", str(tmp_path / "y")]
    )
    one_line_error(result, 2, "x86-avx2 does not run BF16")
    # AVX512-BF16 (Zen 4, the x86-avx512-vnni reference): ONNX Runtime's CPU provider has no
    # BF16, so the compiled BF16 bundle names OpenVINO.
    vnni = tmp_path / "bf16-vnni"
    result = runner.invoke(
        app, ["compile", str(bf16), "--target", "x86-avx512-vnni", "-o", str(vnni)]
    )
    assert result.exit_code == 0, result.output
    manifest = json.loads((vnni / "manifest.json").read_text())
    assert manifest["runtime"] == "openvino"
    assert manifest["extra"]["runtime_settings"]["inference_precision"] == "bf16"
    assert "execution_provider" not in manifest["extra"]["runtime_settings"]


def test_cpu_targets_keep_onnxruntimes_cpu_provider():
    for name in ("x86-avx2", "x86-avx512-vnni", "arm64"):
        target = resolve_target(name)
        assert target.execution_provider == "cpu" and not target.on_openvino
        assert "execution_provider" not in target.session_settings(2, "int8")
    amx = resolve_target("x86-amx")
    assert amx.execution_provider == "openvino" and amx.preset.name == "x86-amx"
    assert amx.session_settings(None, "fp32")["inference_precision"] == "f32"


# The roofline's ceilings: the best installed runtime


def test_ceilings_are_the_best_runtime_per_precision(monkeypatch):
    monkeypatch.setattr(roofline, "_onnxruntime_ceilings", lambda *a: {"int8": 2e12, "fp32": 1e11})
    monkeypatch.setattr(roofline, "_openvino_ceilings", lambda *a: {"int8": 3e12, "fp32": 5e10,
                                                                     "bf16": 9e11})  # fmt: skip
    sources: dict[str, str] = {}
    ceilings = roofline.measure_ceilings(2, sources=sources)
    assert ceilings == {"int8": 3e12, "fp32": 1e11, "fp16": 1e11, "bf16": 9e11}
    assert sources == {"int8": "openvino", "fp32": "onnxruntime", "fp16": "onnxruntime",
                       "bf16": "openvino"}  # fmt: skip
    monkeypatch.setattr(roofline, "_openvino_ceilings", lambda *a: {})
    assert roofline.measure_ceilings(2)["bf16"] == 1e11  # no BF16 here: the FP32 rate


def test_openvino_ceilings_are_measured_here():
    measured = roofline._openvino_ceilings(1, 256, 3)
    assert set(measured) >= {"int8", "fp32"} and all(v > 1e8 for v in measured.values())
    has_bf16 = bool({"amx_bf16", "avx512_bf16"} & host_module.usable_cpu_flags())
    assert ("bf16" in measured) == has_bf16


# AVX-512 VNNI hosts: static INT8 in OpenVINO's layout, run by OpenVINO directly


def test_openvino_precision_names_are_read_as_openvino_prints_them():
    assert ov_module.precision_name("<Type: 'bfloat16'>") == "bf16"  # OpenVINO 2026.4
    assert ov_module.precision_name("bf16") == "bf16"
    assert ov_module.precision_name("<Type: 'float32'>") == "f32"
    assert ov_module.precision_name("f32") == "f32"


def test_vnni_static_int8_takes_openvinos_layout_where_it_is_installed(monkeypatch):
    from vilt_edge.devices import target as target_module

    vnni = resolve_target("x86-avx512-vnni")
    assert vnni.preset.name == "x86-openvino" and vnni.preset_for("static").openvino_precision
    assert vnni.preset_for("dynamic").name == "x86-avx512-vnni"  # dynamic stays ONNX Runtime's
    assert vnni.runtime_for("int8", "x86-openvino") == "openvino"
    assert vnni.runtime_for("int8", "x86-avx512-vnni") == "onnxruntime"
    assert resolve_target("x86-avx2").runtime_for("int8", "x86-openvino") == "openvino"
    # arm64 lists no OpenVINO: such a bundle compiled there stays on ONNX Runtime
    assert resolve_target("arm64").runtime_for("int8", "x86-openvino") == "onnxruntime"
    settings = vnni.session_settings(2, "int8", "x86-openvino")
    assert settings["inference_precision"] == "f32" and "execution_provider" not in settings
    for name in ("x86-avx2", "arm64", "x86-amx"):  # no OpenVINO layout of their own
        assert resolve_target(name).preset_for("static").name == resolve_target(name).preset.name
    assert resolve_target("x86-avx2").preset.name == "x86-avx2"
    monkeypatch.setattr(target_module, "openvino_installed", lambda: False)
    assert resolve_target("x86-avx512-vnni").preset.name == "x86-avx512-vnni"  # as before


def test_a_profile_names_only_an_openvino_layout_as_its_openvino_preset(tmp_path, monkeypatch):
    from vilt_edge.devices import profiles

    text = (profiles.PROFILE_DIR / "x86-avx512-vnni.toml").read_text()
    (tmp_path / "x86-mine.toml").write_text(
        text.replace('name = "x86-avx512-vnni"', 'name = "x86-mine"').replace(
            'openvino_preset = "x86-openvino"', 'openvino_preset = "tensorrt"'
        )
    )
    with pytest.raises(InputError, match="'tensorrt' is not an OpenVINO preset"):
        profiles._parse(tmp_path / "x86-mine.toml")
    amx = (profiles.PROFILE_DIR / "x86-amx.toml").read_text()
    (tmp_path / "x86-amx.toml").write_text(
        amx.replace('dynamic_preset = "x86-avx512-vnni"', 'dynamic_preset = "x86-amx"')
    )
    with pytest.raises(InputError, match="'x86-amx' is not an ONNX Runtime CPU preset"):
        profiles._parse(tmp_path / "x86-amx.toml")


def test_vnni_int8_in_openvinos_layout_runs_on_openvino(tiny_vqa_bundle, tmp_path, monkeypatch):
    """Quantize and compile for x86-avx512-vnni, as a user does: the bundle is standard Q/DQ,
    runs on OpenVINO at FP32 float parts, and answers as ONNX Runtime does on the same graph;
    a dynamic INT8 bundle for the same target stays on ONNX Runtime."""
    options = QuantizeOptions(
        precision="int8", calib=CALIB, calib_size=16, target="x86-avx512-vnni"
    )
    int8 = quantize_bundle(tiny_vqa_bundle, tmp_path / "int8", options).bundle.path
    _standard_ops_only(int8 / "model.onnx")
    manifest = json.loads((int8 / "manifest.json").read_text())
    assert manifest["extra"]["quantize"]["preset"]["name"] == "x86-openvino"
    assert manifest["runtime"] == "openvino"
    assert manifest["extra"]["runtime_settings"] == {"inference_precision": "f32"}

    out = tmp_path / "vnni"
    result = CliRunner().invoke(
        app, ["compile", str(int8), "--target", "x86-avx512-vnni", "-o", str(out)]
    )
    assert result.exit_code == 0, result.output
    compiled = json.loads((out / "manifest.json").read_text())
    settings = compiled["extra"]["runtime_settings"]
    assert compiled["runtime"] == "openvino" and settings["inference_precision"] == "f32"
    assert "execution_provider" not in settings
    _standard_ops_only(out / "model.onnx")
    with ViltRuntime.load(out, threads=1) as on_openvino:
        assert on_openvino.runner.describe()["inference_precision"] == "f32"
        feeds = synthetic_feeds(on_openvino, (64, 64), 12, 2)
        ort = OnnxRuntimeRunner(out / "model.onnx", threads=1)
        np.testing.assert_allclose(on_openvino.runner.run(feeds), ort.run(feeds), atol=5e-2)

    dynamic = quantize_bundle(
        tiny_vqa_bundle,
        tmp_path / "dyn",
        QuantizeOptions(precision="int8", mode="dynamic", target="x86-avx512-vnni"),
    ).bundle.path
    assert json.loads((dynamic / "manifest.json").read_text())["runtime"] == "onnxruntime"
    result = CliRunner().invoke(
        app, ["compile", str(dynamic), "--target", "x86-avx512-vnni", "-o", str(tmp_path / "d")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "d" / "manifest.json").read_text())["runtime"] == "onnxruntime"

"""Device profiles (data files), host detection, the roofline floor, and `vilt-edge devices`."""

from __future__ import annotations

import json
import re

import onnx
import pytest
from conftest import one_line_error, tiny_config
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.devices import PROFILE_DIR, detect_host, get_profile, load_profiles
from vilt_edge.devices.roofline import count_graph, predict_floor
from vilt_edge.errors import InputError
from vilt_edge.quantize import QuantizeOptions, quantize_bundle

REQUIRED = [
    "jetson-orin-nano",
    "jetson-orin-nx",
    "jetson-agx-orin",
    "jetson-agx-thor",
    "jetson-xavier-nx",
    "x86-avx512-vnni",
    "x86-avx2",
    "arm64",
    "cuda-gpu",
]


def test_every_required_profile_is_shipped_with_sources():
    profiles = load_profiles()
    assert set(REQUIRED) <= set(profiles)
    for name in REQUIRED:
        p = profiles[name]
        assert p.memory_gb > 0 and p.memory_bandwidth_gbs > 0
        assert p.peak_int8_tops > 0 and p.peak_fp32_tflops > 0
        assert p.peak_int8_tops * 1e3 > p.peak_fp32_tflops * 1e3  # INT8 beats FP32 everywhere
        assert "int8" in p.precisions and "fp32" in p.precisions
        if p.kind == "gpu":
            assert "fp16" in p.precisions and p.cuda_compute_capability
            assert "tensorrt" in p.runtimes and p.tensorrt
        else:
            assert p.runtime == "onnxruntime" and not p.tensorrt and p.isa
        if p.is_jetson:
            assert len(p.jetpack) == len(p.tensorrt) and p.detect
            assert 0 < p.max_workspace_fraction <= 1
        # Every figure line carries its source: a comment on the line or the line above.
        lines = (PROFILE_DIR / f"{name}.toml").read_text().splitlines()
        for index, line in enumerate(lines):
            figure = r"^(memory_gb|memory_bandwidth_gbs|peak_\w+|jetpack|tensorrt)\s*=(?!\s*\[\])"
            if re.match(figure, line):
                above = lines[index - 1] if index else ""
                assert "#" in line or above.lstrip().startswith("#"), (name, line)
    assert profiles["jetson-orin-nano"].dla_cores == 0
    assert (
        profiles["jetson-agx-orin"].dla_cores == 2 and profiles["jetson-xavier-nx"].dla_cores == 2
    )


def test_unknown_target_lists_the_valid_ones():
    with pytest.raises(InputError, match="unknown target 'jetson-nano-classic'.*jetson-orin-nano"):
        get_profile("jetson-nano-classic")


@pytest.mark.parametrize(
    "kwargs, expected",
    [
        (dict(device_tree_model="NVIDIA Jetson Orin Nano Engineering Reference Developer Kit"),
         "jetson-orin-nano"),
        (dict(device_tree_model="NVIDIA Jetson AGX Orin Developer Kit"), "jetson-agx-orin"),
        (dict(device_tree_model="NVIDIA Jetson Xavier NX Developer Kit"), "jetson-xavier-nx"),
        (dict(device_tree_model="NVIDIA Jetson AGX Thor Developer Kit"), "jetson-agx-thor"),
        (dict(device_tree_model="", has_nvidia_gpu=True), "cuda-gpu"),
        (dict(device_tree_model="", has_nvidia_gpu=False, machine="x86_64",
              cpu_flags={"fma", "avx2", "avx512f", "avx512_vnni"}), "x86-avx512-vnni"),
        (dict(device_tree_model="", has_nvidia_gpu=False, machine="x86_64",
              cpu_flags={"fma", "avx2"}), "x86-avx2"),
        (dict(device_tree_model="Raspberry Pi 5 Model B Rev 1.0", has_nvidia_gpu=False,
              machine="aarch64", cpu_flags={"fp", "asimd", "asimddp"}), "arm64"),
        (dict(device_tree_model="", has_nvidia_gpu=False, machine="x86_64",
              cpu_flags={"sse4_2"}), None),
    ],
)  # fmt: skip
def test_detect_host(kwargs, expected):
    found = detect_host(**kwargs)
    assert (found.name if found else None) == expected


def analytic_macs(config, text_length: int, height: int, width: int) -> int:
    """Multiply-accumulates of a ViLT VQA forward pass, from its config alone."""
    h, i, p = config.hidden_size, config.intermediate_size, config.patch_size
    patches = (height // p) * (width // p)
    tokens = text_length + 1 + patches
    layer = 4 * tokens * h * h + 2 * tokens * h * i + 2 * tokens * tokens * h
    # The exported last layer runs Q, the output projection and the MLP for [CLS] alone
    # (keys and values for every token): see vilt_edge.model.modeling.first_token_layer.
    last = 2 * tokens * h * h + 2 * h * h + 2 * h * i + 2 * tokens * h
    conv = patches * h * 3 * p * p
    head = h * h + h * 2 * h + 2 * h * config.num_labels  # pooler, classifier MLP
    return (config.num_hidden_layers - 1) * layer + last + conv + head


def test_count_graph_matches_the_architecture(tiny_vqa_bundle):
    manifest = json.loads((tiny_vqa_bundle / "manifest.json").read_text())
    config = tiny_config("vqa")
    for height, width in [(384, 384), (384, 512)]:
        cost = count_graph(tiny_vqa_bundle / "model.onnx", (height, width), text_length=40)
        expected = analytic_macs(config, manifest["text_length"], height, width)
        assert cost.macs == {"int8": 0, "fp16": 0, "fp32": expected}
        assert not cost.uncounted
    model = onnx.load(tiny_vqa_bundle / "model.onnx")
    params = sum(
        onnx.numpy_helper.to_array(init).nbytes for init in model.graph.initializer
    )  # fmt: skip
    assert cost.weight_bytes == params
    assert cost.activation_bytes > 0 and cost.io_bytes > 0


def test_count_graph_of_an_int8_bundle(tiny_vqa_bundle, tmp_path):
    options = QuantizeOptions(precision="int8", mode="dynamic")
    bundle = quantize_bundle(tiny_vqa_bundle, tmp_path / "int8", options).bundle
    config = tiny_config("vqa")
    manifest = json.loads((tiny_vqa_bundle / "manifest.json").read_text())
    cost = count_graph(bundle.model_path, (384, 384), text_length=40)
    total = analytic_macs(config, manifest["text_length"], 384, 384)
    tokens = manifest["text_length"] + 1 + 144
    layers = config.num_hidden_layers  # the last one attends from [CLS] alone
    attention = ((layers - 1) * 2 * tokens * tokens + 2 * tokens) * config.hidden_size
    # Linear layers, the patch projection among them (a MatMul over flattened patches), run in
    # INT8; only attention (fused, float) stays FP32.
    assert cost.macs["fp32"] == attention
    assert cost.macs["int8"] == total - attention
    assert cost.macs_by_op["MultiHeadAttention"] == attention


def test_predict_floor_is_the_larger_of_compute_and_memory(tiny_vqa_bundle):
    cost = count_graph(tiny_vqa_bundle / "model.onnx", (384, 384), text_length=40)
    orin = get_profile("jetson-orin-nano")
    floor = predict_floor(cost, orin)
    compute = 2 * cost.macs["fp32"] / (orin.peak_fp32_tflops * 1e12) * 1e3
    memory = (cost.weight_bytes + cost.io_bytes) / (orin.memory_bandwidth_gbs * 1e9) * 1e3
    assert floor.compute_ms == pytest.approx(compute)
    assert floor.memory_ms == pytest.approx(memory)
    assert floor.floor_ms == pytest.approx(max(compute, memory))
    assert floor.bound == ("compute" if compute >= memory else "memory")
    # A measured ceiling replaces the datasheet peak.
    slower = predict_floor(cost, orin, peaks={"fp32": orin.peak_fp32_tflops * 1e12 / 10})
    assert slower.compute_ms == pytest.approx(10 * compute)


def test_devices_cli(tiny_vqa_bundle):
    runner = CliRunner()
    result = runner.invoke(app, ["devices", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert isinstance(rows, list) and {r["name"] for r in rows} >= set(REQUIRED)
    assert all("peak_int8_tops" in r and "memory_gb" in r for r in rows)

    result = runner.invoke(app, ["devices", "--detect"])
    host = detect_host()
    if host is None:
        one_line_error(result, 1, "no device profile matches this host")
    else:
        assert result.exit_code == 0 and result.stdout.strip() == host.name

    result = runner.invoke(app, ["devices", "--floor", str(tiny_vqa_bundle), "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert all(r["floor"]["floor_ms"] > 0 for r in rows)
    table = runner.invoke(app, ["devices", "--floor", str(tiny_vqa_bundle)])
    assert table.exit_code == 0 and "jetson-orin-nano" in table.stdout and " ms " in table.stdout


def test_devices_cli_bad_inputs(tmp_path):
    runner = CliRunner()
    one_line_error(
        runner.invoke(app, ["devices", "--floor", str(tmp_path / "nope")]), 4, "not found"
    )
    for size in ("0x64", "64x60", "big"):
        result = runner.invoke(app, ["devices", "--floor", "default", "--image-size", size])
        one_line_error(result, 2, "image size")


def test_validate_records_the_host_floor_and_the_report_shows_it(tiny_vqa_bundle, tmp_path):
    from vilt_edge.data import load_data
    from vilt_edge.report import write_report
    from vilt_edge.results import write_results
    from vilt_edge.runtime import ViltRuntime
    from vilt_edge.validate import validate

    runtime = ViltRuntime.load(tiny_vqa_bundle, threads=1)
    results = validate(runtime, load_data("easy-vqa:test").limited(16), warmup=1)
    floor = results.floor
    assert floor["image_size"] == "384x384" and floor["gops"] > 0
    assert floor["ceilings_tops"]["int8"] > floor["ceilings_tops"]["fp32"] > 0
    # The floor is a lower bound: the measured latency is above it.
    assert 0 < floor["floor_ms"] < results.latency_ms["p50"]
    assert results.variant["device"] == (detect_host().name if detect_host() else None)
    paths = write_report([write_results(results, tmp_path / "r.json")], tmp_path / "report")
    markdown = paths.markdown.read_text()
    assert "Floor (ms)" in markdown and "roofline compute floor" in markdown


def test_count_graph_refuses_what_it_cannot_infer_and_leaves_no_files(tmp_path, monkeypatch):
    from onnx import TensorProto, helper

    from vilt_edge.errors import BundleError

    graph = helper.make_graph(
        [helper.make_node("SomeUnknownOp", ["x"], ["y"], domain="custom.x")],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, "height", "width"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("custom.x", 1)]
    )
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BundleError, match="cannot infer the graph's shapes at 32x32"):
        count_graph(model, (32, 32))
    assert list(tmp_path.iterdir()) == []  # onnxruntime's debugging copy went to a temp dir


def _own_profile(base: str, name: str, folder, **changes) -> None:
    """A user's own device: a shipped profile's file, renamed and changed, in their folder."""
    text = (PROFILE_DIR / f"{base}.toml").read_text()
    text = re.sub(r'^name = ".*"$', f'name = "{name}"', text, flags=re.M)
    for key, value in changes.items():
        text = re.sub(rf"^{key} = .*$", f"{key} = {json.dumps(value)}", text, flags=re.M)
    (folder / f"{name}.toml").write_text(text)


def test_adding_a_device_is_adding_one_file(tiny_vqa_bundle, tmp_path, monkeypatch):
    """Two new devices, each one TOML file in a folder named by $VILT_EDGE_DEVICES: a CPU board
    whose INT8 layout is Arm's and whose model is ORT format, and a GPU module with TensorRT.
    quantize and compile read everything from the files: no code names them."""
    folder = tmp_path / "my-devices"
    folder.mkdir()
    _own_profile("x86-avx2", "lab-board", folder, quantize_preset="arm64", model_format="ort",
                 cores=3, memory_gb=4.0, detect="", isa=["never-a-real-flag"])  # fmt: skip
    _own_profile("jetson-orin-nano", "lab-gpu", folder, detect="Lab GPU module")
    monkeypatch.setenv("VILT_EDGE_DEVICES", str(folder))
    assert {"lab-board", "lab-gpu"} <= set(load_profiles())
    runner = CliRunner()
    int8 = tmp_path / "int8"
    result = runner.invoke(app, ["quantize", str(tiny_vqa_bundle), "-o", str(int8),
                                 "--mode", "dynamic", "--target", "lab-board"])  # fmt: skip
    assert result.exit_code == 0, result.output
    from vilt_edge.bundle import load_bundle

    quantized = load_bundle(int8).manifest.quantize_record
    assert quantized.target == "lab-board" and quantized.preset_name == "arm64"
    compiled = tmp_path / "board"
    result = runner.invoke(
        app, ["compile", str(int8), "--target", "lab-board", "-o", str(compiled)]
    )
    assert result.exit_code == 0, result.output
    manifest = load_bundle(compiled).manifest
    assert manifest.model_file == "model.ort" and manifest.compile_record.target == "lab-board"
    assert manifest.runtime_settings.values["intra_op_num_threads"] == 3
    assert manifest.runtime_settings.values["enable_cpu_mem_arena"] is False  # 4 GB: no arena
    kit = tmp_path / "gpu-kit"
    result = runner.invoke(app, ["compile", str(tiny_vqa_bundle), "--target", "lab-gpu",
                                 "-o", str(kit)])  # fmt: skip
    assert result.exit_code == 0, result.output
    record = load_bundle(kit).manifest.compile_record
    assert record.target == "lab-gpu" and record.pending_build
    assert "--target lab-gpu" in (kit / "BUILD.md").read_text()
    assert detect_host(device_tree_model="Lab GPU module rev 2").name == "lab-gpu"
    help_text = runner.invoke(app, ["compile", "--help"]).output
    assert "lab-board" in help_text and "lab-gpu" in help_text


def test_a_bad_own_profile_is_one_line(tmp_path, monkeypatch):
    folder = tmp_path / "mine"
    folder.mkdir()
    _own_profile("x86-avx2", "odd", folder, quantize_preset="sparkles")
    monkeypatch.setenv("VILT_EDGE_DEVICES", str(folder))
    with pytest.raises(InputError, match="odd.toml: unknown quantize_preset 'sparkles'"):
        load_profiles()
    monkeypatch.setenv("VILT_EDGE_DEVICES", str(tmp_path / "absent"))
    with pytest.raises(InputError, match="not a folder of device profiles"):
        load_profiles()


def test_thor_is_named_by_its_dmi_product_name_too(monkeypatch):
    """Thor's platform scripts read the DMI product name, not the device tree."""
    from vilt_edge.devices import host

    files = {"/sys/devices/virtual/dmi/id/product_name": "NVIDIA Jetson AGX Thor Developer Kit\n"}
    monkeypatch.setattr(host, "_read", lambda path: files.get(path, ""))
    assert detect_host(has_nvidia_gpu=True).name == "jetson-agx-thor"
    thor = get_profile("jetson-agx-thor")
    assert thor.dla_cores == 0 and thor.tensorrt == ("10.16", "10.13")
    assert thor.cuda_compute_capability == "11.0"

"""The TensorRT engine builder and runner, against the in-process fakes in trt_stub.py (no
TensorRT or GPU needed), plus a static check that every TensorRT name the two modules use is
listed, with its documentation page, in vilt_edge/compile/tensorrt_api.json."""

from __future__ import annotations

import ast
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from trt_stub import (  # trt_stub_fixture registers the `trt_stub` fixture
    API,
    ENGINE_MAGIC,
    cudart_allowed,
    expected_logits,
    load_surface,
    surface_allowed,
    trt_stub_fixture,  # noqa: F401
    write_fake_onnx,
)

from vilt_edge.compile.tensorrt import (
    EngineSpec,
    build_engine,
    gpu_identity,
    tensorrt_status,
    trtexec_command,
)
from vilt_edge.compile.tensorrt_versions import build_plan, check_plan, dla_supported
from vilt_edge.errors import BundleError, InputError
from vilt_edge.runtimes import Runner, get_runner
from vilt_edge.runtimes.tensorrt import NOT_INSTALLED, TensorRTRunner

ROOT = Path(__file__).resolve().parents[1]
MODULES = [
    ROOT / "vilt_edge" / "compile" / "tensorrt.py",
    ROOT / "vilt_edge" / "runtimes" / "tensorrt.py",
]
TEXT = ((1, 40), (1, 40), (4, 40))
SHAPES = {
    "input_ids": TEXT,
    "attention_mask": TEXT,
    "token_type_ids": TEXT,
    "pixel_values": ((1, 3, 32, 32), (1, 3, 64, 64), (4, 3, 64, 64)),
}


def spec_for(precision: str = "fp16", **fields) -> EngineSpec:
    return EngineSpec(
        precision=precision, input_shapes=dict(SHAPES), workspace_bytes=1 << 30, **fields
    )


def build(tmp_path: Path, precision: str = "fp16", labels: int = 7, **fields):
    """The fake ONNX model -> model.plan; returns (engine path, record, spec)."""
    onnx = write_fake_onnx(tmp_path / "model.onnx", labels=labels)
    spec = spec_for(precision, **fields)
    record = build_engine(onnx, tmp_path / "model.plan", spec)
    return tmp_path / "model.plan", record, spec


def settings_for(record: dict, spec: EngineSpec) -> dict:
    """What `vilt-edge compile` writes to the manifest's runtime_settings."""
    return {
        "tensorrt_version": record["tensorrt_version"],
        "gpu": record["gpu"],
        "compute_capability": record["compute_capability"],
        "max_shapes": spec.max_shapes(),
    }


def feeds_for(batch: int = 2, height: int = 32, width: int = 64, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    mask = np.ones((batch, 40), dtype=np.int64)
    mask[:, 30:] = 0
    return {
        "input_ids": rng.integers(0, 1000, size=(batch, 40), dtype=np.int64),
        "attention_mask": mask,
        "token_type_ids": np.zeros((batch, 40), dtype=np.int64),
        "pixel_values": rng.standard_normal((batch, 3, height, width)).astype(np.float32),
    }


def one_line(error: pytest.ExceptionInfo, *fragments: str) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, message
    return message


# --- the builder ---------------------------------------------------------------------------


# The stub versions the real surfaces stand for: JetPack 5.1 (8.5, read from the nearest 8.x
# bindings wheel, 8.6.1), JetPack 6 (10.3), JetPack 7.1 on Thor (10.13), JetPack 7.2 on Orin and
# Thor (10.16) and the newest 11.x.
VERSIONS = ["8.5.2.2", "10.3.0.30", "10.13.3.9", "10.16.1.11", "11.4.0.106"]
WEAK_FLAGS = {"fp32": [], "fp16": ["FP16"], "int8": ["INT8", "FP16"]}


def test_each_version_runs_against_its_own_real_surface(trt_stub):
    surfaces = {trt_stub(version=v).surface["version"] for v in VERSIONS}
    assert surfaces == {"8.6.1", "10.3.0", "10.13.3.9", "10.16.1.11", "11.4.0.106"}


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_builder_types_the_network_as_each_version_wants(trt_stub, tmp_path, version, precision):
    """8.x: explicit batch and the weak-typing precision flags; 10.x: a strongly typed network
    and no precision flags; 11.x: no flags at all (strong typing is its only mode)."""
    stub = trt_stub(version=version)
    engine, record, _ = build(tmp_path, precision)
    major = int(version.split(".")[0])
    network = {8: 1 << 0, 10: 1 << 1, 11: 0}[major]  # EXPLICIT_BATCH, STRONGLY_TYPED
    assert stub.named("builder.create_network") == [(network,)]
    flags = WEAK_FLAGS[precision] if major < 10 else []
    assert [flag for (flag,) in stub.named("config.set_flag")] == flags
    assert record["flags"] == flags and record["strongly_typed"] == (major >= 10)
    assert record["precision"] == precision and record["tensorrt_version"] == version
    built = json.loads(engine.read_bytes()[len(ENGINE_MAGIC) :])
    assert built["strongly_typed"] == (major >= 10)


def test_the_weak_typing_builder_fails_on_tensorrt_11s_real_surface(trt_stub):
    """What vilt-edge's builder did before it built strongly typed networks: FP16 and INT8
    builder flags, and the explicit-batch creation flag. TensorRT 11 has none of them."""

    def weak_typing_build_flags(trt):
        builder = trt.Builder(trt.ILogger())
        network_flag = 1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH)
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.INT8)
        config.set_flag(trt.BuilderFlag.FP16)
        return network_flag

    trt_stub(version="10.3.0.30")
    import tensorrt

    assert weak_typing_build_flags(tensorrt) == 1  # 10.3 still has them (deprecated)
    trt_stub(version="11.4.0.106")
    import tensorrt

    with pytest.raises(AttributeError):
        weak_typing_build_flags(tensorrt)
    with pytest.raises(AttributeError):
        tensorrt.BuilderFlag.FP16  # noqa: B018
    with pytest.raises(AttributeError):
        tensorrt.Builder(tensorrt.ILogger()).platform_has_fast_fp16  # noqa: B018


def test_workspace_limit_and_single_profile(trt_stub, tmp_path):
    stub = trt_stub()
    _, record, _ = build(tmp_path)
    assert stub.named("config.set_memory_pool_limit") == [("WORKSPACE", 1 << 30)]
    assert record["workspace_bytes"] == 1 << 30
    shapes = {name: (low, opt, high) for name, low, opt, high in stub.named("profile.set_shape")}
    assert shapes == SHAPES
    (profile,) = stub.named("config.add_optimization_profile")
    assert profile[0] == SHAPES
    assert record["input_shapes"]["pixel_values"] == [
        [1, 3, 32, 32],
        [1, 3, 64, 64],
        [4, 3, 64, 64],
    ]


@pytest.mark.parametrize(
    ("version", "flags"),
    [("8.5.2.2", ["INT8", "FP16", "GPU_FALLBACK"]), ("10.3.0.30", ["GPU_FALLBACK"])],
)
def test_dla_core_with_gpu_fallback(trt_stub, tmp_path, version, flags):
    stub = trt_stub(version=version)
    _, record, _ = build(tmp_path, "int8", dla_core=1)
    assert stub.named("config.default_device_type") == [("DLA",)]
    assert stub.named("config.DLA_core") == [(1,)]
    assert [flag for (flag,) in stub.named("config.set_flag")] == flags
    assert record["dla_core"] == 1 and "GPU_FALLBACK" in record["flags"]


@pytest.mark.parametrize("version", ["10.13.3.9", "11.4.0.106"])
def test_dla_is_refused_where_the_version_has_none(trt_stub, tmp_path, version):
    trt_stub(version=version)
    with pytest.raises(InputError, match=f"TensorRT {version} has no DLA support"):
        build(tmp_path, "int8", dla_core=0)


def test_no_dla_settings_without_a_dla_core(trt_stub, tmp_path):
    stub = trt_stub()
    _, record, _ = build(tmp_path)
    assert stub.named("config.default_device_type") == []
    assert stub.named("config.DLA_core") == []
    assert record["dla_core"] is None


def test_dla_core_the_device_lacks(trt_stub, tmp_path):
    trt_stub(dla_cores=1)
    with pytest.raises(InputError) as error:
        build(tmp_path, dla_core=1)
    one_line(error, "DLA core 1", "1 DLA core")
    assert not (tmp_path / "model.plan").exists()


def test_dla_needs_fp16_or_int8():
    with pytest.raises(InputError) as error:
        spec_for("fp32", dla_core=0)
    one_line(error, "FP16 or INT8")


@pytest.mark.parametrize(
    "shapes",
    [
        {"input_ids": ((1, 40), (1, 40))},
        {"input_ids": ((2, 40), (1, 40), (4, 40))},
        {"input_ids": ((1, 40), (1, 40), (4, 40, 1))},
        {"input_ids": ((0, 40), (1, 40), (4, 40))},
    ],
)
def test_bad_profiles_are_input_errors(shapes):
    with pytest.raises(InputError) as error:
        EngineSpec(precision="fp16", input_shapes=shapes, workspace_bytes=1)
    one_line(error, "input_ids")


def test_unknown_precision_and_workspace():
    with pytest.raises(InputError):
        EngineSpec(precision="int4", input_shapes={}, workspace_bytes=1)
    with pytest.raises(InputError):
        EngineSpec(precision="fp16", input_shapes={}, workspace_bytes=0)


def test_timing_cache_is_loaded_and_written_back(trt_stub, tmp_path):
    stub = trt_stub()
    cache = tmp_path / "timing.cache"
    old = b"FAKE-TIMING-CACHE\nfrom an earlier build\n"
    cache.write_bytes(old)
    _, record, _ = build(tmp_path, timing_cache=cache)
    assert stub.named("config.create_timing_cache") == [(old,)]
    assert stub.named("config.set_timing_cache") == [(old, False)]
    assert cache.read_bytes() == old + b"tactics 10.3.0.30 Orin\n"
    assert record["timing_cache"] is True and record["timing_cache_reused"] is True
    assert [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")] == []


def test_timing_cache_is_created_when_missing(trt_stub, tmp_path):
    stub = trt_stub()
    cache = tmp_path / "caches" / "timing.cache"
    _, record, _ = build(tmp_path, timing_cache=cache)
    assert stub.named("config.create_timing_cache") == [(b"",)]
    assert cache.read_bytes() == b"FAKE-TIMING-CACHE\ntactics 10.3.0.30 Orin\n"
    assert record["timing_cache"] is True and record["timing_cache_reused"] is False


def test_a_mismatched_timing_cache_is_replaced(trt_stub, tmp_path):
    stub = trt_stub()
    cache = tmp_path / "timing.cache"
    cache.write_bytes(b"a cache from another TensorRT")
    messages = []
    onnx = write_fake_onnx(tmp_path / "model.onnx")
    record = build_engine(
        onnx, tmp_path / "m.plan", spec_for(timing_cache=cache), log=messages.append
    )
    assert stub.named("config.create_timing_cache") == [(b"a cache from another TensorRT",), (b"",)]
    assert cache.read_bytes().startswith(b"FAKE-TIMING-CACHE\n")
    assert record["timing_cache_reused"] is False
    assert any("does not match" in m for m in messages)


def test_no_timing_cache_unless_asked(trt_stub, tmp_path):
    stub = trt_stub()
    _, record, _ = build(tmp_path)
    assert stub.named("config.create_timing_cache") == []
    assert record["timing_cache"] is False


def test_parser_failure_is_one_line_naming_the_parser_error(trt_stub, tmp_path):
    trt_stub()
    onnx = write_fake_onnx(tmp_path / "model.onnx", error="In node 12 (Einsum): unsupported\nmore")
    with pytest.raises(BundleError) as error:
        build_engine(onnx, tmp_path / "model.plan", spec_for())
    one_line(
        error, "TensorRT cannot parse model.onnx", "In node 12 (Einsum): unsupported", "1 more"
    )
    assert not (tmp_path / "model.plan").exists()


def test_parser_is_given_the_file_path(trt_stub, tmp_path):
    stub = trt_stub()
    build(tmp_path)
    assert stub.named("parser.parse_from_file") == [(str(tmp_path / "model.onnx"),)]


def test_build_returning_none_is_a_bundle_error(trt_stub, tmp_path):
    trt_stub(fail_build="Internal Error (could not find any implementation for node Gelu_3)")
    with pytest.raises(BundleError) as error:
        build(tmp_path)
    one_line(error, "TensorRT could not build an engine from model.onnx", "Gelu_3")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx"]


def test_dynamic_input_needs_a_profile(trt_stub, tmp_path):
    trt_stub()
    onnx = write_fake_onnx(tmp_path / "model.onnx")
    shapes = {k: v for k, v in SHAPES.items() if k != "pixel_values"}
    with pytest.raises(InputError) as error:
        build_engine(onnx, tmp_path / "p", EngineSpec("fp16", shapes, 1 << 20))
    one_line(error, "pixel_values", "?x3x?x?")


def test_profile_for_an_unknown_input(trt_stub, tmp_path):
    trt_stub()
    onnx = write_fake_onnx(tmp_path / "model.onnx")
    shapes = {**SHAPES, "pixel_mask": ((1, 32, 32), (1, 32, 32), (1, 32, 32))}
    with pytest.raises(InputError) as error:
        build_engine(onnx, tmp_path / "p", EngineSpec("fp16", shapes, 1 << 20))
    one_line(error, "no input(s) pixel_mask")


def test_profile_that_does_not_fit_the_static_dims(trt_stub, tmp_path):
    trt_stub()
    onnx = write_fake_onnx(tmp_path / "model.onnx")
    shapes = {**SHAPES, "input_ids": ((1, 32), (1, 32), (4, 32))}
    with pytest.raises(InputError) as error:
        build_engine(onnx, tmp_path / "p", EngineSpec("fp16", shapes, 1 << 20))
    one_line(error, "input_ids", "?x40")


def test_engine_is_written_atomically(trt_stub, tmp_path, monkeypatch):
    trt_stub()
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"the previous engine")
    replaced = []
    real_replace = os.replace

    def replace(source, target):
        replaced.append((Path(source), Path(target)))
        assert Path(target).read_bytes() == b"the previous engine"  # untouched until the swap
        assert Path(source).read_bytes().startswith(ENGINE_MAGIC)  # complete before the swap
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", replace)
    _, record, _ = build(tmp_path)
    ((source, target),) = replaced
    assert target == engine and source.parent == tmp_path and source.name.startswith(".model.plan.")
    assert not source.exists()
    assert record["engine_bytes"] == engine.stat().st_size


def test_a_failed_write_keeps_the_old_engine(trt_stub, tmp_path, monkeypatch):
    trt_stub()
    engine = tmp_path / "model.plan"
    engine.write_bytes(b"the previous engine")

    def replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(OSError):
        build(tmp_path)
    assert engine.read_bytes() == b"the previous engine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.onnx", "model.plan"]


def test_build_record(trt_stub, tmp_path):
    trt_stub(version="8.5.2.2", gpu="Xavier", cc=(7, 2))
    messages = []
    onnx = write_fake_onnx(tmp_path / "model.onnx")
    record = build_engine(onnx, tmp_path / "model.plan", spec_for("int8"), log=messages.append)
    assert record["tensorrt_version"] == "8.5.2.2"
    assert record["gpu"] == "Xavier" and record["compute_capability"] == "7.2"
    assert record["engine_bytes"] == (tmp_path / "model.plan").stat().st_size
    assert record["build_seconds"] >= 0
    assert json.loads(json.dumps(record)) == record
    assert any("parsing model.onnx" in m for m in messages)


def test_build_without_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    with pytest.raises(BundleError) as error:
        build_engine(tmp_path / "model.onnx", tmp_path / "model.plan", spec_for())
    one_line(error, "cannot build a TensorRT engine here: tensorrt is not installed")


def test_build_without_a_gpu(trt_stub, tmp_path):
    trt_stub(device_count=0)
    with pytest.raises(BundleError) as error:
        build(tmp_path)
    one_line(error, "cannot build a TensorRT engine here: no CUDA GPU visible")


def test_tensorrt_status(trt_stub, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    assert tensorrt_status() == (None, "tensorrt is not installed")
    trt_stub(device_count=0)
    assert tensorrt_status() == (None, "no CUDA GPU visible")
    trt_stub(version="10.3.0.30")
    assert tensorrt_status() == ("10.3.0.30", "")
    trt_stub(version="8.5.2.2", legacy_cuda=True)  # cuda-python < 12.6: `from cuda import cudart`
    assert tensorrt_status() == ("8.5.2.2", "")
    assert gpu_identity() == {"gpu": "Orin", "compute_capability": "8.7"}


def test_tensorrt_status_without_cuda_python(trt_stub, monkeypatch):
    trt_stub()
    monkeypatch.setitem(sys.modules, "cuda", None)
    monkeypatch.setitem(sys.modules, "cuda.bindings", None)
    version, reason = tensorrt_status()
    assert version is None and "cuda-python" in reason


def test_gpu_identity(trt_stub):
    trt_stub(gpu="NVIDIA GeForce RTX 4090", cc=(8, 9))
    assert gpu_identity() == {"gpu": "NVIDIA GeForce RTX 4090", "compute_capability": "8.9"}


# --- trtexec ------------------------------------------------------------------------------


def test_trtexec_command_fp16():
    spec = EngineSpec(
        "fp16",
        {"input_ids": TEXT, "pixel_values": ((1, 3, 32, 32), (1, 3, 384, 384), (4, 3, 384, 384))},
        workspace_bytes=1536 * (1 << 20),
    )
    assert trtexec_command("model.onnx", "model.plan", spec, "8.5") == (
        "trtexec --onnx=model.onnx --saveEngine=model.plan --fp16"
        " --minShapes=input_ids:1x40,pixel_values:1x3x32x32"
        " --optShapes=input_ids:1x40,pixel_values:1x3x384x384"
        " --maxShapes=input_ids:4x40,pixel_values:4x3x384x384"
        " --memPoolSize=workspace:1536 --timingCacheFile=timing.cache"
    )


def test_trtexec_command_int8_dla_and_cache():
    spec = EngineSpec(
        "int8",
        {"input_ids": TEXT},
        workspace_bytes=(1 << 20) + 1,
        dla_core=0,
        timing_cache=Path("/somewhere/orin.cache"),
    )
    parts = trtexec_command("m.onnx", "m.plan", spec, "8.5").split()
    assert parts[3:5] == ["--int8", "--fp16"]
    assert "--memPoolSize=workspace:2" in parts  # rounded up to whole MiB
    assert "--timingCacheFile=orin.cache" in parts
    assert parts[-2:] == ["--useDLACore=0", "--allowGPUFallback"]


def test_trtexec_command_fp32_has_no_precision_flags():
    spec = EngineSpec("fp32", {}, workspace_bytes=1 << 30)
    command = trtexec_command("m.onnx", "m.plan", spec, "8.5")
    assert "--fp16" not in command and "--int8" not in command and "Shapes" not in command
    assert "--memPoolSize=workspace:1024" in command


@pytest.mark.parametrize(
    ("version", "flags"),
    [
        ("10.3", ["--stronglyTyped"]),
        ("10.13", ["--stronglyTyped"]),
        ("10.16", ["--stronglyTyped"]),
        ("11.4", []),
    ],  # fmt: skip
)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_trtexec_command_per_version(version, flags, precision):
    spec = EngineSpec(precision, {"input_ids": TEXT}, workspace_bytes=1 << 30)
    parts = trtexec_command("m.onnx", "m.plan", spec, version).split()
    assert "--fp16" not in parts and "--int8" not in parts
    assert [p for p in parts if p == "--stronglyTyped"] == flags


# --- the runner ---------------------------------------------------------------------------


def test_runner_returns_the_engines_logits(trt_stub, tmp_path):
    stub = trt_stub()
    engine, record, spec = build(tmp_path)
    feeds = feeds_for(batch=2)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        assert isinstance(runner, Runner)
        assert runner.input_names == list(SHAPES)
        logits = runner.run(feeds)
        assert logits.dtype == np.float32 and logits.shape == (2, 7)
        np.testing.assert_allclose(logits, expected_logits(feeds, 7), rtol=1e-5)
        assert runner.last_inference_time_ms is not None and runner.last_inference_time_ms >= 0
        other = feeds_for(batch=3, height=64, width=32, seed=1)  # new shapes, same buffers
        np.testing.assert_allclose(runner.run(other), expected_logits(other, 7), rtol=1e-5)
        mallocs = len(stub.named("cudaMalloc"))
        assert mallocs == 5  # four inputs and the logits, once, at load
        described = runner.describe()
    assert described["runtime"] == "tensorrt" and described["version"] == "10.3.0.30"
    assert described["gpu"] == "Orin" and described["providers"] == ["TensorRT"]
    assert described["threads"] is None and described["model"] == str(engine)


def test_buffers_are_sized_for_the_max_shapes(trt_stub, tmp_path):
    stub = trt_stub()
    engine, record, spec = build(tmp_path)
    TensorRTRunner.load(engine, settings=settings_for(record, spec)).close()
    sizes = sorted(size for (size,) in stub.named("cudaMalloc"))
    # int64 ids/mask/types 4x40, pixels 4x3x64x64 float32, logits 4x7 float32
    assert sizes == sorted([4 * 40 * 8] * 3 + [4 * 3 * 64 * 64 * 4, 4 * 7 * 4])


def test_runner_on_tensorrt_8_5_casts_ids_to_int32(trt_stub, tmp_path):
    stub = trt_stub(version="8.5.2.2", gpu="Xavier", cc=(7, 2))
    engine, record, spec = build(tmp_path)
    feeds = feeds_for(batch=1)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        logits = runner.run(feeds)
    np.testing.assert_allclose(logits, expected_logits(feeds, 7), rtol=1e-5)
    to_device = [count for kind, count in stub.named("cudaMemcpyAsync") if "HostToDevice" in kind]
    assert to_device == [40 * 4, 40 * 4, 40 * 4, 3 * 32 * 64 * 4]  # int32 ids, float32 pixels


def test_runner_converts_fp16_logits_to_float32(trt_stub, tmp_path):
    trt_stub()
    onnx = write_fake_onnx(tmp_path / "model.onnx", labels=3, output_dtype="float16")
    spec = spec_for()
    record = build_engine(onnx, tmp_path / "model.plan", spec)
    feeds = feeds_for(batch=1)
    feeds["input_ids"] = feeds["input_ids"] % 7  # small enough for float16
    feeds["pixel_values"] = np.ones_like(feeds["pixel_values"])
    with TensorRTRunner.load(tmp_path / "model.plan", settings=settings_for(record, spec)) as r:
        logits = r.run(feeds)
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, expected_logits(feeds, 3), rtol=1e-3)


def test_runner_refuses_another_tensorrt_version(trt_stub, tmp_path):
    trt_stub(version="10.3.0.30")
    engine, record, spec = build(tmp_path)
    trt_stub(version="10.3.0.26")
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(engine, settings=settings_for(record, spec))
    one_line(error, "TensorRT 10.3.0.30", "TensorRT 10.3.0.26", "model.plan")


def test_runner_refuses_another_gpu(trt_stub, tmp_path):
    trt_stub(gpu="Orin")
    engine, record, spec = build(tmp_path)
    stub = trt_stub(gpu="NVIDIA GeForce RTX 3060", cc=(8, 7))
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(engine, settings=settings_for(record, spec))
    one_line(error, "GPU Orin", "GPU NVIDIA GeForce RTX 3060")
    assert stub.named("runtime.deserialize_cuda_engine") == []


def test_runner_refuses_another_compute_capability(trt_stub, tmp_path):
    trt_stub(cc=(8, 7))
    engine, record, spec = build(tmp_path)
    trt_stub(cc=(8, 6))
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(engine, settings=settings_for(record, spec))
    one_line(error, "compute capability 8.7", "compute capability 8.6")


def test_shape_beyond_the_max_is_an_input_error(trt_stub, tmp_path):
    trt_stub()
    engine, record, spec = build(tmp_path)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        with pytest.raises(InputError) as error:
            runner.run(feeds_for(batch=5))
        one_line(error, "input_ids", "5x40", "4x40")
        with pytest.raises(InputError) as error:
            runner.run(feeds_for(batch=1, height=96))
        one_line(error, "pixel_values", "1x3x96x64", "4x3x64x64")
        feeds = feeds_for(batch=1)
        feeds["input_ids"] = feeds["input_ids"][0]
        with pytest.raises(InputError) as error:
            runner.run(feeds)
        one_line(error, "input_ids")


def test_shape_below_the_profile_is_an_input_error(trt_stub, tmp_path):
    trt_stub()
    engine, record, spec = build(tmp_path)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        with pytest.raises(InputError) as error:
            runner.run(feeds_for(batch=1, height=16))  # the profile's min is 32
        one_line(error, "pixel_values", "outside")


def test_missing_input_is_a_bundle_error(trt_stub, tmp_path):
    trt_stub()
    engine, record, spec = build(tmp_path)
    feeds = feeds_for()
    del feeds["token_type_ids"]
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        with pytest.raises(BundleError) as error:
            runner.run(feeds)
    one_line(error, "token_type_ids")


def test_missing_tensorrt(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorrt", None)
    (tmp_path / "model.plan").write_bytes(b"engine")
    with pytest.raises(BundleError) as error:
        get_runner("tensorrt").load(tmp_path / "model.plan")
    assert str(error.value) == NOT_INSTALLED
    one_line(error, "not installed", "JetPack")


def test_missing_engine_file(trt_stub, tmp_path):
    trt_stub()
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(tmp_path / "model.plan")
    one_line(error, "model.plan", "not found")


def test_engine_tensorrt_cannot_load(trt_stub, tmp_path):
    stub = trt_stub()
    (tmp_path / "model.plan").write_bytes(b"not an engine")
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(tmp_path / "model.plan", settings={"tensorrt_version": "10.3.0.30"})
    one_line(error, "cannot load this engine", "Serialization assertion failed")
    assert stub.live_allocations() == 0


def test_no_gpu(trt_stub, tmp_path):
    trt_stub(device_count=0)
    (tmp_path / "model.plan").write_bytes(b"engine")
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(tmp_path / "model.plan")
    one_line(error, "CUDA GPU")


def test_missing_max_shapes_for_dynamic_inputs(trt_stub, tmp_path):
    stub = trt_stub()
    engine, record, spec = build(tmp_path)
    settings = settings_for(record, spec)
    del settings["max_shapes"]["pixel_values"]
    with pytest.raises(BundleError) as error:
        TensorRTRunner.load(engine, settings=settings)
    one_line(error, "max_shapes", "pixel_values")
    assert stub.live_allocations() == 0


def test_close_frees_buffers_and_stream(trt_stub, tmp_path):
    stub = trt_stub()
    engine, record, spec = build(tmp_path)
    runner = TensorRTRunner.load(engine, settings=settings_for(record, spec))
    runner.run(feeds_for())
    pointers = set(stub.allocations)
    assert len(pointers) == 5 and len(stub.streams) == 1
    runner.close()
    assert stub.live_allocations() == 0 and set(stub.freed) == pointers
    assert stub.streams == {} and len(stub.destroyed_streams) == 1
    runner.close()  # twice is harmless
    assert len(stub.freed) == 5
    with pytest.raises(RuntimeError):
        runner.run(feeds_for())


def test_context_manager_closes(trt_stub, tmp_path):
    stub = trt_stub()
    engine, record, spec = build(tmp_path)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)):
        assert stub.live_allocations() == 5
    assert stub.live_allocations() == 0 and stub.streams == {}


def test_bad_threads(trt_stub, tmp_path):
    trt_stub()
    with pytest.raises(InputError):
        TensorRTRunner.load(tmp_path / "model.plan", threads=0)


def test_registry_knows_tensorrt_without_importing_it():
    assert get_runner("tensorrt") is TensorRTRunner
    code = (
        "import sys, vilt_edge.runtimes, vilt_edge.compile.tensorrt; "
        "assert 'tensorrt' not in sys.modules and 'cuda' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


# --- checked statically: every TensorRT name is documented -------------------------------

# Variables (or self._ attributes) holding TensorRT objects, by the class their members belong to.
OWNERS = {
    "builder": "Builder",
    "config": "IBuilderConfig",
    "network": "INetworkDefinition",
    "tensor": "ITensor",
    "parser": "OnnxParser",
    "parser_error": "ParserError",
    "profile": "IOptimizationProfile",
    "timing_cache": "ITimingCache",
    "runtime": "Runtime",
    "engine": "ICudaEngine",
    "context": "IExecutionContext",
    "props": "cudaDeviceProp",
}


def _chain(node: ast.expr) -> tuple[str | None, list[str]]:
    """`trt.BuilderFlag.FP16` -> ("trt", ["BuilderFlag", "FP16"]); `self._engine.x` ->
    ("engine", ["x"])."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        if isinstance(node.value, ast.Name) and node.value.id == "self":
            return node.attr.lstrip("_"), parts[::-1]
        parts.append(node.attr)
        node = node.value
    return (node.id if isinstance(node, ast.Name) else None), parts[::-1]


def api_names(source: str) -> set[str]:
    """The TensorRT / cuda-python names a module uses: attribute chains rooted at the tensorrt
    module ("trt.BuilderFlag.FP16") or cudart, members of TensorRT objects ("ICudaEngine.
    get_tensor_name") and methods overridden in subclasses of TensorRT classes ("ILogger.log")."""
    tree = ast.parse(source)
    roots = {"trt": "trt", "cudart": "cudart"}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name == "tensorrt":
                    roots[alias.asname or alias.name] = "trt"
        elif isinstance(node, ast.ImportFrom) and node.module in ("cuda", "cuda.bindings"):
            for alias in node.names:
                if alias.name in ("cudart", "runtime"):
                    roots[alias.asname or alias.name] = "cudart"
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and not isinstance(parents.get(node), ast.Attribute):
            base, parts = _chain(node)
            if base in roots:
                kept = []
                for part in parts:  # stop at dunders: trt.ILogger.__init__ -> trt.ILogger
                    if part.startswith("__") and part != "__version__":
                        break
                    kept.append(part)
                if kept:
                    names.add(".".join([roots[base], *kept]))
            elif base in OWNERS and parts:
                names.add(f"{OWNERS[base]}.{parts[0]}")
        elif isinstance(node, ast.ClassDef):
            for base_node in node.bases:
                base, parts = _chain(base_node)
                if base in roots and parts:
                    for item in node.body:
                        if isinstance(item, ast.FunctionDef) and not item.name.startswith("__"):
                            names.add(f"{parts[-1]}.{item.name}")
    return names


def plan_names(version: str) -> set[str]:
    """The flag names the builder reaches with getattr for `version`, every precision, DLA."""
    names = set()
    for precision in ("fp32", "fp16", "int8"):
        for dla in (False, True):
            try:
                plan = build_plan(version, precision, dla)
            except InputError:
                continue
            names |= {f"trt.NetworkDefinitionCreationFlag.{f}" for f in plan.network_flags}
            names |= {f"trt.BuilderFlag.{f}" for f in plan.builder_flags}
    return names


def in_surface(name: str, surface: dict) -> bool:
    """Whether the real `tensorrt` of `surface` has `name` ("trt.A.B" or "Class.member")."""
    parts = name.split(".")
    if parts[0] != "trt":
        return parts[1] in surface["classes"].get(parts[0], ())
    if parts[1] == "__version__":
        return True
    if parts[1] not in surface["module"]:
        return False
    if len(parts) == 2:
        return True
    if len(parts) == 3:
        members = surface["enums"].get(parts[1], []) + surface["classes"].get(parts[1], [])
        return parts[2] in members
    return parts[3] in surface["nested"].get(f"{parts[1]}.{parts[2]}", ())


def used_names() -> set[str]:
    return set().union(*(api_names(path.read_text()) for path in MODULES))


@pytest.mark.parametrize("version", VERSIONS)
def test_every_tensorrt_name_used_is_in_each_versions_real_surface(trt_stub, version):
    surface = trt_stub(version=version).surface
    used = {n for n in used_names() if not n.startswith(("cudart", "cudaDeviceProp"))}
    used |= plan_names(version)
    missing = sorted(n for n in used if not in_surface(n, surface))
    assert missing == [], f"not in TensorRT {surface['version']}: {missing}"


def test_a_name_a_version_lacks_is_caught():
    surface = load_surface("11.4.0.106")
    assert not in_surface("trt.BuilderFlag.FP16", surface)
    assert not in_surface("Builder.platform_has_fast_fp16", surface)
    assert in_surface("trt.BuilderFlag.FP16", load_surface("10.3.0.30"))
    assert in_surface("IExecutionContext.execute_async_v3", surface)


def test_every_tensorrt_name_used_has_its_docs():
    """tensorrt_api.json keeps what the surfaces cannot give: each name's documentation."""
    used = used_names() | set().union(*(plan_names(v) for v in VERSIONS))
    listed = set(API["tensorrt"]) | set(API["cudart"])
    assert used - listed == set(), f"no docs in tensorrt_api.json: {sorted(used - listed)}"
    assert listed - used == set(), f"documented but unused: {sorted(listed - used)}"


def test_api_list_names_docs_for_its_versions():
    for name, entry in API["tensorrt"].items():
        assert set(entry["versions"]) <= {"8.5", "10.x"} and entry["versions"], name
        assert set(entry["docs"]) == set(entry["versions"]), name
        if "8.5" in entry["docs"]:
            assert entry["docs"]["8.5"].startswith(
                "https://docs.nvidia.com/deeplearning/tensorrt/archives/tensorrt-853/"
            ), name
        if "10.x" in entry["docs"]:
            assert entry["docs"]["10.x"].startswith(
                "https://docs.nvidia.com/deeplearning/tensorrt/10."
            ), name
    for name, entry in API["cudart"].items():
        assert entry["docs"].startswith("https://nvidia.github.io/cuda-python/"), name


def test_the_static_check_catches_misspellings():
    source = (
        "import tensorrt as trt\n"
        "def f(engine, config):\n"
        "    config.set_flag(trt.BuilderFlag.FP61)\n"
        "    return engine.get_tensor_nme(0)\n"
    )
    names = api_names(source)
    assert "trt.BuilderFlag.FP61" in names and "ICudaEngine.get_tensor_nme" in names
    surface = load_surface("10.3.0.30")
    assert not in_surface("trt.BuilderFlag.FP61", surface)
    assert not in_surface("ICudaEngine.get_tensor_nme", surface)


@pytest.mark.parametrize("version", VERSIONS)
def test_the_fake_exposes_only_the_real_names(trt_stub, version):
    stub = trt_stub(version=version)
    allowed = surface_allowed(stub.surface)
    exposed = {n for n in vars(stub.trt) if not n.startswith("_") or n == "__version__"}
    assert exposed <= allowed["trt"]
    for name in exposed:
        value = getattr(stub.trt, name)
        if isinstance(value, type) and issubclass(value, int):  # an enum
            assert set(value.__members__) <= allowed[f"trt.{name}"], name
    for cls in stub.trt._classes:
        defined = {n for n in vars(cls) if not n.startswith("_")}
        assert cls._api in stub.surface["classes"], cls._api
        assert defined <= cls._allowed.get(cls._api, set()), (cls._api, defined)
    for cls in stub.cudart._classes:
        defined = {n for n in vars(cls) if not n.startswith("_")}
        assert defined <= cls._allowed.get(cls._api, set()), (cls._api, defined)
    cudart_exposed = {name for name in vars(stub.cudart) if not name.startswith("_")}
    assert cudart_exposed == {
        key.split(".")[1] for key in API["cudart"] if key.startswith("cudart.")
    }  # every call the runner makes, each in the real cuda-python runtime


@pytest.mark.parametrize("version", ["12.9.10", "13.5.0"])
def test_every_cuda_python_name_used_is_in_the_real_runtime(version):
    """cuda-python imports without a GPU, so its real `cuda.bindings.runtime` was read
    (scripts/cudart_surface.py): every runtime call, enum member and device property the
    TensorRT runner uses exists in 12.9 (CUDA 12, JetPack 6) and 13.x (CUDA 13, JetPack 7)."""
    allowed = cudart_allowed(version)
    used = {n for n in used_names() if n.startswith(("cudart", "cudaDeviceProp"))}
    missing = []
    for name in sorted(used):
        owner, _, member = name.rpartition(".")
        if member not in allowed.get(owner, ()):
            missing.append(name)
    assert used and missing == [], f"not in cuda-python {version}: {missing}"


# --- the build plan, version by version -----------------------------------------------------


@pytest.mark.parametrize(
    ("version", "dla"),
    [("8.5.2.2", True), ("10.3.0.30", True), ("10.7.0", True), ("10.8.0", False),
     ("10.13.3.9", False), ("11.3.0", False), ("11.4.0.106", False), ("11.4.1", True)],
)  # fmt: skip
def test_dla_support_by_release(version, dla):
    assert dla_supported(version) == dla


def test_plans_are_checked_against_the_versions_real_api():
    assert check_plan(build_plan("8.5.2.2", "int8")) == "8.6.1"
    assert check_plan(build_plan("10.3", "fp16")) == "10.3.0"
    assert check_plan(build_plan("10.15", "int8")) == "10.15.1.29"  # cuda-gpu's
    assert check_plan(build_plan("10.16", "fp16")) == "10.16.1.11"  # JetPack 7.2's
    assert check_plan(build_plan("10.14", "fp16")) == "10.13.3.9"  # no 10.14 surface: the nearest
    assert check_plan(build_plan("11.4.0.106", "fp16")) == "11.4.0.106"
    weak_on_11 = dataclasses.replace(build_plan("11.4.0.106", "fp16"), builder_flags=("FP16",))
    with pytest.raises(InputError, match="TensorRT 11.4.0.106 has no BuilderFlag.FP16"):
        check_plan(weak_on_11)


def test_build_plans_say_what_each_version_does():
    weak = build_plan("8.5.2.2", "int8")
    assert not weak.strongly_typed and weak.builder_flags == ("INT8", "FP16")
    assert "weakly typed" in weak.describe()
    typed = build_plan("10.3.0.30", "fp16", dla=True)
    assert typed.strongly_typed and typed.builder_flags == ("GPU_FALLBACK",)
    assert "strongly typed: FP16 as the graph types it" in typed.describe()
    assert "DLA" in typed.describe()
    assert build_plan("11.4.0.106", "int8").network_flags == ()
    with pytest.raises(InputError, match="an FP32 bundle has nothing for it"):
        build_plan("10.3.0.30", "fp32", dla=True)
    with pytest.raises(InputError, match="TensorRT 10.13.3.9 has no DLA support"):
        build_plan("10.13.3.9", "int8", dla=True)


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("precision", ["fp16", "int8"])
def test_build_then_run_against_each_versions_real_surface(trt_stub, tmp_path, version, precision):
    """The whole path, builder then runner, with the fake exposing only `version`'s names:
    strongly typed FP16 and INT8 engines on 10.x and 11.x, weakly typed ones on 8.x."""
    trt_stub(version=version)
    engine, record, spec = build(tmp_path, precision)
    feeds = feeds_for(batch=2)
    with TensorRTRunner.load(engine, settings=settings_for(record, spec)) as runner:
        np.testing.assert_allclose(runner.run(feeds), expected_logits(feeds, 7), rtol=1e-5)
        assert runner.describe()["version"] == version

"""What a user could run instead of vilt-edge on a CPU, and start-up times; shared by
`cpu_precisions.py` and `cpu_openvino_check.py`.

- `openvino_call`: a model compiled by OpenVINO for this CPU, at its default precision unless
  told (BF16 on AMX hosts, FP32 elsewhere);
- `nncf_int8`: NNCF's post-training INT8 of the FP32 graph with its transformer preset;
- `first_answer_ms`: a fresh process that loads a bundle and answers once (cold or warm model
  cache), the time a robot waits at boot.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def openvino_call(model, feeds: dict, threads: int, precision: str | None = "f32"):
    """One compiled OpenVINO model's inference on `feeds`, as a no-argument callable;
    `precision` None keeps OpenVINO's default inference precision for this CPU."""
    import openvino

    core = openvino.Core()
    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    compiled = core.compile_model(model, "CPU", config)
    names = {port.get_any_name() for port in compiled.inputs}
    request = compiled.create_infer_request()
    feeds = {name: value for name, value in feeds.items() if name in names}
    return lambda: request.infer(feeds)


def openvino_default_precision() -> str:
    """What OpenVINO computes float parts in here by default (bf16 on AMX hosts)."""
    import openvino

    return str(openvino.Core().get_property("CPU", "INFERENCE_PRECISION_HINT"))


def random_pixels(feeds: dict):
    """`feeds_for(seed)`: `feeds` with uniform random pixels, NNCF's calibration samples."""
    rng = np.random.default_rng(0)

    def feeds_for(seed: int) -> dict:
        shape = feeds["pixel_values"].shape
        return {**feeds, "pixel_values": rng.uniform(-1, 1, shape).astype(np.float32)}

    return feeds_for


def users_cpu_bundle(fp32: Path, work: Path, threads: int) -> tuple[Path, Path]:
    """The CPU bundle as a user makes it: `quantize --precision int8 --target cpu` (static,
    calibrated on 16 easy-VQA training examples), then `compile --target cpu`; (quantized,
    compiled) bundle folders."""
    from vilt_edge.compile import CompileOptions, compile_bundle
    from vilt_edge.quantize import QuantizeOptions, quantize_bundle

    print("making the CPU bundle as a user does (quantize, compile --target cpu) ...",
          file=sys.stderr)  # fmt: skip
    options = QuantizeOptions(precision="int8", calib="easy-vqa:train", calib_size=16,
                              threads=threads)  # fmt: skip
    quantized = quantize_bundle(fp32, work / "users-int8", options).bundle.path
    users = compile_bundle(quantized, work / "users", CompileOptions(target="cpu"))
    return quantized, users.bundle.path


def nncf_int8(fp32_onnx: Path, feeds_for, out: Path) -> Path:
    """NNCF's post-training INT8 of the FP32 graph with its transformer preset."""
    import nncf
    import openvino

    model = openvino.Core().read_model(fp32_onnx)
    names = {port.get_any_name() for port in model.inputs}
    samples = [{k: v for k, v in feeds_for(seed).items() if k in names} for seed in range(16)]
    quantized = nncf.quantize(
        model,
        nncf.Dataset(samples),
        model_type=nncf.ModelType.TRANSFORMER,
        subset_size=len(samples),
    )
    out.mkdir(parents=True, exist_ok=True)
    openvino.save_model(quantized, out / "model.xml")
    return out / "model.xml"


_FIRST_ANSWER = """
import json, sys, time
started = time.perf_counter()
import numpy as np
bundle, runtime_name, settings, threads, height, width = sys.argv[1:7]
if runtime_name == "bundle":  # what an app does: ViltRuntime, as the bundle was compiled
    from vilt_edge.bench import synthetic_feeds
    from vilt_edge.runtime import ViltRuntime
    runtime = ViltRuntime.load(bundle, threads=int(threads))
    feeds = synthetic_feeds(runtime, (int(height), int(width)), 40, 1)
    runner = runtime.runner
else:  # the bundle's graph, verified, on another runner
    from vilt_edge.bundle import load_bundle
    from vilt_edge.runtimes import get_runner
    path = load_bundle(bundle).model_path
    runner = get_runner(runtime_name).load(path, int(threads), json.loads(settings))
    feeds = {"input_ids": np.full((1, 40), 7, np.int64),
             "attention_mask": np.ones((1, 40), np.int64),
             "pixel_values": np.zeros((1, 3, int(height), int(width)), np.float32)}
runner.run(feeds)
print(json.dumps({"ms": (time.perf_counter() - started) * 1000}))
"""


def first_answer_ms(
    bundle: Path,
    cache: Path,
    threads: int,
    height: int,
    width: int,
    runtime: str = "bundle",
    settings: dict | None = None,
) -> float:
    """Load `bundle` in a fresh process and answer once: milliseconds from the first vilt-edge
    import to the answer (`runtime` other than "bundle" runs its graph on that runner, with
    `settings`); `cache` is the process's vilt-edge cache (OpenVINO's model cache lives there)."""
    import os

    env = {**os.environ, "VILT_EDGE_CACHE": str(cache)}
    args = [bundle, runtime, json.dumps(settings or {}), threads, height, width]
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", _FIRST_ANSWER, *map(str, args)],
        capture_output=True, text=True, check=True, cwd=ROOT, env=env,
    )  # fmt: skip
    wall = (time.perf_counter() - started) * 1000
    measured = json.loads(done.stdout.strip().splitlines()[-1])["ms"]
    return min(measured, wall)

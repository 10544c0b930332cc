"""ONNX Runtime's OpenVINO execution provider beside OpenVINO used directly, on the same graphs.

    python -m venv /tmp/ovep && /tmp/ovep/bin/pip install onnxruntime-openvino numpy
    python benchmarks/cpu_openvino_ep.py --ep-python /tmp/ovep/bin/python [--threads 2]

Issue 18 asks which of the two runs vilt-edge's CPU bundles faster, per target. The plugin
provider vilt-edge uses (`onnxruntime-ep-openvino`, the `openvino` extra) lists no device on AMD
CPUs, so where it cannot run this script also measures the same provider as built into
`onnxruntime-openvino` (a separate ONNX Runtime build that replaces `onnxruntime`, hence its own
Python): the same OpenVINO EP code, registered the classic way. Rows, ViLT-B/32 with random
weights (384x512, 40 tokens, batch 1), each at FP32 and BF16 inference precision (BF16 only
where the CPU has it):

- the FP32 graph;
- the x86-openvino / x86-amx layout (symmetric Q/DQ on MatMul inputs, calibrated on 16 easy-VQA
  training examples);
- the same with attention's two activation products in float (the x86-amx-float-attention
  preset, quantized for a device profile naming it), the lead an AMX host is to decide;
- the TensorRT layout (the same, plus the patch projection's Conv, were it a Conv).

Each runtime runs in its own fresh process per round (the two ONNX Runtime builds cannot share
one), every graph compiled before timing; the processes take turns for `--rounds` rounds, so a
slow spell falls on both. p50 and p90 of all rounds' calls.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

_WORKER = """
import json, sys, time
import numpy as np
mode, graphs, feeds_path, threads, runs, precisions = sys.argv[1:7]
graphs, threads, runs = json.loads(graphs), int(threads), int(runs)
feeds = dict(np.load(feeds_path))
config = lambda p: {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
                    "INFERENCE_PRECISION_HINT": p}
calls = {}
for name, path in graphs.items():
    for precision in precisions.split(","):
        if mode == "direct":
            import openvino
            compiled = openvino.Core().compile_model(path, "CPU", config(precision))
            request = compiled.create_infer_request()
            names = {p.get_any_name() for p in compiled.inputs}
            mine = {k: v for k, v in feeds.items() if k in names}
            calls[f"{name} {precision}"] = lambda r=request, f=mine: r.infer(f)
            continue
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.log_severity_level = 3
        ep = {"device_type": "CPU", "num_of_threads": str(threads),
              "load_config": json.dumps({"CPU": {"INFERENCE_PRECISION_HINT": precision,
                                                 "PERFORMANCE_HINT": "LATENCY"}})}
        if mode == "plugin":  # vilt-edge's own runner, as a compiled x86-amx bundle runs
            from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner
            runner = OnnxRuntimeRunner(path, threads, {"execution_provider": "openvino",
                                                       "inference_precision": precision})
            calls[f"{name} {precision}"] = lambda r=runner: r.run(feeds)
            continue
        session = ort.InferenceSession(path, options,
                                       providers=[("OpenVINOExecutionProvider", ep)])
        names = {i.name for i in session.get_inputs()}
        mine = {k: v for k, v in feeds.items() if k in names}
        calls[f"{name} {precision}"] = lambda s=session, f=mine: s.run(None, f)
times = {}
for name, call in calls.items():
    time.sleep(0.3)
    for _ in range(2):
        call()
    times[name] = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        times[name].append((time.perf_counter() - started) * 1000)
print(json.dumps(times))
"""


def plugin_runs_here() -> str | None:
    """None where vilt-edge's plugin provider offers a device here, else why not (one line)."""
    try:
        import onnxruntime

        from vilt_edge.runtimes.openvino import openvino_ep_devices

        openvino_ep_devices(onnxruntime)
    except Exception as error:  # noqa: BLE001 - the reason is what is reported
        return str(error).splitlines()[0]
    return None


def float_attention_target(folder: Path) -> str:
    """A device profile like x86-amx naming the x86-amx-float-attention preset, in `folder`
    (added to $VILT_EDGE_DEVICES); returns its name."""
    import os

    from vilt_edge.devices.profiles import EXTRA_DIRS_ENV, PROFILE_DIR

    name = "x86-amx-float-attention"
    text = (PROFILE_DIR / "x86-amx.toml").read_text()
    text = text.replace('name = "x86-amx"', f'name = "{name}"')
    text = text.replace('quantize_preset = "x86-amx"', f'quantize_preset = "{name}"')
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{name}.toml").write_text(text)
    os.environ[EXTRA_DIRS_ENV] = os.pathsep.join(
        part for part in (os.environ.get(EXTRA_DIRS_ENV, ""), str(folder)) if part
    )
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ep-python", help="a Python with onnxruntime-openvino installed")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=10, help="timed calls per row and round")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    from cpu_precisions import b32_directory, host_family

    from vilt_edge.bench import synthetic_feeds
    from vilt_edge.devices import usable_cpu_flags
    from vilt_edge.devices.host import describe_machine, machine_description
    from vilt_edge.model.export import export_bundle
    from vilt_edge.quantize import QuantizeOptions, quantize_bundle
    from vilt_edge.runtime import ViltRuntime

    precisions = "f32,bf16" if {"amx_bf16", "avx512_bf16"} & usable_cpu_flags() else "f32"
    modes = {"OpenVINO directly": (sys.executable, "direct")}
    why_not = plugin_runs_here()
    if why_not is None:
        modes["ORT + OpenVINO EP (plugin, vilt-edge's)"] = (sys.executable, "plugin")
    else:
        print(f"plugin provider left out: {why_not}", file=sys.stderr)
    if args.ep_python:
        modes["ORT + OpenVINO EP (onnxruntime-openvino)"] = (args.ep_python, "builtin")
    with tempfile.TemporaryDirectory(prefix="vilt-edge-ep-") as temp:
        work = Path(temp)
        print("building and exporting ViLT-B/32 (random weights) ...", file=sys.stderr)
        fp32 = export_bundle(b32_directory(work / "hf"), work / "fp32").path
        calib = dict(calib="easy-vqa:train", calib_size=16, threads=args.threads)
        graphs = {"FP32 graph": str(fp32 / "model.onnx")}
        layouts = [
            ("x86-amx layout", "x86-amx"),
            ("x86-amx layout, float attention", float_attention_target(work / "devices")),
            ("TensorRT layout", "jetson-orin-nano"),
        ]
        for name, target in layouts:
            print(f"quantizing: {name} ...", file=sys.stderr)
            options = QuantizeOptions(precision="int8", target=target, **calib)
            bundle = quantize_bundle(fp32, work / target, options).bundle
            graphs[name] = str(bundle.model_path)
        runtime = ViltRuntime.load(fp32, threads=1)
        np.savez(work / "feeds.npz", **synthetic_feeds(runtime, (384, 512), 40, 1))
        runtime.close()
        times: dict[str, list[float]] = {}
        for round_index in range(args.rounds):
            for label, (python, mode) in modes.items():
                print(f"  round {round_index + 1}/{args.rounds}: {label}", file=sys.stderr)
                done = subprocess.run(
                    [python, "-c", _WORKER, mode, json.dumps(graphs), str(work / "feeds.npz"),
                     str(args.threads), str(args.runs), precisions],
                    capture_output=True, text=True, cwd=ROOT,
                )  # fmt: skip
                if done.returncode != 0:
                    sys.exit(f"{label} failed: {done.stderr.strip().splitlines()[-1]}")
                for row, values in json.loads(done.stdout.strip().splitlines()[-1]).items():
                    times.setdefault(f"{label}: {row}", []).extend(values)

    print(f"\nViLT-B/32, 384x512, 40 tokens, batch 1, {args.threads} threads, "
          f"{args.rounds} rounds x {args.runs} calls")  # fmt: skip
    print(f"machine: {describe_machine(machine_description())}")
    print(f"host ISA family: {host_family()}\n")
    width = max(len(name) for name in times)
    print(f"| {'runtime: graph, inference precision':<{width}} | p50 ms | p90 ms |")
    print(f"|{'-' * (width + 2)}|--------|--------|")
    for name, values in times.items():
        p50, p90 = statistics.median(values), float(np.percentile(values, 90))
        print(f"| {name:<{width}} | {p50:6.1f} | {p90:6.1f} |")
    direct = {k.split(": ", 1)[1]: statistics.median(v) for k, v in times.items()
              if k.startswith("OpenVINO directly")}  # fmt: skip
    for name, values in times.items():
        label, row = name.split(": ", 1)
        if not label.startswith("OpenVINO directly") and row in direct:
            print(f"  {label} / directly, {row}: {statistics.median(values) / direct[row]:.2f}x")


if __name__ == "__main__":
    main()

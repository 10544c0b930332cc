"""Where the time goes: the user's CPU bundle against the best INT8 peer, op by op, on OpenVINO.

    python benchmarks/cpu_openvino_profile.py [--threads 2] [--rounds 6] [--calls 10]

Issue 18 asks vilt-edge's CPU bundle to run >= 1.1x faster than the best peer row on a host
without AMX (>= 1.25x with AMX). On AVX-512 VNNI hosts both the bundle (`quantize --precision
int8 --target cpu`, then `compile --target cpu`: the x86-openvino layout on OpenVINO) and the
best peer (NNCF's INT8, transformer preset, on OpenVINO, over the same FP32 export) run on
OpenVINO's CPU plugin. This script shows whether the difference between them lies in the GEMMs,
in the attention, or elsewhere: both compiled with OpenVINO's `PERF_COUNT`, called in turn
(`--rounds` rounds of `--calls` calls, so a slow spell of a shared machine falls on both), and
each node's median time summed by class:

- INT8 FullyConnected layers by weight shape, with the rate they reach (TOP/s) beside this
  machine's INT8 GEMM ceiling (`vilt_edge.devices.roofline.measure_ceilings`, best installed
  runtime, 1024^3), measured in the same run;
- OpenVINO's fused subgraphs (its attention, and runs of elementwise ops), transposes, and the
  rest;
- wall-clock p50 with profiling off, measured in the same rounds.

The kernel names (`brgemm_avx512_i8`, `brgemm_avx512_amx_i8`, ...) say which ISA each runtime
used. ViLT-B/32 with random weights (latency does not depend on the values), one 384x512 image,
40 text tokens, batch 1. Needs the model, quantize, easyvqa and openvino extras and `pip install
nncf`.
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

BUNDLE = "vilt-edge CPU bundle"
PEER = "NNCF INT8 (peer)"


def compiled(model: Path, threads: int, precision: str | None, profile: bool):
    """The model compiled as the runner compiles it (precision None: OpenVINO's default, as
    the peer runs), with PERF_COUNT on or off."""
    import openvino

    config = {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY",
              "PERF_COUNT": profile}  # fmt: skip
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return openvino.Core().compile_model(str(model), "CPU", config)


def classify(node_type: str, exec_type: str) -> str:
    if "FullyConnected" in node_type:
        return f"FullyConnected ({exec_type})"
    if node_type == "Subgraph":
        return f"fused subgraphs ({exec_type})"
    if node_type == "Transpose":
        return "Transpose"
    if node_type in ("MVN", "FakeQuantize", "Gather"):
        return node_type
    return "everything else"


def node_shapes(compiled_model) -> dict[str, tuple[str, int]]:
    """FullyConnected node name -> (weight shape, multiply-accumulates at the profiled call)."""
    found = {}
    for op in compiled_model.get_runtime_model().get_ordered_ops():
        info = {key: value.astype(str) for key, value in op.get_rt_info().items()}
        if info.get("layerType") != "FullyConnected" or op.get_input_size() < 2:
            continue
        weight = op.input(1).get_partial_shape()
        out = op.output(0).get_partial_shape()
        if not (weight.is_static and out.is_static):
            continue
        rows = int(np.prod([d.get_length() for d in out][:-1]))
        found[op.get_friendly_name()] = (
            str(weight),
            rows * weight[0].get_length() * weight[1].get_length(),
        )
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--calls", type=int, default=10, help="timed calls per round")
    parser.add_argument("--image-size", default="384x512")
    args = parser.parse_args()
    height, width = (int(v) for v in args.image_size.lower().split("x"))

    from cpu_peers import nncf_int8, random_pixels, users_cpu_bundle
    from cpu_precisions import b32_directory

    from vilt_edge.bench import synthetic_feeds
    from vilt_edge.bundle import load_bundle
    from vilt_edge.devices.host import describe_machine, machine_description
    from vilt_edge.devices.roofline import measure_ceilings
    from vilt_edge.model.export import export_bundle
    from vilt_edge.runtime import ViltRuntime

    with tempfile.TemporaryDirectory(prefix="vilt-edge-profile-") as temp:
        work = Path(temp)
        print("building ViLT-B/32 (random weights) and exporting it ...", file=sys.stderr)
        fp32 = export_bundle(b32_directory(work / "hf"), work / "fp32").path
        _, users = users_cpu_bundle(fp32, work, args.threads)
        manifest = load_bundle(users).manifest
        settings = manifest.runtime_settings.values if manifest.runtime_settings else {}
        precision = settings.get("inference_precision")  # recorded for OpenVINO, direct or EP
        if precision is None:
            raise SystemExit(
                f"the CPU bundle runs on {manifest.runtime} without OpenVINO on this host: this "
                "comparison is for hosts whose CPU preset runs on OpenVINO"
            )
        if settings.get("execution_provider"):
            print("the bundle runs through ONNX Runtime's OpenVINO provider; profiled here on "
                  "OpenVINO directly, at the precision it records", file=sys.stderr)  # fmt: skip
        runtime = ViltRuntime.load(fp32, threads=1)  # its tokenizer and manifest
        feeds = synthetic_feeds(runtime, (height, width), 40, 1)
        runtime.close()
        print("quantizing: NNCF INT8 (transformer preset) ...", file=sys.stderr)
        peer = nncf_int8(fp32 / "model.onnx", random_pixels(feeds), work / "nncf")
        models = {BUNDLE: (users / "model.onnx", precision), PEER: (peer, None)}
        ceilings = measure_ceilings(args.threads)

        requests = {}
        for name, (model, hint) in models.items():
            for profile in (False, True):
                c = compiled(model, args.threads, hint, profile)
                names = {port.get_any_name() for port in c.inputs}
                inputs = {k: v for k, v in feeds.items() if k in names}
                requests[name, profile] = (c, c.create_infer_request(), inputs)
        wall = {name: [] for name in models}
        per_node = {name: collections.defaultdict(list) for name in models}
        kinds: dict[str, dict[str, tuple[str, str]]] = {name: {} for name in models}
        for round_index in range(args.rounds):
            for name in models:
                print(f"  round {round_index + 1}/{args.rounds}: {name}", file=sys.stderr)
                for profile in (False, True):
                    _, request, inputs = requests[name, profile]
                    time.sleep(0.3)
                    for _ in range(2):
                        request.infer(inputs)
                    for _ in range(args.calls):
                        started = time.perf_counter()
                        request.infer(inputs)
                        elapsed = (time.perf_counter() - started) * 1000
                        if not profile:
                            wall[name].append(elapsed)
                            continue
                        for info in request.profiling_info:
                            if info.status.name != "EXECUTED":
                                continue
                            kinds[name][info.node_name] = (info.node_type, info.exec_type)
                            per_node[name][info.node_name].append(
                                info.real_time.total_seconds() * 1000
                            )
        shapes = {name: node_shapes(requests[name, True][0]) for name in models}

    print(f"\nViLT-B/32, {height}x{width} image, 40 tokens, batch 1, {args.threads} threads; "
          f"{args.rounds} rounds x {args.calls} calls per model, profiled and not")  # fmt: skip
    print(f"machine: {describe_machine(machine_description())}")
    print(f"INT8 GEMM ceiling here (best installed runtime, 1024^3): "
          f"{ceilings['int8'] / 1e12:.2f} TOP/s\n")  # fmt: skip
    medians = {name: {n: statistics.median(t) for n, t in nodes.items()}
               for name, nodes in per_node.items()}  # fmt: skip
    classes = {name: collections.Counter() for name in models}
    gemms = {name: collections.defaultdict(lambda: [0, 0.0, 0]) for name in models}
    for name in models:
        for node, ms in medians[name].items():
            node_type, exec_type = kinds[name][node]
            classes[name][classify(node_type, exec_type)] += ms
            if node in shapes[name]:
                weight, macs = shapes[name][node]
                entry = gemms[name][weight, exec_type]
                entry[0] += 1
                entry[1] += ms
                entry[2] += macs
    print(f"| {'class (kernel)':<44} | {BUNDLE + ' ms':>24} | {PEER + ' ms':>21} |")
    print(f"|{'-' * 46}|{'-' * 26}|{'-' * 23}|")
    for label in sorted(set(classes[BUNDLE]) | set(classes[PEER]),
                        key=lambda k: -(classes[BUNDLE][k] + classes[PEER][k])):  # fmt: skip
        print(f"| {label:<44} | {classes[BUNDLE][label]:24.2f} | {classes[PEER][label]:21.2f} |")
    totals = {name: sum(classes[name].values()) for name in models}
    print(f"| {'sum of profiled nodes':<44} | {totals[BUNDLE]:24.2f} | {totals[PEER]:21.2f} |")
    p50 = {name: statistics.median(times) for name, times in wall.items()}
    print(f"| {'wall-clock p50, profiling off':<44} | {p50[BUNDLE]:24.2f} | {p50[PEER]:21.2f} |")
    print(f"\nwall-clock ratio peer / bundle: {p50[PEER] / p50[BUNDLE]:.2f}x "
          f"(issue 18: >= 1.1x without AMX, >= 1.25x with)")  # fmt: skip

    print(
        "\nFullyConnected layers at the profiled call, by weight shape (out x in) and kernel "
        "(the rate is against the INT8 ceiling; the two M=1 head layers are memory-bound):"
    )
    print(f"| {'weight':<12} | {'kernel':<18} | {'model':<22} | {'nodes':>5} | {'ms':>7} | "
          f"{'TOP/s':>6} | {'of INT8 ceiling':>15} |")  # fmt: skip
    print(f"|{'-' * 14}|{'-' * 20}|{'-' * 24}|-------|---------|--------|{'-' * 17}|")
    keys = set(gemms[BUNDLE]) | set(gemms[PEER])
    for weight, kernel in sorted(keys, key=lambda k: (k[0], k[1])):
        for name in models:
            count, ms, macs = gemms[name][weight, kernel]
            if not count:
                continue
            rate = 2 * macs / (ms / 1000) / 1e12 if ms else 0.0
            print(f"| {weight:<12} | {kernel:<18} | {name:<22} | {count:5d} | {ms:7.2f} | "
                  f"{rate:6.2f} | {rate * 1e12 / ceilings['int8']:14.0%} |")  # fmt: skip


if __name__ == "__main__":
    main()

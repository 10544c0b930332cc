"""Cross-check of the CPU floor with a second runtime: OpenVINO with NNCF's transformer INT8.

    pip install openvino nncf      # not a vilt-edge dependency; only this script needs them
    python benchmarks/cpu_openvino_check.py [--threads 2] [--runs 36] [--text-len 40]

Is the gap between vilt-edge's INT8 bundle and the roofline floor (`cpu_precisions.py`) a matter
of vilt-edge's graph, or of what INT8 kernels reach on this machine? This script runs the same
exported ViLT-B/32 FP32 graph (384x512 image, random weights, batch 1) through Intel's own
runtime and quantizer, side by side with vilt-edge's CPU INT8 bundles in ONNX Runtime:

- vilt-edge INT8 dynamic and INT8 static (Q/DQ), in ONNX Runtime through vilt-edge's runtime;
- OpenVINO FP32: the FP32 ONNX graph, compiled by OpenVINO for this CPU;
- OpenVINO + NNCF INT8: `nncf.quantize(..., model_type=TRANSFORMER)` on that graph (NNCF's
  placement for transformers, attention products included), calibrated on 16 synthetic
  inputs (random weights: only latency means anything);
- OpenVINO running vilt-edge's static INT8 Q/DQ graph of the TensorRT preset (standard ONNX
  operators only, which OpenVINO's ONNX reader takes and runs in INT8).

Every variant is compiled first, then they take turns over `--rounds` rounds; p50 and p90 of
`--runs` calls each, `--threads` inference threads everywhere, OpenVINO with its LATENCY hint.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT.parent))

from cpu_peers import nncf_int8, openvino_call  # noqa: E402
from cpu_precisions import b32_directory, bundle_call, interleaved_times  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=36, help="timed calls per variant in all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--text-len", type=int, default=40)
    args = parser.parse_args()
    try:
        import nncf  # noqa: F401
        import openvino
    except ImportError:
        sys.exit("this check needs OpenVINO and NNCF: pip install openvino nncf")
    height, width = 384, 512

    from vilt_edge.bench import synthetic_feeds
    from vilt_edge.model.export import export_bundle
    from vilt_edge.quantize import QuantizeOptions, quantize_bundle
    from vilt_edge.runtime import ViltRuntime

    with tempfile.TemporaryDirectory(prefix="vilt-edge-ov-") as temp:
        work = Path(temp)
        print("building and exporting ViLT-B/32 (random weights) ...", file=sys.stderr)
        fp32 = export_bundle(b32_directory(work / "hf"), work / "fp32").path
        calib = dict(calib="easy-vqa:train", calib_size=16, threads=args.threads)
        bundles = {}
        for key, options in [
            ("dynamic", QuantizeOptions(precision="int8", mode="dynamic")),
            ("static", QuantizeOptions(precision="int8", **calib)),
            ("trt", QuantizeOptions(precision="int8", target="jetson-orin-nano", **calib)),
        ]:
            print(f"quantizing: vilt-edge INT8 {key} ...", file=sys.stderr)
            bundles[key] = quantize_bundle(fp32, work / key, options).bundle.path

        runtime = ViltRuntime.load(fp32, threads=1)  # for its tokenizer and manifest
        feeds = synthetic_feeds(runtime, (height, width), args.text_len, 1)
        runtime.close()
        rng = np.random.default_rng(0)

        def feeds_for(seed: int) -> dict:
            sample = dict(feeds)
            sample["pixel_values"] = rng.uniform(-1, 1, feeds["pixel_values"].shape).astype(
                np.float32
            )
            return sample

        print("quantizing: NNCF INT8 (transformer preset) ...", file=sys.stderr)
        nncf_model = nncf_int8(fp32 / "model.onnx", feeds_for, work / "nncf")

        print("compiling and loading every variant ...", file=sys.stderr)
        length = args.text_len
        calls = {
            "vilt-edge INT8 dynamic (ONNX Runtime)": bundle_call(
                bundles["dynamic"], height, width, args.threads, length
            ),
            "vilt-edge INT8 static (ONNX Runtime)": bundle_call(
                bundles["static"], height, width, args.threads, length
            ),
            "OpenVINO FP32": openvino_call(str(fp32 / "model.onnx"), feeds, args.threads),
            "OpenVINO + NNCF INT8 (transformer preset)": openvino_call(
                str(nncf_model), feeds, args.threads
            ),
            "OpenVINO, vilt-edge TensorRT-preset Q/DQ": openvino_call(
                str(bundles["trt"] / "model.onnx"), feeds, args.threads
            ),
        }
        times = interleaved_times(calls, args.runs, args.rounds)

    import onnxruntime

    print(
        f"\nViLT-B/32, {height}x{width}, {args.text_len} text tokens, batch 1, "
        f"{args.threads} threads; ONNX Runtime {onnxruntime.__version__}, "
        f"OpenVINO {openvino.__version__.split('-')[0]}\n"
    )
    reference = statistics.median(times["vilt-edge INT8 dynamic (ONNX Runtime)"])
    print(f"| {'variant':<44} | p50 ms | p90 ms | vs vilt-edge INT8 dynamic |")
    print(f"|{'-' * 46}|--------|--------|---------------------------|")
    for name, values in times.items():
        p50 = statistics.median(values)
        p90 = float(np.percentile(values, 90))
        print(f"| {name:<44} | {p50:6.1f} | {p90:6.1f} | {reference / p50:24.2f}x |")


if __name__ == "__main__":
    main()

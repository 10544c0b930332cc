"""Batch-1 GPU latency of ViLT-B/32: transformers eager against vilt-edge's torch-cuda runner.

    python benchmarks/gpu_torch_cuda.py [--runs 200] [--image-size 384x512] [--json OUT.json]

Run on a machine with a CUDA GPU (the lent H100/H200). ViLT-B/32 config with random weights
(latency does not depend on them), one image, 40 text tokens, batch 1, all rows in one run:

- transformers eager FP32 and FP16 (`ViltForQuestionAnswering`, as shipped);
- vilt-edge torch-cuda: the exact ViLT, SDPA attention, FP16, one CUDA graph replayed
  (`vilt_edge.runtimes.torch_cuda.TorchCudaRunner`, what `vilt-edge compile --target cuda-gpu`
  bundles run), timed end to end from numpy feeds to numpy logits;
- the same runner with `torch.compile` (max-autotune-no-cudagraphs) before graph capture.

Each row: median and p90 of `--runs` calls after 20 warm-up calls, synchronized. Parity: max abs
logit difference of each row against eager FP32 on the same inputs. Needs torch with CUDA,
transformers and safetensors (nothing else of vilt-edge's extras).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(call, runs: int, sync) -> list[float]:
    for _ in range(20):
        call()
    sync()
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        call()
        sync()
        times.append((time.perf_counter() - started) * 1000)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--image-size", default="384x512")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile row")
    args = parser.parse_args()
    height, width = (int(v) for v in args.image_size.split("x"))

    import torch
    from transformers import ViltConfig, ViltForQuestionAnswering

    from vilt_edge.runtimes.torch_cuda import TorchCudaRunner

    if not torch.cuda.is_available():
        sys.exit("error: no CUDA GPU visible; run this on the GPU machine")
    torch.manual_seed(0)
    labels = [f"answer {i}" for i in range(3129)]
    config = ViltConfig(num_labels=len(labels), id2label=dict(enumerate(labels)),
                        label2id={a: i for i, a in enumerate(labels)})  # fmt: skip
    model = ViltForQuestionAnswering(config).eval()
    rng = np.random.default_rng(0)
    feeds = {
        "input_ids": rng.integers(1000, 2000, (1, 40)).astype(np.int64),
        "attention_mask": np.ones((1, 40), np.int64),
        "pixel_values": rng.uniform(-1, 1, (1, 3, height, width)).astype(np.float32),
    }
    sync = torch.cuda.synchronize
    rows = []

    def eager(dtype):
        m = ViltForQuestionAnswering(config).eval()
        m.load_state_dict(model.state_dict())
        m = m.to("cuda", dtype)
        inputs = {
            "input_ids": torch.as_tensor(feeds["input_ids"], device="cuda"),
            "attention_mask": torch.as_tensor(feeds["attention_mask"], device="cuda"),
            "pixel_values": torch.as_tensor(feeds["pixel_values"], device="cuda").to(dtype),
            "pixel_mask": torch.ones(1, height, width, dtype=torch.long, device="cuda"),
        }

        def call():
            with torch.inference_mode():
                return m(**inputs).logits

        return call

    eager32 = eager(torch.float32)
    reference = eager32().float().cpu().numpy()
    rows.append(("transformers eager FP32", timed(eager32, args.runs, sync), reference))
    eager16 = eager(torch.float16)
    rows.append(("transformers eager FP16", timed(eager16, args.runs, sync),
                 eager16().float().cpu().numpy()))  # fmt: skip

    with tempfile.TemporaryDirectory() as temp:
        model.save_pretrained(temp)
        weights = Path(temp) / "model.safetensors"
        variants = [("vilt-edge torch-cuda FP16 + CUDA graph", None)]
        if not args.no_compile:
            variants.append(("vilt-edge torch-cuda + torch.compile + CUDA graph",
                             "max-autotune-no-cudagraphs"))  # fmt: skip
        for name, mode in variants:
            runner = TorchCudaRunner.load(weights, settings={"device": "cuda", "compile": mode})
            rows.append((name, timed(lambda r=runner: r.run(feeds), args.runs, sync),
                         runner.run(feeds)))  # fmt: skip
            runner.close()

    base = statistics.median(rows[0][1])
    print(f"\nViLT-B/32, {height}x{width}, 40 tokens, batch 1, {args.runs} runs, "
          f"{torch.cuda.get_device_name()}, torch {torch.__version__}\n")  # fmt: skip
    print("| variant | p50 ms | p90 ms | vs eager FP32 | max abs logit diff vs eager FP32 |")
    print("|---|---:|---:|---:|---:|")
    table = []
    for name, times, logits in rows:
        p50, p90 = statistics.median(times), float(np.percentile(times, 90))
        diff = float(np.abs(logits - reference).max())
        print(f"| {name} | {p50:.3f} | {p90:.3f} | {base / p50:.2f}x | {diff:.4f} |")
        table.append({"variant": name, "p50_ms": p50, "p90_ms": p90, "max_abs_diff": diff})
    if args.json:
        args.json.write_text(json.dumps(table, indent=2) + "\n")


if __name__ == "__main__":
    main()

"""Latency of a bundle's model on synthetic inputs of a chosen shape (torch-free).

    from vilt_edge.bench import bench
    from vilt_edge.runtime import ViltRuntime

    figures = bench(ViltRuntime.load("out/int8", threads=2), image_size=(384, 512), runs=50)
    figures["latency_ms"]["p50"], figures["throughput"]

Only the model runs (the runner's session call, timed by the runner; for NLVR2 both images of
each pair, at the given size, and the pair head): use `vilt-edge validate` for end-to-end
latency on real images. Inputs are random pixels and a question of `text_len`
tokens; the values do not change the work an ONNX model does, the shapes do. The bundle pads
text to its own text length, so `text_len` changes the attention mask, not the sequence length.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.errors import InputError
from vilt_edge.results import machine_description
from vilt_edge.validate import peak_rss_mb, percentiles


def parse_image_size(text: str) -> tuple[int, int]:
    """ "384x512" -> (384, 512): height x width."""
    height, sep, width = text.lower().partition("x")
    if not sep or not height.strip().isdigit() or not width.strip().isdigit():
        raise InputError(f"image size {text!r} is not HEIGHTxWIDTH, e.g. 384x512")
    return int(height), int(width)


def synthetic_feeds(
    runtime, image_size: tuple[int, int], text_len: int, batch: int, seed: int = 0
) -> dict[str, np.ndarray]:
    manifest = runtime.bundle.manifest
    height, width = image_size
    patch = manifest.patch_size
    if height < patch or width < patch or height % patch or width % patch:
        raise InputError(
            f"image size {height}x{width}: both sides must be positive multiples of the "
            f"bundle's patch size {patch}"
        )
    if not 2 <= text_len <= manifest.text_length:
        raise InputError(
            f"text length {text_len}: must be between 2 ([CLS] and [SEP]) and the bundle's "
            f"text length {manifest.text_length}"
        )
    if batch < 1:
        raise InputError("batch must be at least 1")
    rng = np.random.default_rng(seed)
    vocab = runtime.tokenizer.vocab_size
    input_ids = np.zeros((batch, manifest.text_length), dtype=np.int64)
    input_ids[:, :text_len] = rng.integers(0, vocab, size=(batch, text_len))
    attention_mask = np.zeros_like(input_ids)
    attention_mask[:, :text_len] = 1
    if runtime.runner.dynamic_text:  # as `ViltRuntime` feeds such a model
        from vilt_edge.runtime import trim_padding

        input_ids, attention_mask = trim_padding(input_ids, attention_mask)
    images = manifest.num_images
    # NLVR2: both images of a pair at this size, so the encoder takes them in one call (rows of
    # one pair side by side), as `ViltRuntime` batches same-size images.
    rows = batch * images
    pixels = rng.uniform(-1, 1, size=(rows, 3, height, width)).astype(np.float32)
    feeds = {
        "input_ids": np.repeat(input_ids, images, axis=0),
        "attention_mask": np.repeat(attention_mask, images, axis=0),
        "pixel_values": pixels,
    }
    if runtime.head is not None:
        feeds["image_token_type_ids"] = np.tile(np.arange(1, images + 1, dtype=np.int64), batch)
    return feeds


def _timed_call(runtime, feeds: dict[str, np.ndarray]) -> float:
    """One model call's milliseconds: the runner's own timing, plus the pair head's for NLVR2."""
    started = time.perf_counter()
    output = runtime.runner.run(feeds)
    elapsed = runtime.runner.last_inference_time_ms or (time.perf_counter() - started) * 1e3
    if runtime.head is not None:
        pooled = output.reshape(len(output) // runtime.manifest.num_images, -1)
        runtime.head.run({"pooled": pooled.astype(np.float32)})
        elapsed += runtime.head.last_inference_time_ms or 0.0
    return elapsed


def bench(
    runtime,
    image_size: tuple[int, int] | None = None,
    text_len: int | None = None,
    batch: int = 1,
    runs: int = 50,
    warmup: int = 5,
) -> dict[str, Any]:
    """Model latency percentiles over `runs` timed calls after `warmup` untimed ones."""
    if runs < 1:
        raise InputError("--runs must be at least 1")
    manifest = runtime.bundle.manifest
    if image_size is None:
        image_size = runtime.bundle.default_image_size
    text_len = manifest.text_length if text_len is None else text_len
    feeds = synthetic_feeds(runtime, image_size, text_len, batch)
    for _ in range(warmup):
        _timed_call(runtime, feeds)
    times = [_timed_call(runtime, feeds) for _ in range(runs)]
    latency = percentiles(times)
    runner = runtime.runner.describe()
    return {
        "bundle": str(runtime.bundle.path),
        "precision": manifest.precision,
        "runtime": manifest.runtime,
        "image_size": f"{image_size[0]}x{image_size[1]}",
        "text_len": text_len,
        "batch": batch,
        "runs": runs,
        "threads": runner.get("threads"),
        "latency_ms": latency,
        "mean_ms": round(float(np.mean(times)), 4),
        "throughput": round(batch * 1000 / float(np.mean(times)), 3),
        "peak_rss_mb": peak_rss_mb(),
        "machine": machine_description(),
    }


# What an app pays: a fresh interpreter that imports the runtime, loads the bundle and answers.
# VmHWM, not ru_maxrss: Linux carries ru_maxrss across fork and exec from the (larger) parent.
_DEPLOY_PROBE = """
import sys
import numpy as np
from PIL import Image
from vilt_edge.runtime import ViltRuntime
threads = None if sys.argv[2] == "-" else int(sys.argv[2])
runtime = ViltRuntime.load(sys.argv[1], threads=threads)
height, width = runtime.bundle.default_image_size
rng = np.random.default_rng(0)
image = Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))
example = (image, image) if runtime.task == "nlvr2" else image
for _ in range(int(sys.argv[3])):
    runtime.ask(example, "what is in the image?")
hwm = [line for line in open("/proc/self/status") if line.startswith("VmHWM")]
print(int(hwm[0].split()[1]) / 1024 if hwm else "")
"""


def deploy_peak_rss_mb(bundle, threads: int | None = None, answers: int = 3) -> float | None:
    """Peak resident memory (MB) of a fresh process that loads `bundle` with `ViltRuntime` and
    answers `answers` questions on an image of the bundle's default size: the memory an app
    deploying the bundle needs, without the data sets and reference model a validation run
    holds. None where it cannot be read (not Linux, or the probe failed)."""
    import subprocess
    import sys

    if not Path("/proc/self/status").is_file():
        return None
    command = [sys.executable, "-c", _DEPLOY_PROBE, str(bundle),
               "-" if threads is None else str(threads), str(answers)]  # fmt: skip
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        return None
    try:
        return round(float(lines[-1]), 1)
    except ValueError:
        return None

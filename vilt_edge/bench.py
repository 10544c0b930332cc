"""Latency of a bundle's model on synthetic inputs of a chosen shape (torch-free).

    from vilt_edge.bench import bench
    from vilt_edge.runtime import ViltRuntime

    result = bench(ViltRuntime.load("out/int8", threads=2), image_size=(384, 512), runs=50)
    result.latency_ms["p50"], result.throughput, result.to_json()

Only the model runs (the runner's session call, timed by the runner; for NLVR2 both images of
each pair, at the given size, and the pair head): use `vilt-edge validate` for end-to-end
latency on real images. Inputs are random pixels and a question of `text_len`
tokens; the values do not change the work an ONNX model does, the shapes do. The bundle pads
text to its own text length, so `text_len` changes the attention mask, not the sequence length.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from vilt_edge.devices.host import machine_description
from vilt_edge.errors import InputError
from vilt_edge.measure import peak_rss_mb, percentiles


@dataclass(frozen=True)
class BenchResult:
    """One shape's model latency: percentiles (ms), mean, throughput, and what ran where."""

    bundle: str
    precision: str
    runtime: str
    image_size: str  # "HxW"
    text_len: int
    batch: int
    runs: int
    threads: int | None
    latency_ms: dict[str, float]  # p50, p90, p99
    mean_ms: float
    throughput: float  # examples per second
    peak_rss_mb: float
    machine: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


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
) -> BenchResult:
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
    return BenchResult(
        bundle=str(runtime.bundle.path),
        precision=manifest.precision,
        runtime=manifest.runtime,
        image_size=f"{image_size[0]}x{image_size[1]}",
        text_len=text_len,
        batch=batch,
        runs=runs,
        threads=runner.get("threads"),
        latency_ms=latency,
        mean_ms=round(float(np.mean(times)), 4),
        throughput=round(batch * 1000 / float(np.mean(times)), 3),
        peak_rss_mb=peak_rss_mb(),
        machine=machine_description(),
    )

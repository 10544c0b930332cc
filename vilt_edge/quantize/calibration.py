"""Calibration and held-out examples drawn from a data spec, fed the way the runtime feeds them.

The examples are shuffled with a seed, the first `size` calibrate and the next ones (never the
same) check accuracy for `--max-drop`. The set is identified in the manifest by its data spec,
its size and a sha256 over each chosen example's question and image bytes, so two bundles can be
told apart by what they were calibrated on.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from vilt_edge.data import DataSet
from vilt_edge.errors import DataError, InputError

MIN_CALIBRATION = 16


@dataclass(frozen=True)
class CalibrationSplit:
    calibration: DataSet
    held_out: DataSet
    seed: int

    def describe(self) -> dict:
        return {
            "data": self.calibration.name,
            "size": len(self.calibration),
            "hash": examples_hash(self.calibration),
            "seed": self.seed,
        }


def split_calibration(
    data: DataSet, size: int, held_out: int = 0, seed: int = 0
) -> CalibrationSplit:
    if size < MIN_CALIBRATION:
        raise InputError(
            f"--calib-size {size} is too small: calibrate on at least {MIN_CALIBRATION} examples"
        )
    if len(data) < MIN_CALIBRATION:
        raise DataError(
            f"{data.name} has {len(data)} examples; calibration needs at least {MIN_CALIBRATION}"
        )
    order = np.random.default_rng(seed).permutation(len(data))
    size = min(size, len(data))
    chosen = [data.examples[i] for i in order[:size]]
    rest = [data.examples[i] for i in order[size : size + held_out]]
    return CalibrationSplit(
        DataSet(data.name, data.kind, data.task, chosen),
        DataSet(data.name, data.kind, data.task, rest),
        seed,
    )


def _image_paths(example) -> list[str]:
    if hasattr(example, "left_image"):
        return [example.left_image, example.right_image]
    return [example.image_path]


def examples_hash(data: DataSet) -> str:
    """sha256 over (question, image bytes...) of every example, in order."""
    digest = hashlib.sha256()
    for example in data.examples:
        text = example.sentence if data.task == "nlvr2" else example.question
        digest.update(text.encode("utf-8") + b"\0")
        for path in _image_paths(example):
            digest.update(hashlib.sha256(Path(path).read_bytes()).digest())
    return digest.hexdigest()


class FeedReader:
    """An `onnxruntime.quantization.CalibrationDataReader`: one example per model call (images
    of a data set may preprocess to different sizes; an NLVR2 example gives one call per image
    size), preprocessed by the source bundle's own runtime so calibration sees exactly what
    inference sees."""

    def __init__(self, runtime, data: DataSet, on_progress=None) -> None:
        self.runtime = runtime
        self.data = data
        self.on_progress = on_progress
        self._next = 0
        self._pending: list[dict] = []

    def get_next(self) -> dict | None:
        while not self._pending:
            if self._next >= len(self.data):
                return None
            images, questions = self.data.inputs(self._next, self._next + 1)
            self._next += 1
            if self.on_progress is not None:
                self.on_progress(1)
            self._pending = self.runtime.feeds(images, questions)
        return self._pending.pop(0)

    def __len__(self) -> int:
        return len(self.data)

    def rewind(self) -> None:
        self._next = 0
        self._pending = []

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        feeds = self.get_next()
        if feeds is None:
            raise StopIteration
        return feeds

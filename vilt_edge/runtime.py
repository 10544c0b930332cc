"""The deploy API: answer questions with a bundle, without torch.

    from vilt_edge.runtime import ViltRuntime

    with ViltRuntime.load("bundle") as vilt:  # or ViltRuntime.load("default")
        for answer in vilt.ask("photo.jpg", "what color is the car?", top_k=3):
            print(answer.answer, answer.score)
        print(vilt.last_latency_ms)  # {"preprocess": ms, "model": ms, "total": ms}

    # NLVR2 bundles take a (left, right) pair and a statement; answers are "True" / "False".
    nlvr2.ask(("left.jpg", "right.jpg"), "there are two dogs")

Only numpy, PIL, tokenizers and onnxruntime are imported here and below: an app that deploys a
bundle never needs torch or transformers.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from vilt_edge.bundle import MANIFEST, Bundle, Manifest
from vilt_edge.errors import BundleError, InputError
from vilt_edge.preprocess import ImageSource, preprocess_image
from vilt_edge.runtimes import Runner, get_runner
from vilt_edge.text import QuestionTokenizer


@dataclass(frozen=True)
class Answer:
    """One answer and its score: a sigmoid for VQA, P(True) or P(False) for NLVR2."""

    answer: str
    score: float

    def to_json(self) -> dict[str, Any]:
        return {"answer": self.answer, "score": self.score}


def _sigmoid(logits: np.ndarray) -> np.ndarray:
    # The tanh form cannot overflow, unlike 1 / (1 + exp(-x)) at large negative logits.
    return 0.5 * (1.0 + np.tanh(0.5 * logits))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=-1, keepdims=True))
    return shifted / shifted.sum(axis=-1, keepdims=True)


def trim_padding(
    input_ids: np.ndarray, attention_mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Cut the columns past a batch's longest question (right padding, as the tokenizer pads).

    Exact: padded positions are masked out of every attention, and no output reads their rows,
    so the logits do not change; the model just runs on fewer tokens (one short question at
    batch 1: its own length instead of the bundle's text length). Keeps at least 2 columns.
    """
    if attention_mask.ndim != 2 or attention_mask.shape[1] <= 2:
        return input_ids, attention_mask
    valid = attention_mask.any(axis=0)
    length = max(2, int(np.flatnonzero(valid)[-1]) + 1 if valid.any() else 2)
    return input_ids[:, :length], attention_mask[:, :length]


def _positive_int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise InputError(f"{what} must be at least 1; got {value!r}")
    return int(value)


class ViltRuntime:
    """A loaded bundle that answers questions; build it with `ViltRuntime.load(path)`.

    NLVR2 bundles are exact for any pair: each image is encoded at its own preprocessed size
    (the model file returns its pooled vector), and the pair head (`head.onnx`, on ONNX
    Runtime's CPU provider) reads both, as transformers computes it. In a batch, images of one
    size are encoded together, left and right ones alike.
    """

    def __init__(self, bundle: Bundle, threads: int | None = None) -> None:
        manifest = bundle.manifest
        expected_images = 2 if manifest.task == "nlvr2" else 1
        if manifest.num_images != expected_images:
            raise BundleError(
                f"{MANIFEST}: task {manifest.task} takes {expected_images} image(s) per example, "
                f"but num_images is {manifest.num_images}"
            )
        self.bundle = bundle
        self._true_index: int | None = None
        if manifest.task == "nlvr2":
            lowered = [label.lower() for label in bundle.labels]
            if len(bundle.labels) != 2 or "true" not in lowered:
                raise BundleError(
                    f'labels.json: an NLVR2 bundle needs the labels "False" and "True"; '
                    f"got {list(bundle.labels)}"
                )
            self._true_index = lowered.index("true")
        self.tokenizer = QuestionTokenizer.from_file(bundle.tokenizer_path, manifest.text_length)
        settings = manifest.runtime_settings
        if settings is not None and settings.pending_build:
            raise BundleError(
                f"{bundle.path} holds the ONNX model and its TensorRT build step, not an engine: "
                f"on the device run: {settings.build_command}"
            )
        self.runner: Runner = get_runner(manifest.runtime).load(
            bundle.model_path,
            threads=threads,
            settings=settings.to_json() if settings is not None else None,
        )
        # NLVR2's pair head: two small matrix products over the pooled vectors, on ONNX
        # Runtime's CPU provider whatever runs the encoder (a TensorRT engine, torch-cuda).
        self.head: Runner | None = None
        if bundle.head_path is not None:
            try:
                self.head = get_runner("onnxruntime").load(bundle.head_path, threads=threads)
            except BaseException:
                self.runner.close()
                raise
        self.last_latency_ms: dict[str, float] = {}

    @classmethod
    def load(cls, bundle: str | os.PathLike, threads: int | None = None) -> ViltRuntime:
        """`ViltRuntime.load("path/to/bundle", threads=2)`; the string "default" loads the
        embedded easy-VQA model (a directory named default loads as `./default`).

        The bundle's files are checked against their sha256 first: a missing, truncated or
        altered file raises `BundleError` naming it.
        """
        from vilt_edge.default_bundle import open_bundle

        return cls(open_bundle(bundle), threads=threads)

    @property
    def task(self) -> str:
        return self.bundle.manifest.task

    @property
    def labels(self) -> tuple[str, ...]:
        return self.bundle.labels

    @property
    def manifest(self) -> Manifest:
        return self.bundle.manifest

    def describe(self) -> dict[str, Any]:
        """What is loaded and how it runs, as JSON-ready data."""
        manifest = self.bundle.manifest
        return {
            "bundle": str(self.bundle.path),
            "task": manifest.task,
            "precision": manifest.precision,
            "source": manifest.source,
            "text_length": manifest.text_length,
            "num_labels": len(self.bundle.labels),
            "preprocessing": self.bundle.preprocessing.to_json(),
            "runner": self.runner.describe(),
        }

    def ask(
        self, image: ImageSource | Sequence[ImageSource], question: str, top_k: int = 5
    ) -> list[Answer]:
        """`ask("photo.jpg", "what is it?", top_k=3)` -> list[Answer], best first.

        For NLVR2 bundles `image` is a (left, right) pair and `question` the statement.
        """
        return self.ask_batch([image], [question], top_k=top_k)[0]

    def ask_batch(
        self,
        images: Sequence[ImageSource | Sequence[ImageSource]],
        questions: Sequence[str],
        top_k: int = 5,
        batch_size: int = 32,
    ) -> list[list[Answer]]:
        """`ask_batch([img1, img2], ["q1", "q2"])` -> one list of answers per example, in order.

        Examples are grouped by preprocessed image size, since the model takes same-size images
        only, and run at most `batch_size` at a time.
        """
        top_k = _positive_int(top_k, "top_k")
        started = time.perf_counter()
        logits, preprocess_ms, model_ms = self._logits(images, questions, batch_size)
        answers = [self._answers(row, top_k) for row in logits]
        self._record_latency(started, preprocess_ms, model_ms)
        return answers

    def logits_batch(
        self,
        images: Sequence[ImageSource | Sequence[ImageSource]],
        questions: Sequence[str],
        batch_size: int = 32,
    ) -> np.ndarray:
        """The model's raw logits, one row per example (float64, shape [n, labels]).

        What `ask_batch` scores; validation compares these between bundles (agreement, cosine,
        max-abs difference). Sets `last_latency_ms` like `ask_batch`.
        """
        started = time.perf_counter()
        logits, preprocess_ms, model_ms = self._logits(images, questions, batch_size)
        self._record_latency(started, preprocess_ms, model_ms)
        return logits

    def _record_latency(self, started: float, preprocess_ms: float, model_ms: float) -> None:
        """The one place `last_latency_ms` is written: preprocessing, model, and in all."""
        self.last_latency_ms = {
            "preprocess": preprocess_ms,
            "model": model_ms,
            "total": (time.perf_counter() - started) * 1000,
        }

    def _logits(
        self,
        images: Sequence[ImageSource | Sequence[ImageSource]],
        questions: Sequence[str],
        batch_size: int,
    ) -> tuple[np.ndarray, float, float]:
        """(logits, preprocessing ms, model ms) for these examples."""
        started = time.perf_counter()
        batch_size = _positive_int(batch_size, "batch_size")
        if isinstance(questions, str):
            raise InputError("ask_batch takes a list of questions; use ask for a single one")
        images, questions = list(images), list(questions)
        if len(images) != len(questions):
            raise InputError(
                f"got {len(images)} images and {len(questions)} questions; give one per example"
            )
        trim = self.runner.dynamic_text
        # Questions first: an empty question fails before any image is decoded. A runner that
        # takes shorter text gets the batch's longest question's length, not the bundle's.
        input_ids, attention_mask = self.tokenizer.encode(questions, to_longest=trim)
        pixels = [self._pixels(image) for image in images]
        preprocess_ms = (time.perf_counter() - started) * 1000

        model_ms = 0.0
        outputs: np.ndarray | None = None
        batch_size = min(batch_size, self.runner.max_batch or batch_size)
        for rows, feeds in self._batches(input_ids, attention_mask, pixels, batch_size, trim):
            output = self._run(feeds)
            model_ms += self.runner.last_inference_time_ms or 0.0
            if outputs is None:
                shape = (len(images),) + ((self.manifest.num_images,) if self.head else ())
                outputs = np.zeros(shape + output.shape[1:], dtype=output.dtype)
            outputs[rows] = output
        logits = outputs
        if outputs is None:  # no examples
            logits = np.zeros((0, len(self.labels)))
        elif self.head is not None:  # the pooled vectors of a pair side by side -> the pair head
            logits = self.head.run({"pooled": outputs.reshape(len(images), -1)})
            model_ms += self.head.last_inference_time_ms or 0.0
            if logits.shape != (len(images), len(self.bundle.labels)):
                raise BundleError(
                    f"labels.json: lists {len(self.bundle.labels)} answers, but the pair head "
                    f"returns logits of shape {tuple(logits.shape)} for {len(images)} pair(s)"
                )
        return logits.astype(np.float64), preprocess_ms, model_ms

    def _batches(
        self,
        input_ids: np.ndarray,
        attention_mask: np.ndarray,
        pixels: list[np.ndarray | tuple[np.ndarray, ...]],
        batch_size: int,
        trim: bool,
    ):
        """(rows, feeds) per model call: images grouped by preprocessed size, at most
        `batch_size` a call, padding columns cut when `trim`. `rows` indexes the output:
        example indices for VQA, (example, image position) index arrays for NLVR2, whose pairs
        are split into their images (each row carries its `image_token_type_ids`: 1 for the
        left image, 2 for the right)."""
        by_size: dict[tuple[int, ...], list[tuple[int, int]]] = defaultdict(list)
        for example, arrays in enumerate(pixels):
            for position, array in enumerate(arrays if self.head else (arrays,)):
                by_size[array.shape].append((example, position))
        for members in by_size.values():
            for start in range(0, len(members), batch_size):
                chunk = members[start : start + batch_size]
                examples = [example for example, _ in chunk]
                ids, mask = input_ids[examples], attention_mask[examples]
                if trim:
                    ids, mask = trim_padding(ids, mask)
                feeds = {"input_ids": ids, "attention_mask": mask}
                if self.head is None:
                    feeds["pixel_values"] = np.stack([pixels[example] for example in examples])
                    yield examples, feeds
                    continue
                positions = [position for _, position in chunk]
                feeds["pixel_values"] = np.stack(
                    [pixels[example][position] for example, position in chunk]
                )
                feeds["image_token_type_ids"] = np.array(positions, dtype=np.int64) + 1
                yield (np.array(examples), np.array(positions)), feeds

    def feeds(
        self, images: Sequence[ImageSource | Sequence[ImageSource]], questions: Sequence[str]
    ) -> list[dict[str, np.ndarray]]:
        """The model file's inputs for these examples, preprocessed and tokenized as `ask` does
        (`input_ids`, `attention_mask`, `pixel_values`, and for NLVR2 `image_token_type_ids`):
        one feed dict per group of same-size images, what calibration feeds the model. The
        padding is not cut, so every feed has the bundle's text length. For one NLVR2 example
        the images come out in order (left, then right), so the pooled outputs concatenate to
        the head's input."""
        input_ids, attention_mask = self.tokenizer.encode(list(questions))
        pixels = [self._pixels(image) for image in images]
        batches = self._batches(input_ids, attention_mask, pixels, 2 * len(pixels) + 1, False)
        return [feeds for _, feeds in batches]

    def predict_index(self, logits: np.ndarray) -> np.ndarray:
        """Top-1 label index per row of `logits` (the answer `ask` would rank first)."""
        return np.argmax(logits, axis=-1)

    def _pixels(
        self, image: ImageSource | Sequence[ImageSource]
    ) -> np.ndarray | tuple[np.ndarray, ...]:
        settings = self.bundle.preprocessing
        if self._true_index is None:
            if isinstance(image, (tuple, list)):
                raise InputError(f"this VQA bundle takes one image per question; got {len(image)}")
            return preprocess_image(image, settings)
        # A path, PIL image or array is one image, whatever its own length.
        count = len(image) if isinstance(image, (tuple, list)) else 1
        if count != 2:
            raise InputError(f"this NLVR2 bundle needs two images (left and right); got {count}")
        # Each at its own size, as transformers' pixel mask limits each image to its own area.
        return (preprocess_image(image[0], settings), preprocess_image(image[1], settings))

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        output = self.runner.run(feeds)
        rows = len(feeds["input_ids"])
        if self.head is None:
            expected = (rows, len(self.bundle.labels))
            if output.shape != expected:
                raise BundleError(
                    f"labels.json: lists {len(self.bundle.labels)} answers, but the model "
                    f"returns logits of shape {tuple(output.shape)} for {rows} example(s)"
                )
            return output.astype(np.float64)
        if output.ndim != 2 or output.shape[0] != rows:
            raise BundleError(
                f"{self.manifest.model_file}: returns shape {tuple(output.shape)} for {rows} "
                "image(s); an NLVR2 encoder returns one pooled vector per image"
            )
        return output.astype(np.float32)

    def _answers(self, logits: np.ndarray, top_k: int) -> list[Answer]:
        if self._true_index is not None:
            true = float(_softmax(logits)[self._true_index])
            pair = sorted(
                [Answer("True", true), Answer("False", 1.0 - true)], key=lambda a: -a.score
            )
            return pair[:top_k]
        scores = _sigmoid(logits)
        best = np.argsort(-scores, kind="stable")[:top_k]
        return [Answer(self.bundle.labels[i], float(scores[i])) for i in best]

    def close(self) -> None:
        self.runner.close()
        if self.head is not None:
            self.head.close()

    def __enter__(self) -> ViltRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

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

    NLVR2 deviation: the exported model takes no pixel mask, so both images of a pair must have
    one size. When the left and right images preprocess to different sizes, the right image is
    resized (from the original, with the bundle's resample filter, before rescaling) to the left
    one's size, where transformers would zero-pad both to the larger size under a pixel mask.
    Only NLVR2 pairs whose images differ in aspect ratio are affected.
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
        settings = (manifest.extra or {}).get("runtime_settings") or {}
        if settings.get("state") == "pending-build":
            raise BundleError(
                f"{bundle.path} holds the ONNX model and its TensorRT build step, not an engine: "
                f"on the device run: {settings.get('build_command')}"
            )
        self.runner: Runner = get_runner(manifest.runtime).load(
            bundle.model_path,
            threads=threads,
            settings=settings or None,
        )
        self.last_latency_ms: dict[str, float] = {}

    @classmethod
    def load(cls, bundle: str | os.PathLike, threads: int | None = None) -> ViltRuntime:
        """`ViltRuntime.load("path/to/bundle", threads=2)`; the string "default" loads the
        embedded easy-VQA model (a directory named default loads as `./default`).

        The bundle's files are checked against their sha256 first: a missing, truncated or
        altered file raises `BundleError` naming it.
        """
        from vilt_edge.default_model import open_bundle

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
        logits = self.logits_batch(images, questions, batch_size=batch_size)
        started = time.perf_counter()
        answers = [self._answers(row, top_k) for row in logits]
        self.last_latency_ms["total"] += (time.perf_counter() - started) * 1000
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
        batch_size = _positive_int(batch_size, "batch_size")
        if isinstance(questions, str):
            raise InputError("ask_batch takes a list of questions; use ask for a single one")
        images, questions = list(images), list(questions)
        if len(images) != len(questions):
            raise InputError(
                f"got {len(images)} images and {len(questions)} questions; give one per example"
            )
        # Questions first: an empty question fails before any image is decoded.
        input_ids, attention_mask = self.tokenizer.encode(questions)
        pixels = [self._pixels(image) for image in images]
        preprocess_ms = (time.perf_counter() - started) * 1000

        by_size: dict[tuple[int, ...], list[int]] = defaultdict(list)
        for index, array in enumerate(pixels):
            by_size[array.shape].append(index)
        logits = np.zeros((len(images), len(self.bundle.labels)), dtype=np.float64)
        model_ms = 0.0
        for indices in by_size.values():
            for start in range(0, len(indices), batch_size):
                chunk = indices[start : start + batch_size]
                logits[chunk] = self._run(
                    input_ids[chunk], attention_mask[chunk], np.stack([pixels[i] for i in chunk])
                )
                model_ms += self.runner.last_inference_time_ms or 0.0
        self.last_latency_ms = {
            "preprocess": preprocess_ms,
            "model": model_ms,
            "total": (time.perf_counter() - started) * 1000,
        }
        return logits

    def feeds(
        self, images: Sequence[ImageSource | Sequence[ImageSource]], questions: Sequence[str]
    ) -> dict[str, np.ndarray]:
        """The model inputs for same-size examples, preprocessed and tokenized as `ask` does
        (`input_ids`, `attention_mask`, `pixel_values`): what calibration feeds the model."""
        input_ids, attention_mask = self.tokenizer.encode(list(questions))
        pixels = [self._pixels(image) for image in images]
        if len({array.shape for array in pixels}) > 1:
            raise InputError("feeds takes images of one preprocessed size; group them first")
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": np.stack(pixels),
        }

    def predict_index(self, logits: np.ndarray) -> np.ndarray:
        """Top-1 label index per row of `logits` (the answer `ask` would rank first)."""
        return np.argmax(logits, axis=-1)

    def _pixels(self, image: ImageSource | Sequence[ImageSource]) -> np.ndarray:
        settings = self.bundle.preprocessing
        if self._true_index is None:
            if isinstance(image, (tuple, list)):
                raise InputError(f"this VQA bundle takes one image per question; got {len(image)}")
            return preprocess_image(image, settings)
        # A path, PIL image or array is one image, whatever its own length.
        count = len(image) if isinstance(image, (tuple, list)) else 1
        if count != 2:
            raise InputError(f"this NLVR2 bundle needs two images (left and right); got {count}")
        left = preprocess_image(image[0], settings)
        right = preprocess_image(image[1], settings)
        if right.shape != left.shape:
            # Decoding the right image twice is the price of keeping the size checks (and their
            # messages naming the file) inside preprocess_image; it only happens for such pairs.
            right = preprocess_image(image[1], settings, size=left.shape[1:])
        return np.stack([left, right])

    def _run(
        self, input_ids: np.ndarray, attention_mask: np.ndarray, pixel_values: np.ndarray
    ) -> np.ndarray:
        if self.runner.dynamic_text:
            input_ids, attention_mask = trim_padding(input_ids, attention_mask)
        logits = self.runner.run(
            {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values}
        )
        if logits.ndim != 2 or logits.shape != (len(input_ids), len(self.bundle.labels)):
            raise BundleError(
                f"labels.json: lists {len(self.bundle.labels)} answers, but the model returns "
                f"logits of shape {tuple(logits.shape)} for {len(input_ids)} example(s)"
            )
        return logits.astype(np.float64)

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

    def __enter__(self) -> ViltRuntime:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

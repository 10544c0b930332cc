"""Accuracy of a bundle on a data set, with latency measured in the same run (torch-free).

    vilt-edge validate BUNDLE --data easy-vqa:test [--limit N] [--show 10]

Data specs: `easy-vqa[:test|train]`. Each example is answered through the public runtime
(`ViltRuntime.ask_batch`), so the figures include preprocessing and tokenization exactly as an
app would run them.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from vilt_edge.datasets import VqaExample, load_easy_vqa
from vilt_edge.errors import DataError


def load_data_spec(spec: str) -> tuple[str, list[VqaExample]]:
    """Parse a data spec into (name, examples)."""
    kind, _, argument = spec.partition(":")
    if kind == "easy-vqa":
        split = argument or "test"
        return f"easy-vqa:{split}", load_easy_vqa(split)
    raise DataError(f"unknown data spec {spec!r} (supported: easy-vqa[:test|train])")


@dataclass
class ValidationResult:
    data: str
    n: int
    accuracy: float  # 0-1, top-1 answer equals the (first) human answer
    accuracy_by_type: dict[str, float]
    batch_latency_ms: dict[str, float]  # per batch of `batch_size`, end to end
    per_example_ms: float  # end-to-end wall time / n
    batch_size: int
    predictions: list[dict] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "data": self.data,
            "n": self.n,
            "accuracy": self.accuracy,
            "accuracy_by_type": self.accuracy_by_type,
            "batch_size": self.batch_size,
            "batch_latency_ms": self.batch_latency_ms,
            "per_example_ms": self.per_example_ms,
        }


def validate(
    runtime,
    examples: list[VqaExample],
    data_name: str,
    batch_size: int = 32,
    on_progress: Callable[[int], None] | None = None,
) -> ValidationResult:
    if not examples:
        raise DataError(f"{data_name}: no examples")
    if runtime.task != "vqa":
        raise DataError(f"{data_name} is a VQA data set; this bundle's task is {runtime.task}")
    correct_by_type: dict[str, list[bool]] = defaultdict(list)
    predictions = []
    batch_ms = []
    started = time.perf_counter()
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        answers = runtime.ask_batch(
            [e.image_path for e in chunk], [e.question for e in chunk], top_k=1
        )
        batch_ms.append(runtime.last_latency_ms["total"])
        for example, top in zip(chunk, answers, strict=True):
            predicted = top[0].answer
            correct = predicted == example.answers[0]
            correct_by_type[example.answer_type or "all"].append(correct)
            predictions.append(
                {
                    "question_id": example.question_id,
                    "question": example.question,
                    "prediction": predicted,
                    "score": top[0].score,
                    "truth": example.answers[0],
                    "correct": correct,
                }
            )
        if on_progress:
            on_progress(len(chunk))
    elapsed_ms = (time.perf_counter() - started) * 1000
    every = [c for values in correct_by_type.values() for c in values]
    return ValidationResult(
        data=data_name,
        n=len(every),
        accuracy=float(np.mean(every)),
        accuracy_by_type={k: float(np.mean(v)) for k, v in sorted(correct_by_type.items())},
        batch_latency_ms={
            "p50": float(np.percentile(batch_ms, 50)),
            "p90": float(np.percentile(batch_ms, 90)),
        },
        per_example_ms=elapsed_ms / len(every),
        batch_size=batch_size,
        predictions=predictions,
    )

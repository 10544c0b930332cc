"""Data sets and their scores, together: the readers (`vqa`: easy-VQA, VQA v2, your own frames;
`nlvr2`), the official metrics (`metrics`), and `load_data`, which turns a spec users write
(`easy-vqa:test`, `vqav2:DIR`, `nlvr2:PATH`, `frames:PATH`) into a `DataSet` every stage reads.

    from vilt_edge.data import load_data, score
    data = load_data("vqav2:../shared/data/vqav2-mini")
    score(data, labels, logits.argmax(-1)).accuracy

Torch-free: examples are plain records; image decoding happens in `vilt_edge.preprocess`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from vilt_edge.data.files import NlvrExample, VqaExample
from vilt_edge.data.metrics import accuracy_by_group, nlvr2_consistency, vqa_score
from vilt_edge.data.nlvr2 import load_nlvr2
from vilt_edge.data.vqa import load_easy_vqa, load_frames, load_vqav2
from vilt_edge.errors import DataError, InputError

DATA_SPECS = "vqav2:DIR, nlvr2:PATH, frames:PATH or easy-vqa[:test|train]"


@dataclass(frozen=True)
class DataSet:
    """Examples of one task, and the spec that names them in results and reports."""

    name: str  # e.g. "easy-vqa:test", "vqav2:/data/vqav2-mini"
    kind: str  # easy-vqa | vqav2 | nlvr2: decides how answers are scored
    task: str  # vqa | nlvr2: which bundles can answer them
    examples: list[VqaExample] | list[NlvrExample]

    def __len__(self) -> int:
        return len(self.examples)

    def inputs(self, start: int = 0, stop: int | None = None) -> tuple[list, list[str]]:
        """(images, questions) for `ViltRuntime.logits_batch`: a path, or a (left, right) pair."""
        chunk = self.examples[start:stop]
        if self.task == "nlvr2":
            return [(e.left_image, e.right_image) for e in chunk], [e.sentence for e in chunk]
        return [e.image_path for e in chunk], [e.question for e in chunk]

    def limited(self, limit: int | None) -> DataSet:
        if limit is None:
            return self
        if limit < 1:
            raise InputError("--limit must be at least 1")
        return DataSet(self.name, self.kind, self.task, self.examples[:limit])


def load_data(
    spec: str,
    *,
    questions: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
) -> DataSet:
    """`load_data("vqav2:data/vqav2")`, `load_data("nlvr2:dev.json")`, `load_data("easy-vqa")`.

    For VQAv2 in another layout, `load_data("vqav2", questions=..., annotations=...,
    images=...)` names the files (a directory given in the spec fills in what is not named).
    """
    kind, colon, argument = spec.partition(":")
    kind = kind.strip().lower()
    explicit = any(x is not None for x in (questions, annotations, images))
    if explicit and kind != "vqav2":
        raise InputError("--questions, --annotations and --images go with --data vqav2[:DIR]")
    if kind == "easy-vqa":
        split = argument or "test"
        if split not in ("test", "train"):
            raise InputError(f"easy-vqa has the splits test and train, not {split!r}")
        return DataSet(f"easy-vqa:{split}", "easy-vqa", "vqa", load_easy_vqa(split))
    if kind == "vqav2":
        if not argument and not explicit:
            raise InputError("vqav2 needs a directory (vqav2:DIR) or --questions/--annotations")
        examples = load_vqav2(
            argument or None, questions=questions, annotations=annotations, images=images
        )
        name = f"vqav2:{argument}" if argument else f"vqav2:{questions}"
        return DataSet(name, "vqav2", "vqa", examples)
    if kind == "nlvr2":
        if not argument:
            raise InputError("nlvr2 needs a path: nlvr2:PATH (a .jsonl file or its folder)")
        return DataSet(f"nlvr2:{argument}", "nlvr2", "nlvr2", load_nlvr2(argument))
    if kind == "frames":
        if not argument:
            raise InputError("frames needs a path: frames:PATH (a .jsonl of image and question)")
        return DataSet(f"frames:{argument}", "frames", "vqa", load_frames(argument))
    shown = spec if colon or len(spec) < 60 else spec[:57] + "..."
    raise InputError(f"unknown data spec {shown!r}; use {DATA_SPECS}")


def check_task(data: DataSet, task: str, what: str = "this bundle") -> None:
    if data.task != task:
        raise DataError(f"{data.name} is {data.task.upper()} data, but {what} is a {task} model")


def check_labeled(data: DataSet) -> None:
    """Validation scores answers, so every example needs its ground truth."""
    if data.task == "nlvr2":
        missing = [e.identifier for e in data.examples if e.label is None]
    else:
        missing = [e.question_id or e.question for e in data.examples if not e.answers]
    if missing:
        raise DataError(
            f"{data.name}: {len(missing)} of {len(data)} examples have no label "
            f"(first: {missing[0]}); validation needs labeled data"
        )


@dataclass(frozen=True)
class Score:
    """Top-1 answers scored against the ground truth: per example, overall, per answer type,
    and NLVR2's consistency."""

    answers: tuple[str, ...]
    scores: tuple[float, ...]
    accuracy: float
    by_type: dict[str, float]
    consistency: float | None


def score(data: DataSet, labels: Sequence[str], predicted: np.ndarray) -> Score:
    """Per-example scores of top-1 label indices: accuracy, per type, consistency (NLVR2)."""
    examples = data.examples
    answers = [labels[int(i)] for i in predicted]
    if data.task == "nlvr2":
        truth = [bool(e.label) for e in examples]
        says_true = [a.lower() == "true" for a in answers]
        correct = [s == t for s, t in zip(says_true, truth, strict=True)]
        scores = [float(c) for c in correct]
        return Score(
            answers=tuple(answers),
            scores=tuple(scores),
            accuracy=float(np.mean(scores)),
            by_type={},
            consistency=nlvr2_consistency([e.identifier for e in examples], correct),
        )
    if data.kind in ("vqav2", "frames"):
        scores = [vqa_score(a, e.answers) for a, e in zip(answers, examples, strict=True)]
    else:
        scores = [float(a == e.answers[0]) for a, e in zip(answers, examples, strict=True)]
    groups = [e.answer_type or "all" for e in examples]
    by_type = accuracy_by_group(scores, groups) if any(e.answer_type for e in examples) else {}
    return Score(
        answers=tuple(answers),
        scores=tuple(scores),
        accuracy=float(np.mean(scores)),
        by_type=by_type,
        consistency=None,
    )

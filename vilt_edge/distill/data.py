"""Data: questions encoded once, images preprocessed once per resolution (bounded cache), the
train/held-out split, the epoch's batches and one batch's tensors."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from vilt_edge.bundle import Preprocessing
from vilt_edge.data import DataSet


class _ImageCache:
    """Preprocessed images by (path(s), resolution), least recently used out past a byte budget."""

    def __init__(self, budget_bytes: int = 2 << 30) -> None:
        self.budget = budget_bytes
        self.used = 0
        self.items: OrderedDict[tuple, np.ndarray] = OrderedDict()

    def get(self, image, settings: Preprocessing) -> np.ndarray:
        from vilt_edge.preprocess import preprocess_image

        key = (image, settings)
        array = self.items.get(key)
        if array is not None:
            self.items.move_to_end(key)
            return array
        if isinstance(image, tuple):  # NLVR2 pair: each image at its own size, as ViLT reads it
            array = tuple(preprocess_image(one, settings) for one in image)
        else:
            array = preprocess_image(image, settings)
        self.items[key] = array
        self.used += sum(a.nbytes for a in array) if isinstance(array, tuple) else array.nbytes
        while self.used > self.budget and len(self.items) > 1:
            _, old = self.items.popitem(last=False)
            self.used -= sum(a.nbytes for a in old) if isinstance(old, tuple) else old.nbytes
        return array


def _grid_size(image, settings: Preprocessing) -> tuple:
    """Output (height, width) of an image, or of each image of a pair, without decoding it."""
    from vilt_edge.preprocess import load_image, output_size

    if isinstance(image, tuple):
        return tuple(_grid_size(one, settings) for one in image)
    with load_image(image) as opened:
        return output_size(opened.height, opened.width, settings)


def _stack_pixels(arrays: list, device):
    """One batch's preprocessed images as model input: a tensor (batch, 3, H, W), or for NLVR2
    pairs a tuple of such tensors, one per image position (each position has one size within
    a bucket, the other position may have another)."""
    import torch

    if isinstance(arrays[0], tuple):
        return tuple(
            torch.from_numpy(np.stack([pair[position] for pair in arrays])).to(device)
            for position in range(len(arrays[0]))
        )
    return torch.from_numpy(np.stack(arrays)).to(device)


def _image_grid(pixels, position: int, patch: int) -> tuple[int, int]:
    """The patch grid of image `position` (0 for VQA) in a batch from `_stack_pixels`."""
    tensor = pixels[position] if isinstance(pixels, tuple) else pixels
    return tensor.shape[-2] // patch, tensor.shape[-1] // patch


@dataclass
class _Examples:
    images: list  # a path, or a (left, right) pair
    input_ids: np.ndarray  # (N, L) int64
    attention_mask: np.ndarray
    targets: list  # see _soft_targets
    labeled: np.ndarray  # (N,) bool
    buckets: dict[tuple, list[int]]  # (teacher size, student size) -> example indices


def _soft_targets(data: DataSet, labels: list[str]) -> tuple[list, np.ndarray]:
    """Per example: NLVR2, 0/1; VQA, (label indices, soft scores), kept sparse (3,129 answers
    by hundreds of thousands of questions would not fit dense). Plus which examples have labels."""
    from vilt_edge.data.metrics import normalize_answer, vqa_score

    if data.task == "nlvr2":
        labeled = np.array([e.label is not None for e in data.examples])
        return [float(bool(e.label)) for e in data.examples], labeled
    index = {normalize_answer(label): i for i, label in enumerate(labels)}
    targets: list = []
    labeled = np.zeros(len(data), dtype=bool)
    for row, example in enumerate(data.examples):
        hits = {}
        if example.answers:
            labeled[row] = True
            for answer in {normalize_answer(a) for a in example.answers}:
                if answer in index:
                    hits[index[answer]] = vqa_score(answer, example.answers)
        targets.append(
            (
                np.array(sorted(hits), dtype=np.int64),
                np.array([hits[k] for k in sorted(hits)], dtype=np.float32),
            )
        )
    return targets, labeled


def _dense_targets(examples: _Examples, rows: list[int], num_labels: int, task: str):
    if task == "nlvr2":
        return np.array([examples.targets[i] for i in rows], dtype=np.float32)
    dense = np.zeros((len(rows), num_labels), dtype=np.float32)
    for out_row, row in enumerate(rows):
        indices, values = examples.targets[row]
        dense[out_row, indices] = values
    return dense


def _prepare(
    data: DataSet, tokenizer, labels: list[str], teacher: Preprocessing, student: Preprocessing
) -> _Examples:
    images, questions = data.inputs()
    input_ids, attention_mask = tokenizer.encode(questions)
    targets, labeled = _soft_targets(data, labels)
    buckets: dict[tuple, list[int]] = {}
    sizes: dict[Any, tuple] = {}
    for row, image in enumerate(images):
        if image not in sizes:
            sizes[image] = (_grid_size(image, teacher), _grid_size(image, student))
        buckets.setdefault(sizes[image], []).append(row)
    return _Examples(images, input_ids, attention_mask, targets, labeled, buckets)


def _split(data: DataSet, eval_size: int, seed: int) -> tuple[DataSet, DataSet | None]:
    """A held-out evaluation split of `eval_size` examples (at most a fifth of the data)."""
    size = min(eval_size, len(data) // 5)
    if size == 0:
        return data, None
    order = np.random.default_rng([seed, 7]).permutation(len(data))
    held = sorted(order[:size].tolist())
    kept = sorted(order[size:].tolist())
    pick = lambda rows: [data.examples[i] for i in rows]  # noqa: E731
    return (
        DataSet(data.name, data.kind, data.task, pick(kept)),
        DataSet(data.name + " (held out)", data.kind, data.task, pick(held)),
    )


def epoch_batches(examples: _Examples, batch_size: int, seed: int, epoch: int) -> list[list[int]]:
    """One epoch's batches: shuffled within each image-size bucket, then in order; a function of
    (seed, epoch) only, which is what makes a resumed run identical to an uninterrupted one."""
    rng = np.random.default_rng([seed, epoch])
    batches = []
    for key in sorted(examples.buckets):
        rows = rng.permutation(examples.buckets[key]).tolist()
        batches.extend(rows[i : i + batch_size] for i in range(0, len(rows), batch_size))
    order = rng.permutation(len(batches))
    return [batches[i] for i in order]


def _batch_tensors(
    examples: _Examples,
    rows: list[int],
    cache: _ImageCache,
    teacher_settings: Preprocessing,
    student_settings: Preprocessing,
    device,
    num_labels: int,
    task: str,
):
    import torch

    ids = torch.from_numpy(examples.input_ids[rows]).to(device)
    mask = torch.from_numpy(examples.attention_mask[rows]).to(device)
    images = [examples.images[i] for i in rows]
    teacher_pixels = _stack_pixels([cache.get(i, teacher_settings) for i in images], device)
    if student_settings == teacher_settings:
        student_pixels = teacher_pixels
    else:
        student_pixels = _stack_pixels([cache.get(i, student_settings) for i in images], device)
    targets = torch.from_numpy(_dense_targets(examples, rows, num_labels, task)).to(device)
    labeled = torch.from_numpy(examples.labeled[rows]).to(device)
    return ids, mask, teacher_pixels, student_pixels, targets, labeled

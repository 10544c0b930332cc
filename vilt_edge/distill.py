"""Distill a ViLT teacher into a student with fewer layers (and, optionally, fewer image tokens).

    from vilt_edge.distill import DistillOptions, distill
    summary = distill("default", "runs/student", DistillOptions(layers=2, data="easy-vqa:train"))

The student is the teacher's own architecture with K encoder layers: embeddings, final
LayerNorm, pooler and head are copied, and student layer i starts as teacher layer map[i]
(evenly spaced by default, ending at the teacher's last layer, whose output the copied pooler
and head read). It is trained on the teacher's answers:

- soft targets: VQA, binary cross-entropy against the teacher's sigmoid scores at temperature T
  (the head is trained with BCE), less the teacher's own entropy so it reads as a divergence;
  NLVR2, KL divergence to the teacher's softmax at T; both scaled by T^2 so the gradient size
  does not depend on T;
- hidden states: student layer i's output against teacher layer map[i]'s, a mean squared error
  over real tokens divided by the teacher state's mean square (so the weight W does not depend
  on the model's activation scale); when the student reads a lower resolution, the teacher's
  patch grid is average-pooled to the student's;
- the ground truth, where the data has labels (VQA soft scores: the official VQA accuracy of each
  label against the human answers; NLVR2: cross-entropy). Unlabeled data (images and questions
  only, e.g. `frames:PATH`) trains on the first two alone.

The run directory holds `.distill/run.json` (the configuration and its fingerprint) and, while
training, `.distill/checkpoint.pt` (student, optimizer, schedule, step; written atomically every
`checkpoint_every` steps), so `resume=True` continues an interrupted run exactly: batches are a
function of (seed, epoch), not of the process. When training ends the directory becomes a
standard Hugging Face ViLT directory (config.json written last) with `distill_summary.json`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.bundle import Preprocessing
from vilt_edge.errors import InputError
from vilt_edge.validate import DataSet, check_task, load_data, score

STATE_DIR = ".distill"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "distill_summary.json"
# Files of a Hugging Face ViLT directory the student is written as (config.json last, so a
# directory with a config.json is a complete student).
_STUDENT_FILES_LAST = "config.json"
_TEACHER_SIDE_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


DEFAULT_EPOCHS = 8.0
DEFAULT_LR = 5e-4


@dataclass(frozen=True)
class DistillOptions:
    layers: int
    data: str
    layer_map: tuple[int, ...] | None = None
    image_short_side: int | None = None
    steps: int | None = None
    # Default: DEFAULT_EPOCHS when neither steps nor epochs is given. The defaults are the recipe
    # that measured within 1 point of the teacher (README, "Distillation"): 3 epochs at 2e-4
    # left a 2-layer student of the default 3.5 points behind, 8 at 5e-4 put it 0.7 ahead.
    epochs: float | None = None
    batch_size: int = 32
    grad_accum: int = 1
    lr: float = DEFAULT_LR
    weight_decay: float = 0.01
    warmup_fraction: float = 0.06
    temperature: float = 1.0
    hidden_weight: float = 1.0
    label_weight: float = 1.0
    eval_size: int = 500
    eval_every: int = 0  # steps; 0: once per epoch
    checkpoint_every: int = 100
    seed: int = 0
    bf16: bool | None = None  # None: on where the device computes bf16 fast (CUDA), off on CPU
    threads: int | None = None
    device: str | None = None  # None: cuda if available, else cpu

    def __post_init__(self) -> None:
        _check_numbers(self)

    # What decides the student's weights; a resumed run must match it exactly.
    def recipe(self) -> dict[str, Any]:
        data = asdict(self)
        for key in ("eval_every", "checkpoint_every", "threads", "device"):
            data.pop(key)
        data["layer_map"] = list(self.layer_map) if self.layer_map else None
        return data


@dataclass
class Progress:
    """What the training loop reports after every optimizer step."""

    step: int
    total: int
    loss: float
    parts: dict[str, float] = field(default_factory=dict)
    message: str = ""


# ---------------------------------------------------------------------------------------------
# Checks of the user's choices


def plan_layers(teacher_layers: int, k: int, layer_map: tuple[int, ...] | None) -> list[int]:
    """Teacher layer for each student layer: `layer_map`, or K evenly spaced ending at the last."""
    if k < 1 or k >= teacher_layers:
        raise InputError(
            f"--layers must be from 1 to {teacher_layers - 1} (the teacher has "
            f"{teacher_layers} layers); got {k}"
        )
    if layer_map is None:
        return [round((i + 1) * teacher_layers / k) - 1 for i in range(k)]
    chosen = list(layer_map)
    if len(chosen) != k:
        raise InputError(f"--layer-map names {len(chosen)} layers but --layers is {k}")
    outside = [i for i in chosen if not 0 <= i < teacher_layers]
    if outside:
        raise InputError(
            f"--layer-map index {outside[0]} is out of range: the teacher's layers are "
            f"0 to {teacher_layers - 1}"
        )
    repeated = sorted({i for i in chosen if chosen.count(i) > 1})
    if repeated:
        raise InputError(f"--layer-map repeats layer {repeated[0]}; each teacher layer once")
    return chosen


def parse_layer_map(text: str | None) -> tuple[int, ...] | None:
    if text is None or not text.strip():
        return None
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise InputError(
            f"--layer-map must be comma-separated layer indices, not {text!r}"
        ) from None


def _check_numbers(options: DistillOptions) -> None:
    if options.steps is not None and options.epochs is not None:
        raise InputError("give --steps or --epochs, not both")
    if options.steps is not None and options.steps < 1:
        raise InputError("--steps must be at least 1")
    if options.epochs is not None and not options.epochs > 0:
        raise InputError("--epochs must be more than 0")
    for name in ("batch_size", "grad_accum", "checkpoint_every"):
        if getattr(options, name) < 1:
            raise InputError(f"--{name.replace('_', '-')} must be at least 1")
    if options.eval_every < 0 or options.eval_size < 0:
        raise InputError("--eval-every and --eval-size must be 0 or more")
    if not options.lr > 0 or not math.isfinite(options.lr):
        raise InputError("--lr must be a positive number")
    if not options.temperature > 0:
        raise InputError("--temperature must be more than 0")
    if options.hidden_weight < 0 or options.label_weight < 0:
        raise InputError("--hidden-weight and --label-weight must be 0 or more")


# ---------------------------------------------------------------------------------------------
# The student


def build_student(teacher, layer_map: list[int]):
    """The teacher's class and config with len(layer_map) layers, initialised from the teacher."""
    import copy

    config = copy.deepcopy(teacher.config)
    config.num_hidden_layers = len(layer_map)
    student = type(teacher)(config)
    pattern = re.compile(r"^vilt\.encoder\.layer\.(\d+)\.(.+)$")
    source_of = {teacher_index: i for i, teacher_index in enumerate(layer_map)}
    state = {}
    for key, value in teacher.state_dict().items():
        match = pattern.match(key)
        if match is None:
            state[key] = value.clone()
        elif int(match[1]) in source_of:
            state[f"vilt.encoder.layer.{source_of[int(match[1])]}.{match[2]}"] = value.clone()
    student.load_state_dict(state, strict=True)
    return student


# ---------------------------------------------------------------------------------------------
# Data: questions encoded once, images preprocessed once per resolution (bounded cache)


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
    from vilt_edge.metrics import normalize_answer, vqa_score

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


# ---------------------------------------------------------------------------------------------
# Losses


class _LayerTap:
    """Collects the outputs of chosen encoder layers on every forward call (NLVR2 calls the
    encoder once per image, so a list per layer)."""

    def __init__(self, layers, indices: list[int]) -> None:
        self.outputs: dict[int, list] = {i: [] for i in indices}
        self.handles = [layers[i].register_forward_hook(self._hook(i)) for i in indices]

    def _hook(self, index: int):
        def hook(_module, _inputs, output):
            self.outputs[index].append(output[0] if isinstance(output, tuple) else output)

        return hook

    def take(self) -> dict[int, list]:
        outputs, self.outputs = self.outputs, {i: [] for i in self.outputs}
        return outputs

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()


def _align_tokens(teacher_states, text_len: int, student_grid, teacher_grid):
    """Teacher states (B, T, C) brought to the student's token layout: text and image [CLS]
    as they are, the patch grid average-pooled to the student's grid when it is smaller."""
    import torch

    if tuple(student_grid) == tuple(teacher_grid):
        return teacher_states
    head = teacher_states[:, : text_len + 1]
    patches = teacher_states[:, text_len + 1 :]
    batch, _, channels = patches.shape
    grid = patches.transpose(1, 2).reshape(batch, channels, *teacher_grid)
    pooled = torch.nn.functional.adaptive_avg_pool2d(grid, tuple(student_grid))
    return torch.cat([head, pooled.flatten(2).transpose(1, 2)], dim=1)


def _hidden_loss(student_states, teacher_states, token_mask):
    """Masked MSE divided by the teacher state's masked mean square."""
    weight = token_mask[..., None].to(student_states.dtype)
    count = weight.sum() * student_states.shape[-1]
    error = ((student_states - teacher_states) ** 2 * weight).sum() / count
    scale = ((teacher_states**2) * weight).sum() / count
    return error / scale.clamp_min(1e-12)


def _soft_loss(task: str, student_logits, teacher_logits, temperature: float):
    import torch.nn.functional as F

    t = temperature
    if task == "nlvr2":
        return (
            F.kl_div(
                F.log_softmax(student_logits / t, -1),
                F.softmax(teacher_logits / t, -1),
                reduction="batchmean",
            )
            * t
            * t
        )
    # Summed over the answers and averaged over the batch, as the head was trained. The
    # teacher's own entropy is subtracted (it has no gradient), so the value is the binary KL
    # divergence: 0 when the student's scores equal the teacher's.
    targets = (teacher_logits / t).sigmoid()
    bce = F.binary_cross_entropy_with_logits(student_logits / t, targets)
    entropy = F.binary_cross_entropy_with_logits(teacher_logits / t, targets)
    return (bce - entropy) * student_logits.shape[-1] * t * t


def _label_loss(task: str, logits, targets, labeled):
    import torch.nn.functional as F

    if not labeled.any():
        return None
    logits, targets = logits[labeled], targets[labeled]
    if task == "nlvr2":
        return F.cross_entropy(logits, targets.long())
    return F.binary_cross_entropy_with_logits(logits, targets) * logits.shape[-1]


# ---------------------------------------------------------------------------------------------
# The run directory


def fingerprint(teacher_sha256: str, options: DistillOptions) -> str:
    text = json.dumps({"teacher": teacher_sha256, **options.recipe()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def prepare_out_dir(out: Path, run: dict, resume: bool) -> str:
    """'new', 'restart' (a previous run of this same distillation, not resumed) or 'resume'."""
    state = out / STATE_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        run_file = state / RUN_FILE
        if not run_file.is_file():
            raise InputError(
                f"{out} exists and is not a vilt-edge distill run directory; choose a new -o "
                "(nothing is overwritten)"
            )
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{run_file} is unreadable; choose a new -o") from None
        if previous.get("fingerprint") != run["fingerprint"]:
            changed = _differences(
                {"teacher": previous.get("teacher_sha256"), **previous.get("recipe", {})},
                {"teacher": run["teacher_sha256"], **run["recipe"]},
            )
            raise InputError(
                f"{out} holds a distillation of another configuration (differs in: "
                f"{', '.join(changed) or 'version'}); choose a new -o"
            )
        if resume:
            if (out / SUMMARY_FILE).is_file():
                return "finished"
            if not (state / CHECKPOINT_FILE).is_file():
                raise InputError(f"{out} has no checkpoint to resume (the run saved none yet)")
            return "resume"
        return "restart"
    if resume:
        raise InputError(f"--resume: {out} has no checkpoint to resume")
    return "new"


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(handle)
    try:
        torch.save(obj, temp)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise


def _atomic_write_text(path: Path, text: str) -> None:
    handle, temp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    with os.fdopen(handle, "w") as stream:
        stream.write(text)
    os.replace(temp, path)


def _clear_student_files(out: Path) -> None:
    """A restart removes the previous run's student (config.json first, so nothing half-old
    loads) but keeps the run directory."""
    for name in [_STUDENT_FILES_LAST, SUMMARY_FILE]:
        (out / name).unlink(missing_ok=True)
    for path in out.iterdir():
        if path.name == STATE_DIR:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (out / STATE_DIR / CHECKPOINT_FILE).unlink(missing_ok=True)


def write_student(
    student, teacher_dir_files: dict[str, bytes], preprocessor: dict, out: Path, summary: dict
) -> None:
    """The student as a Hugging Face ViLT directory; config.json is renamed into place last."""
    staging = Path(tempfile.mkdtemp(prefix=".student-", dir=out))
    try:
        student.save_pretrained(staging)
        config = json.loads((staging / "config.json").read_text())
        config["architectures"] = [type(student).__mro__[1].__name__]  # transformers' class
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, content in teacher_dir_files.items():
            (staging / name).write_bytes(content)
        (staging / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))
        names = sorted(p.name for p in staging.iterdir() if p.name != _STUDENT_FILES_LAST)
        for name in names + [_STUDENT_FILES_LAST]:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _tokenizer_files(loaded) -> dict[str, bytes]:
    files = {"tokenizer.json": loaded.tokenizer_json.encode("utf-8")}
    source = Path(loaded.source.get("model", ""))
    directory = source if source.is_dir() else None
    if loaded.source.get("kind") == "default":
        from vilt_edge.default_model import DEFAULT_WEIGHTS_DIR

        directory = DEFAULT_WEIGHTS_DIR
    if directory is not None:
        for name in _TEACHER_SIDE_FILES[1:]:
            if (directory / name).is_file():
                files[name] = (directory / name).read_bytes()
    return files


# ---------------------------------------------------------------------------------------------
# Training


def _device_and_bf16(options: DistillOptions):
    import torch

    device = options.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA GPU is available here")
    if options.bf16 is None:
        # bf16 autocast was measured slower than fp32 on the 2-core AVX-512 CPU (0.86 vs 0.55 s a
        # step training the default), so only CUDA GPUs with bf16 get it by default.
        bf16 = device.startswith("cuda") and torch.cuda.is_bf16_supported()
    else:
        bf16 = options.bf16
    return torch.device(device), bf16


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


def _logits(model, ids, mask, pixels):
    # Padding is masked out, so a batch only needs its longest question's length.
    length = int(mask.sum(1).max())
    return model(
        input_ids=ids[:, :length], attention_mask=mask[:, :length], pixel_values=pixels
    ).logits


def evaluate(
    model, examples: _Examples, data: DataSet, labels, cache, settings, device, batch_size: int = 64
) -> tuple[np.ndarray, dict | None]:
    """(logits, score summary or None when unlabeled) of `model` on every example."""
    import torch

    model.eval()
    logits = np.zeros((len(examples.images), len(labels)), dtype=np.float32)
    with torch.no_grad():
        for key in sorted(examples.buckets):
            rows = examples.buckets[key]
            for start in range(0, len(rows), batch_size):
                chunk = rows[start : start + batch_size]
                ids, mask, pixels = (
                    torch.from_numpy(examples.input_ids[chunk]).to(device),
                    torch.from_numpy(examples.attention_mask[chunk]).to(device),
                    _stack_pixels([cache.get(examples.images[i], settings) for i in chunk], device),
                )
                logits[chunk] = _logits(model, ids, mask, pixels).float().cpu().numpy()
    model.train()
    scored = score(data, labels, logits.argmax(-1)) if examples.labeled.all() else None
    return logits, scored


def distill(
    teacher_source: str,
    out: str | os.PathLike,
    options: DistillOptions,
    resume: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
    status: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Train a student and write it to `out`; returns the summary (also in distill_summary.json).

    Raises InputError / ModelError / DataError for bad input, before anything is written.
    """
    import torch
    from tokenizers import Tokenizer

    from vilt_edge.loading import load_model
    from vilt_edge.text import QuestionTokenizer
    from vilt_edge.train_default import adamw

    say = status or (lambda _message: None)
    out = Path(out)
    say("loading the teacher")
    loaded = load_model(teacher_source)
    teacher = loaded.model.eval()
    layer_map = plan_layers(int(loaded.config.num_hidden_layers), options.layers, options.layer_map)
    teacher_settings = loaded.preprocessing
    student_settings = teacher_settings
    if options.image_short_side is not None:
        if options.image_short_side < loaded.patch_size:
            raise InputError(
                f"--image-short-side must be at least the patch size ({loaded.patch_size})"
            )
        student_settings = replace(
            Preprocessing.for_shortest_edge(options.image_short_side, loaded.patch_size),
            resample=teacher_settings.resample,
            rescale_factor=teacher_settings.rescale_factor,
            image_mean=teacher_settings.image_mean,
            image_std=teacher_settings.image_std,
        )
    say("reading the data")
    data = load_data(options.data)
    check_task(data, loaded.task, "the teacher")
    run = {
        "format": 1,
        "teacher": str(teacher_source),
        "teacher_sha256": loaded.source["sha256"],
        "recipe": options.recipe(),
    }
    run["fingerprint"] = fingerprint(run["teacher_sha256"], options)
    mode = prepare_out_dir(out, run, resume)
    if mode == "finished":
        say(f"{out} already holds the finished student of this distillation")
        return json.loads((out / SUMMARY_FILE).read_text())

    device, bf16 = _device_and_bf16(options)
    group = _join_process_group(device)  # None unless launched by torchrun with several workers
    if group is not None:
        rank, world, local_rank = group
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
        _barrier()  # every worker has read the run directory before the first one changes it
    else:
        rank, world = 0, 1
    lead = rank == 0
    if options.threads:
        torch.set_num_threads(options.threads)
    tokenizer = QuestionTokenizer(Tokenizer.from_str(loaded.tokenizer_json), loaded.text_length)
    train_data, held_data = _split(data, options.eval_size, options.seed)
    say(f"preparing {len(data)} examples")
    train = _prepare(train_data, tokenizer, loaded.labels, teacher_settings, student_settings)
    held = (
        _prepare(held_data, tokenizer, loaded.labels, teacher_settings, student_settings)
        if held_data is not None
        else None
    )
    batches_per_epoch = sum(
        math.ceil(len(rows) / options.batch_size) for rows in train.buckets.values()
    )
    if options.steps is not None:
        total_steps = options.steps
    else:
        epochs = options.epochs if options.epochs is not None else DEFAULT_EPOCHS
        total_steps = max(1, math.ceil(epochs * batches_per_epoch / options.grad_accum))

    torch.manual_seed(options.seed)
    student = build_student(teacher, layer_map)
    teacher.to(device)
    student.to(device).train()
    trained = student  # what the training step calls: the student, or its DDP wrapper
    if group is not None:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None
        )
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    optimizer = adamw(student, options.lr, options.weight_decay)
    warmup = max(1, int(options.warmup_fraction * total_steps))

    def schedule(step: int) -> float:  # linear warm-up, cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    cache = _ImageCache()
    history: list[dict[str, Any]] = []
    step = 0
    elapsed_before = 0.0
    state_dir = out / STATE_DIR
    checkpoint_path = state_dir / CHECKPOINT_FILE

    if mode == "resume":
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if checkpoint.get("fingerprint") != run["fingerprint"]:
            raise InputError(f"{checkpoint_path} is a checkpoint of another configuration")
        student.load_state_dict(checkpoint["student"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        step = int(checkpoint["step"])
        history = json.loads(checkpoint["history"])
        elapsed_before = float(checkpoint["elapsed"])
        say(f"resuming at step {step} of {total_steps}")
    elif lead:
        if mode == "restart":
            _clear_student_files(out)
        state_dir.mkdir(parents=True, exist_ok=True)
        _atomic_write_text(state_dir / RUN_FILE, json.dumps(run, indent=2))
    if group is not None:
        _barrier()

    # The teacher's held-out answers: the reference for agreement, computed once.
    teacher_eval = None
    if held is not None and lead:
        say("evaluating the teacher on the held-out split")
        teacher_logits, teacher_scored = evaluate(
            teacher, held, held_data, loaded.labels, cache, teacher_settings, device
        )
        teacher_eval = {
            "accuracy": None if teacher_scored is None else teacher_scored["accuracy"],
            "predicted": teacher_logits.argmax(-1),
        }

    def held_out_eval() -> dict[str, Any] | None:
        if held is None or not lead:
            return None
        logits, scored = evaluate(
            student, held, held_data, loaded.labels, cache, student_settings, device
        )
        return {
            "step": step,
            "agreement": float(np.mean(logits.argmax(-1) == teacher_eval["predicted"])),
            "accuracy": None if scored is None else scored["accuracy"],
            "teacher_accuracy": teacher_eval["accuracy"],
        }

    def save_checkpoint() -> None:
        _atomic_torch_save(
            {
                "fingerprint": run["fingerprint"],
                "step": step,
                "student": student.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "torch_rng": torch.get_rng_state(),
                "history": json.dumps(history),
                "elapsed": elapsed_before + time.time() - started,
            },
            checkpoint_path,
        )

    eval_every = options.eval_every or max(1, batches_per_epoch // options.grad_accum)
    student_tap = _LayerTap(student.vilt.encoder.layer, list(range(len(layer_map))))
    teacher_tap = _LayerTap(teacher.vilt.encoder.layer, sorted(set(layer_map)))
    started = time.time()
    epoch_cache: dict[int, list[list[int]]] = {}
    try:
        while step < total_steps:
            optimizer.zero_grad(set_to_none=True)
            parts_sum: dict[str, float] = {}
            for micro in range(options.grad_accum):
                index = step * options.grad_accum + micro
                epoch, position = divmod(index, batches_per_epoch)
                if epoch not in epoch_cache:
                    epoch_cache.clear()
                    epoch_cache[epoch] = epoch_batches(
                        train, options.batch_size, options.seed, epoch
                    )
                rows = epoch_cache[epoch][position]
                if world > 1:  # each worker takes its share of the batch; DDP averages gradients
                    rows = rows[rank::world] or rows[:1]
                ids, mask, t_pixels, s_pixels, targets, labeled = _batch_tensors(
                    train,
                    rows,
                    cache,
                    teacher_settings,
                    student_settings,
                    device,
                    len(loaded.labels),
                    loaded.task,
                )
                teacher_tap.take()  # drop what evaluation calls left behind
                student_tap.take()
                length = int(mask.sum(1).max())
                autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
                with torch.no_grad(), autocast:
                    teacher_logits = _logits(teacher, ids, mask, t_pixels).float()
                teacher_states = teacher_tap.take()
                # Gradients are averaged across workers once per optimizer step, not per
                # micro-batch: the forward and backward of earlier micro-batches skip the sync.
                sync = contextlib.ExitStack()
                if group is not None and micro < options.grad_accum - 1:
                    sync.enter_context(trained.no_sync())
                with autocast:
                    student_logits = _logits(trained, ids, mask, s_pixels).float()
                student_states = student_tap.take()
                soft = _soft_loss(loaded.task, student_logits, teacher_logits, options.temperature)
                loss = soft
                parts = {"soft": soft.item()}
                if options.hidden_weight > 0:
                    hidden = 0.0
                    for i, teacher_index in enumerate(layer_map):
                        # One state per encoder pass: NLVR2 encodes each image of the pair in
                        # its own pass, at its own size.
                        for position, (s_state, t_state) in enumerate(
                            zip(student_states[i], teacher_states[teacher_index], strict=True)
                        ):
                            aligned = _align_tokens(
                                t_state.float(),
                                length,
                                _image_grid(s_pixels, position, loaded.patch_size),
                                _image_grid(t_pixels, position, loaded.patch_size),
                            )
                            token_mask = torch.cat(
                                [
                                    mask[:, :length],
                                    torch.ones(
                                        len(rows),
                                        s_state.shape[1] - length,
                                        device=device,
                                        dtype=mask.dtype,
                                    ),
                                ],
                                dim=1,
                            )
                            hidden = hidden + _hidden_loss(s_state.float(), aligned, token_mask)
                    hidden = hidden / sum(len(student_states[i]) for i in student_states)
                    loss = loss + options.hidden_weight * hidden
                    parts["hidden"] = hidden.item()
                if options.label_weight > 0:
                    truth = _label_loss(loaded.task, student_logits, targets, labeled)
                    if truth is not None:
                        loss = loss + options.label_weight * truth
                        parts["label"] = truth.item()
                (loss / options.grad_accum).backward()
                sync.close()
                for key, value in parts.items():
                    parts_sum[key] = parts_sum.get(key, 0.0) + value / options.grad_accum
            torch.nn.utils.clip_grad_norm_(student.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            step += 1
            total_loss = sum(
                parts_sum[k]
                * {"soft": 1.0, "hidden": options.hidden_weight, "label": options.label_weight}[k]
                for k in parts_sum
            )
            message = ""
            if step % eval_every == 0 or step == total_steps:
                result = held_out_eval()
                if result is not None:
                    result["seconds"] = round(elapsed_before + time.time() - started, 1)
                    history.append(result)
                    accuracy = result["accuracy"]
                    message = f"held-out agreement {result['agreement']:.4f}" + (
                        "" if accuracy is None else f", accuracy {accuracy:.4f}"
                    )
            if lead and step % options.checkpoint_every == 0 and step < total_steps:
                save_checkpoint()
            if on_progress is not None and lead:
                on_progress(Progress(step, total_steps, total_loss, parts_sum, message))
    finally:
        student_tap.close()
        teacher_tap.close()

    seconds = elapsed_before + time.time() - started
    student.eval()
    if not lead:  # the first worker writes the student
        _barrier()
        _leave_process_group()
        return {}
    final = history[-1] if history else None
    summary = {
        "teacher": str(teacher_source),
        "teacher_sha256": loaded.source["sha256"],
        "task": loaded.task,
        "teacher_layers": int(loaded.config.num_hidden_layers),
        "student_layers": len(layer_map),
        "layer_map": layer_map,
        "teacher_image_short_side": teacher_settings.shortest_edge,
        "student_image_short_side": student_settings.shortest_edge,
        "data": data.name,
        "train_examples": len(train.images),
        "held_out_examples": 0 if held is None else len(held.images),
        "labeled": bool(train.labeled.any()),
        "steps": step,
        "epochs": round(step * options.grad_accum / batches_per_epoch, 3),
        "train_seconds": round(seconds, 1),
        "device": str(device),
        "bf16": bf16,
        "threads": torch.get_num_threads(),
        "workers": world,
        "held_out": final,
        "history": history,
        "recipe": options.recipe(),
        "fingerprint": run["fingerprint"],
    }
    student.cpu()
    write_student(
        student,
        _tokenizer_files(loaded),
        student_settings.to_hf_config(),
        out,
        summary,
    )
    checkpoint_path.unlink(missing_ok=True)
    if group is not None:
        _barrier()
        _leave_process_group()
    return summary


# ---------------------------------------------------------------------------------------------
# Several GPUs or machines: torch's own DDP under torchrun, e.g.
#   torchrun --nproc_per_node 8 -m vilt_edge.cli distill TEACHER --layers 4 --data ... -o OUT


def _join_process_group(device) -> tuple[int, int, int] | None:
    """(rank, world size, local rank) when torchrun started several workers, else None."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return None
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0"))


def _barrier() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()


def _leave_process_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def is_lead_worker() -> bool:
    """False in the non-first workers of a torchrun launch (they print nothing)."""
    return int(os.environ.get("RANK", "0")) == 0


__all__ = [
    "DistillOptions",
    "Progress",
    "build_student",
    "distill",
    "parse_layer_map",
    "plan_layers",
]

"""The options of a distillation, the run directory's file names, and the checks of both."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vilt_edge.errors import InputError

STATE_DIR = ".distill"
RUN_FILE = "run.json"
CHECKPOINT_FILE = "checkpoint.pt"
SUMMARY_FILE = "distill_summary.json"


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


@dataclass(frozen=True)
class DistillResult:
    """The student written to `student` and its summary (`summary`: what distill_summary.json
    holds; `to_json()`: that with the student's path, as `--json` prints it)."""

    student: Path
    summary: dict[str, Any]

    @property
    def task(self) -> str:
        return self.summary["task"]

    @property
    def teacher_layers(self) -> int:
        return self.summary["teacher_layers"]

    @property
    def student_layers(self) -> int:
        return self.summary["student_layers"]

    @property
    def layer_map(self) -> tuple[int, ...]:
        return tuple(self.summary["layer_map"])

    @property
    def steps(self) -> int:
        return self.summary["steps"]

    @property
    def train_seconds(self) -> float:
        return self.summary["train_seconds"]

    @property
    def held_out(self) -> dict[str, Any] | None:
        """The last held-out evaluation: agreement with the teacher, accuracies."""
        return self.summary.get("held_out")

    def to_json(self) -> dict[str, Any]:
        return {"student": str(self.student), **self.summary}

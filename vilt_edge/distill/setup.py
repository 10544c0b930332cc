"""Setting a distillation up: the teacher and the data read (before anything is written), the
workers joined, the examples prepared, the student and its optimizer built, and the run
directory resumed from or started."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Preprocessing
from vilt_edge.data import DataSet, check_task, load_data
from vilt_edge.distill.checkpoints import _clear_student_files, fingerprint
from vilt_edge.distill.data import _Examples, _ImageCache, _prepare, _split
from vilt_edge.distill.options import (
    CHECKPOINT_FILE,
    DEFAULT_EPOCHS,
    RUN_FILE,
    STATE_DIR,
    DistillOptions,
    plan_layers,
)
from vilt_edge.distill.student import build_student
from vilt_edge.distill.workers import _barrier, _device_and_bf16, _join_process_group
from vilt_edge.errors import InputError
from vilt_edge.outputs import write_file_atomically


@dataclass
class _Plan:
    """The teacher, the data and the run's configuration (what `.distill/run.json` holds)."""

    loaded: Any
    teacher: Any
    layer_map: list[int]
    teacher_settings: Preprocessing
    student_settings: Preprocessing
    data: DataSet
    run: dict[str, Any]


@dataclass
class _Workers:
    device: Any
    bf16: bool
    group: tuple[int, int, int] | None  # None unless launched by torchrun with several workers
    rank: int
    world: int

    @property
    def lead(self) -> bool:
        return self.rank == 0


@dataclass
class _Inputs:
    train: _Examples
    held_data: DataSet | None
    held: _Examples | None
    batches_per_epoch: int
    total_steps: int


@dataclass
class _Training:
    student: Any
    trained: Any  # what the training step calls: the student, or its DDP wrapper
    optimizer: Any
    scheduler: Any
    checkpoint_path: Path
    cache: _ImageCache = field(default_factory=_ImageCache)
    history: list[dict[str, Any]] = field(default_factory=list)
    step: int = 0
    elapsed_before: float = 0.0
    started: float = 0.0
    teacher_eval: dict[str, Any] | None = None


@dataclass
class _Job:
    """One distillation run, as the training loop sees it."""

    options: DistillOptions
    out: Path
    say: Callable[[str], None]
    plan: _Plan
    workers: _Workers
    inputs: _Inputs
    training: _Training


def read_plan(teacher_source: str, options: DistillOptions, say: Callable[[str], None]) -> _Plan:
    from vilt_edge.model.loading import load_model

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
    return _Plan(loaded, teacher, layer_map, teacher_settings, student_settings, data, run)


def set_up(
    plan: _Plan, options: DistillOptions, out: Path, mode: str, say: Callable[[str], None]
) -> _Job:
    """Everything between the run directory's check and the first training step."""
    workers = _start_workers(options)
    inputs = _prepare_inputs(plan, options, say)
    training = _build_training(plan, workers, inputs, options, out)
    job = _Job(options, out, say, plan, workers, inputs, training)
    _resume_or_start(job, mode)
    return job


def _start_workers(options: DistillOptions) -> _Workers:
    import torch

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
    if options.threads:
        torch.set_num_threads(options.threads)
    return _Workers(device, bf16, group, rank, world)


def _prepare_inputs(plan: _Plan, options: DistillOptions, say: Callable[[str], None]) -> _Inputs:
    from tokenizers import Tokenizer

    from vilt_edge.text import QuestionTokenizer

    loaded = plan.loaded
    tokenizer = QuestionTokenizer(Tokenizer.from_str(loaded.tokenizer_json), loaded.text_length)
    teacher_settings, student_settings = plan.teacher_settings, plan.student_settings
    train_data, held_data = _split(plan.data, options.eval_size, options.seed)
    say(f"preparing {len(plan.data)} examples")
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
    return _Inputs(train, held_data, held, batches_per_epoch, total_steps)


def _build_training(
    plan: _Plan, workers: _Workers, inputs: _Inputs, options: DistillOptions, out: Path
) -> _Training:
    import torch

    from vilt_edge.model.train_default import adamw

    device, teacher = workers.device, plan.teacher
    torch.manual_seed(options.seed)
    student = build_student(teacher, plan.layer_map)
    teacher.to(device)
    student.to(device).train()
    trained = student  # what the training step calls: the student, or its DDP wrapper
    if workers.group is not None:
        from torch.nn.parallel import DistributedDataParallel

        trained = DistributedDataParallel(
            student, device_ids=[device.index] if device.type == "cuda" else None
        )
    for parameter in teacher.parameters():
        parameter.requires_grad_(False)

    optimizer = adamw(student, options.lr, options.weight_decay)
    total_steps = inputs.total_steps
    warmup = max(1, int(options.warmup_fraction * total_steps))

    def schedule(step: int) -> float:  # linear warm-up, cosine decay to 0
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    checkpoint_path = out / STATE_DIR / CHECKPOINT_FILE
    return _Training(student, trained, optimizer, scheduler, checkpoint_path)


def _resume_or_start(job: _Job, mode: str) -> None:
    """Load the checkpoint of a resumed run, or (first worker) write a new run's run.json."""
    import torch

    training, out = job.training, job.out
    state_dir = out / STATE_DIR
    checkpoint_path = training.checkpoint_path
    if mode == "resume":
        checkpoint = torch.load(checkpoint_path, map_location=job.workers.device, weights_only=True)
        if checkpoint.get("fingerprint") != job.plan.run["fingerprint"]:
            raise InputError(f"{checkpoint_path} is a checkpoint of another configuration")
        training.student.load_state_dict(checkpoint["student"])
        training.optimizer.load_state_dict(checkpoint["optimizer"])
        training.scheduler.load_state_dict(checkpoint["scheduler"])
        torch.set_rng_state(checkpoint["torch_rng"])
        training.step = int(checkpoint["step"])
        training.history = json.loads(checkpoint["history"])
        training.elapsed_before = float(checkpoint["elapsed"])
        job.say(f"resuming at step {training.step} of {job.inputs.total_steps}")
    elif job.workers.lead:
        if mode == "restart":
            _clear_student_files(out)
        state_dir.mkdir(parents=True, exist_ok=True)
        write_file_atomically(state_dir / RUN_FILE, json.dumps(job.plan.run, indent=2))
    if job.workers.group is not None:
        _barrier()

"""Training: `distill()`, the optimizer step and its micro-batches, held-out evaluation, and the
student written when training ends."""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.data import DataSet, score
from vilt_edge.distill.checkpoints import (
    _atomic_torch_save,
    _tokenizer_files,
    prepare_out_dir,
    write_student,
)
from vilt_edge.distill.data import (
    _batch_tensors,
    _Examples,
    _image_grid,
    _stack_pixels,
    epoch_batches,
)
from vilt_edge.distill.losses import _align_tokens, _hidden_loss, _label_loss, _LayerTap, _soft_loss
from vilt_edge.distill.options import SUMMARY_FILE, DistillOptions, DistillResult, Progress
from vilt_edge.distill.setup import _Job, read_plan, set_up
from vilt_edge.distill.workers import _barrier, _leave_process_group


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
) -> DistillResult | None:
    """Train a student and write it to `out`; returns it with its summary (also in
    distill_summary.json). Under torchrun only the first worker gets the result; others None.

    Raises InputError / ModelError / DataError for bad input, before anything is written.
    """
    say = status or (lambda _message: None)
    out = Path(out)
    plan = read_plan(teacher_source, options, say)
    mode = prepare_out_dir(out, plan.run, resume)
    if mode == "finished":
        say(f"{out} already holds the finished student of this distillation")
        return DistillResult(out, json.loads((out / SUMMARY_FILE).read_text()))
    job = set_up(plan, options, out, mode, say)
    _evaluate_teacher(job)
    _train(job, on_progress)
    summary = _finish(job)
    return DistillResult(out, summary) if summary else None


def _evaluate_teacher(job: _Job) -> None:
    # The teacher's held-out answers: the reference for agreement, computed once.
    plan, inputs, training = job.plan, job.inputs, job.training
    if inputs.held is not None and job.workers.lead:
        job.say("evaluating the teacher on the held-out split")
        teacher_logits, teacher_scored = evaluate(
            plan.teacher,
            inputs.held,
            inputs.held_data,
            plan.loaded.labels,
            training.cache,
            plan.teacher_settings,
            job.workers.device,
        )
        training.teacher_eval = {
            "accuracy": None if teacher_scored is None else teacher_scored.accuracy,
            "predicted": teacher_logits.argmax(-1),
        }


def _held_out_eval(job: _Job) -> dict[str, Any] | None:
    plan, inputs, training = job.plan, job.inputs, job.training
    if inputs.held is None or not job.workers.lead:
        return None
    logits, scored = evaluate(
        training.student,
        inputs.held,
        inputs.held_data,
        plan.loaded.labels,
        training.cache,
        plan.student_settings,
        job.workers.device,
    )
    teacher_eval = training.teacher_eval
    return {
        "step": training.step,
        "agreement": float(np.mean(logits.argmax(-1) == teacher_eval["predicted"])),
        "accuracy": None if scored is None else scored.accuracy,
        "teacher_accuracy": teacher_eval["accuracy"],
    }


def _save_checkpoint(job: _Job) -> None:
    import torch

    training = job.training
    _atomic_torch_save(
        {
            "fingerprint": job.plan.run["fingerprint"],
            "step": training.step,
            "student": training.student.state_dict(),
            "optimizer": training.optimizer.state_dict(),
            "scheduler": training.scheduler.state_dict(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(training.history),
            "elapsed": training.elapsed_before + time.time() - training.started,
        },
        training.checkpoint_path,
    )


def _train(job: _Job, on_progress: Callable[[Progress], None] | None) -> None:
    options, training, layer_map = job.options, job.training, job.plan.layer_map
    eval_every = options.eval_every or max(1, job.inputs.batches_per_epoch // options.grad_accum)
    student_tap = _LayerTap(training.student.vilt.encoder.layer, list(range(len(layer_map))))
    teacher_tap = _LayerTap(job.plan.teacher.vilt.encoder.layer, sorted(set(layer_map)))
    training.started = time.time()
    epoch_cache: dict[int, list[list[int]]] = {}
    try:
        while training.step < job.inputs.total_steps:
            parts_sum = _optimizer_step(job, student_tap, teacher_tap, epoch_cache)
            _after_step(job, parts_sum, eval_every, on_progress)
    finally:
        student_tap.close()
        teacher_tap.close()


def _optimizer_step(
    job: _Job, student_tap: _LayerTap, teacher_tap: _LayerTap, epoch_cache: dict
) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches; the loss parts, averaged over them."""
    import torch

    options, training, workers = job.options, job.training, job.workers
    batches_per_epoch = job.inputs.batches_per_epoch
    training.optimizer.zero_grad(set_to_none=True)
    parts_sum: dict[str, float] = {}
    for micro in range(options.grad_accum):
        index = training.step * options.grad_accum + micro
        epoch, position = divmod(index, batches_per_epoch)
        if epoch not in epoch_cache:
            epoch_cache.clear()
            epoch_cache[epoch] = epoch_batches(
                job.inputs.train, options.batch_size, options.seed, epoch
            )
        rows = epoch_cache[epoch][position]
        if workers.world > 1:  # each worker takes its share of the batch; DDP averages gradients
            rows = rows[workers.rank :: workers.world] or rows[:1]
        last = micro == options.grad_accum - 1
        parts = _micro_batch(job, rows, student_tap, teacher_tap, last)
        for key, value in parts.items():
            parts_sum[key] = parts_sum.get(key, 0.0) + value / options.grad_accum
    torch.nn.utils.clip_grad_norm_(training.student.parameters(), 1.0)
    training.optimizer.step()
    training.scheduler.step()
    training.step += 1
    return parts_sum


def _micro_batch(
    job: _Job, rows: list[int], student_tap: _LayerTap, teacher_tap: _LayerTap, last: bool
) -> dict[str, float]:
    """Forward both models on one micro-batch and backward its loss; returns the loss parts."""
    import torch

    options, plan, device = job.options, job.plan, job.workers.device
    loaded = plan.loaded
    ids, mask, t_pixels, s_pixels, targets, labeled = _batch_tensors(
        job.inputs.train,
        rows,
        job.training.cache,
        plan.teacher_settings,
        plan.student_settings,
        device,
        len(loaded.labels),
        loaded.task,
    )
    teacher_tap.take()  # drop what evaluation calls left behind
    student_tap.take()
    length = int(mask.sum(1).max())
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=job.workers.bf16)
    with torch.no_grad(), autocast:
        teacher_logits = _logits(plan.teacher, ids, mask, t_pixels).float()
    teacher_states = teacher_tap.take()
    # Gradients are averaged across workers once per optimizer step, not per micro-batch: the
    # forward and backward of earlier micro-batches skip the sync.
    sync = contextlib.ExitStack()
    if job.workers.group is not None and not last:
        sync.enter_context(job.training.trained.no_sync())
    with autocast:
        student_logits = _logits(job.training.trained, ids, mask, s_pixels).float()
    student_states = student_tap.take()
    soft = _soft_loss(loaded.task, student_logits, teacher_logits, options.temperature)
    loss = soft
    parts = {"soft": soft.item()}
    if options.hidden_weight > 0:
        hidden = _hidden_term(
            plan.layer_map,
            student_states,
            teacher_states,
            mask,
            length,
            (s_pixels, t_pixels),
            loaded.patch_size,
            len(rows),
            device,
        )
        loss = loss + options.hidden_weight * hidden
        parts["hidden"] = hidden.item()
    if options.label_weight > 0:
        truth = _label_loss(loaded.task, student_logits, targets, labeled)
        if truth is not None:
            loss = loss + options.label_weight * truth
            parts["label"] = truth.item()
    (loss / options.grad_accum).backward()
    sync.close()
    return parts


def _hidden_term(
    layer_map, student_states, teacher_states, mask, length, pixels, patch_size, batch, device
):
    """The hidden-state loss, averaged over the student's layers and encoder passes."""
    import torch

    s_pixels, t_pixels = pixels
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
                _image_grid(s_pixels, position, patch_size),
                _image_grid(t_pixels, position, patch_size),
            )
            token_mask = torch.cat(
                [
                    mask[:, :length],
                    torch.ones(
                        batch,
                        s_state.shape[1] - length,
                        device=device,
                        dtype=mask.dtype,
                    ),
                ],
                dim=1,
            )
            hidden = hidden + _hidden_loss(s_state.float(), aligned, token_mask)
    return hidden / sum(len(student_states[i]) for i in student_states)


def _after_step(
    job: _Job,
    parts_sum: dict[str, float],
    eval_every: int,
    on_progress: Callable[[Progress], None] | None,
) -> None:
    """Held-out evaluation, checkpoint and progress report due after an optimizer step."""
    options, training, lead = job.options, job.training, job.workers.lead
    step, total_steps = training.step, job.inputs.total_steps
    total_loss = sum(
        parts_sum[k]
        * {"soft": 1.0, "hidden": options.hidden_weight, "label": options.label_weight}[k]
        for k in parts_sum
    )
    message = ""
    if step % eval_every == 0 or step == total_steps:
        result = _held_out_eval(job)
        if result is not None:
            result["seconds"] = round(training.elapsed_before + time.time() - training.started, 1)
            training.history.append(result)
            accuracy = result["accuracy"]
            message = f"held-out agreement {result['agreement']:.4f}" + (
                "" if accuracy is None else f", accuracy {accuracy:.4f}"
            )
    if lead and step % options.checkpoint_every == 0 and step < total_steps:
        _save_checkpoint(job)
    if on_progress is not None and lead:
        on_progress(Progress(step, total_steps, total_loss, parts_sum, message))


def _finish(job: _Job) -> dict[str, Any]:
    """Write the student (first worker) and return the summary; other workers return {}."""
    import torch

    options, plan, inputs, training, workers = (
        job.options,
        job.plan,
        job.inputs,
        job.training,
        job.workers,
    )
    loaded, student, step = plan.loaded, training.student, training.step
    seconds = training.elapsed_before + time.time() - training.started
    student.eval()
    if not workers.lead:  # the first worker writes the student
        _barrier()
        _leave_process_group()
        return {}
    final = training.history[-1] if training.history else None
    summary = {
        "teacher": plan.run["teacher"],
        "teacher_sha256": loaded.source["sha256"],
        "task": loaded.task,
        "teacher_layers": int(loaded.config.num_hidden_layers),
        "student_layers": len(plan.layer_map),
        "layer_map": plan.layer_map,
        "teacher_image_short_side": plan.teacher_settings.shortest_edge,
        "student_image_short_side": plan.student_settings.shortest_edge,
        "data": plan.data.name,
        "train_examples": len(inputs.train.images),
        "held_out_examples": 0 if inputs.held is None else len(inputs.held.images),
        "labeled": bool(inputs.train.labeled.any()),
        "steps": step,
        "epochs": round(step * options.grad_accum / inputs.batches_per_epoch, 3),
        "train_seconds": round(seconds, 1),
        "device": str(workers.device),
        "bf16": workers.bf16,
        "threads": torch.get_num_threads(),
        "workers": workers.world,
        "held_out": final,
        "history": training.history,
        "recipe": options.recipe(),
        "fingerprint": plan.run["fingerprint"],
    }
    student.cpu()
    write_student(
        student,
        _tokenizer_files(loaded),
        plan.student_settings.to_hf_config(),
        job.out,
        summary,
    )
    training.checkpoint_path.unlink(missing_ok=True)
    if workers.group is not None:
        _barrier()
        _leave_process_group()
    return summary

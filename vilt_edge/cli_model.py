"""The model-side commands (they need the `model` extra: torch, transformers): export, distill,
pipeline, train-default. `cli.py` registers them beside the deploy-side ones."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Annotated

import typer

from vilt_edge import cli_render as render
from vilt_edge.cli_common import (
    AsJson,
    Overwrite,
    Threads,
    check_threads,
    fail,
    needs_extra,
    status,
    summarize_warnings,
    target_help,
    truncation_warnings,
)


def export(
    model: Annotated[
        str, typer.Argument(help="HF ViLT directory, Lightning .ckpt, hub id, or 'default'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 17).")] = 17,
    exporter: Annotated[
        str, typer.Option(help="torch exporter: dynamo or torchscript.")
    ] = "dynamo",
    overwrite: Overwrite = False,
) -> None:
    """Export MODEL to a torch-free bundle (ONNX, tokenizer, preprocessing, labels, manifest)."""
    try:
        from vilt_edge.model.export import export_bundle
    except ImportError as error:
        fail(f"export needs the model extra: pip install 'vilt-edge[model]' ({error.name} missing)")
    with status(f"exporting {model}"):
        bundle = export_bundle(model, out, opset=opset, exporter=exporter, overwrite=overwrite)
    manifest = bundle.manifest
    size_mb = (bundle.model_path.stat().st_size) / 1e6
    typer.echo(
        f"wrote {bundle.path} ({manifest.task}, {manifest.precision}, opset {opset}, "
        f"{size_mb:.1f} MB model, text length {manifest.text_length})"
    )


def distill(
    teacher: Annotated[
        str,
        typer.Argument(help="Teacher: HF ViLT directory, Lightning .ckpt, hub id or 'default'."),
    ],
    layers: Annotated[int, typer.Option(help="Student encoder layers (below the teacher's).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Student directory (HF ViLT) to write.")],
    data: Annotated[
        str,
        typer.Option(
            help="vqav2:DIR, nlvr2:PATH, frames:PATH (labels optional) or easy-vqa[:train|test]."
        ),
    ] = "easy-vqa:train",
    layer_map: Annotated[
        str | None, typer.Option(help="Teacher layer per student layer, e.g. 1,3,5.")
    ] = None,
    image_short_side: Annotated[
        int | None, typer.Option(help="Student input's shorter side (fewer patches).")
    ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimizer steps.")] = None,
    epochs: Annotated[float | None, typer.Option(help="Epochs (default 8).")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per micro-batch.")] = 32,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    lr: Annotated[float, typer.Option(help="Peak learning rate (warm-up, cosine).")] = 5e-4,
    temperature: Annotated[float, typer.Option(help="Soft-target temperature.")] = 1.0,
    hidden_weight: Annotated[float, typer.Option(help="Weight of the hidden-state loss.")] = 1.0,
    label_weight: Annotated[
        float, typer.Option(help="Weight of the ground-truth loss (labeled data).")
    ] = 1.0,
    eval_size: Annotated[int, typer.Option(help="Held-out examples for evaluation.")] = 500,
    eval_every: Annotated[int, typer.Option(help="Evaluate every N steps (0: each epoch).")] = 0,
    checkpoint_every: Annotated[int, typer.Option(help="Checkpoint every N steps.")] = 100,
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    bf16: Annotated[
        bool | None, typer.Option("--bf16/--no-bf16", help="bf16 autocast (default: on CUDA).")
    ] = None,
    threads: Threads = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
    as_json: AsJson = False,
) -> None:
    """Distill the teacher into a student with fewer layers (optionally fewer image tokens)."""
    try:
        from vilt_edge.distill import DistillOptions, is_lead_worker, parse_layer_map
        from vilt_edge.distill import distill as run_distill
    except ImportError as error:
        needs_extra("distill", "model", error)
    check_threads(threads)
    options = DistillOptions(
        layers=layers,
        data=data,
        layer_map=parse_layer_map(layer_map),
        image_short_side=image_short_side,
        steps=steps,
        epochs=epochs,
        batch_size=batch_size,
        grad_accum=grad_accum,
        lr=lr,
        temperature=temperature,
        hidden_weight=hidden_weight,
        label_weight=label_weight,
        eval_size=eval_size,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
        seed=seed,
        bf16=bf16,
        threads=threads,
        device=device,
    )
    lead = is_lead_worker()  # under torchrun, only the first worker prints
    as_json = as_json or not lead
    with (
        render.DistillReporter(quiet=as_json) as reporter,
        warnings.catch_warnings(record=True) as caught,
    ):
        warnings.simplefilter("always")
        result = run_distill(teacher, out, options, resume, reporter.on_progress, reporter.status)
    if not lead:
        return
    summarize_warnings(truncation_warnings(caught))
    typer.echo(json.dumps(result.to_json()) if as_json else render.distill_line(result))


def pipeline(
    model: Annotated[
        str, typer.Argument(help="Teacher: HF ViLT directory, .ckpt, or 'default'.")
    ] = "default",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every stage's output.")] = (
        Path("out/pipeline")
    ),
    target: Annotated[str, typer.Option(help=target_help())] = "cpu",
    data: Annotated[
        str | None, typer.Option(help="Validation data (default for 'default': easy-vqa:test).")
    ] = None,
    train: Annotated[
        str | None,
        typer.Option(help="Distillation/calibration data (default for 'default': easy-vqa:train)."),
    ] = None,
    layers: Annotated[
        int | None, typer.Option(help="Student layers (default: a third of the teacher's).")
    ] = None,
    no_distill: Annotated[bool, typer.Option("--no-distill", help="Skip the student.")] = False,
    epochs: Annotated[float, typer.Option(help="Distillation epochs.")] = 3.0,
    lr: Annotated[float, typer.Option(help="Distillation peak learning rate.")] = 5e-4,
    limit: Annotated[int | None, typer.Option(help="Validate on the first N examples.")] = None,
    threads: Threads = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous pipeline run in OUT.")] = (
        False
    ),
) -> None:
    """Distill, quantize, compile, validate every variant against the FP32 teacher, report."""
    try:
        from vilt_edge.pipeline import PipelineOptions, run_pipeline
    except ImportError as error:
        needs_extra("pipeline", "model", error)
    options = PipelineOptions(
        model=model, target=target, data=data, train=train, layers=layers,
        distill=not no_distill, epochs=epochs, lr=lr, limit=limit, threads=threads,
        overwrite=overwrite,
    )  # fmt: skip
    progress = render.pipeline_progress()
    step = progress.add_task("starting", total=None)

    def stage(message: str) -> None:
        if progress.console.is_terminal:  # a log of stages for people; piped stderr: errors only
            progress.console.print(f"[bold]pipeline[/bold]: {message}")
        progress.update(step, description=message, completed=0, total=None)

    def advance(label: str, done: int, total: int) -> None:
        progress.update(step, completed=done, total=total)

    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = run_pipeline(options, out, stage, advance)
    summarize_warnings(caught)
    typer.echo(result.report.markdown.read_text(encoding="utf-8"))
    if result.distill_setting:
        typer.echo(f"distilled: {result.distill_setting}", err=True)
    if result.note:
        typer.echo(f"note: {result.note}", err=True)
    typer.echo(f"report: {result.report.html}")


def train_default_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="HF ViLT directory to write.")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    peak_lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 3e-4,
    init_from: Annotated[
        Path | None, typer.Option(help="Continue from a previous run's directory.")
    ] = None,
    eval_every: Annotated[
        int, typer.Option(help="Also test every N epochs (adds time; 0: only at the end).")
    ] = 0,
) -> None:
    """Train the embedded easy-VQA default from scratch (seeded; ~48 min on 2 cores)."""
    from vilt_edge.model.train_default import DefaultRecipe, train_default

    if out.exists():
        fail(f"output exists: {out}")
    summary = train_default(
        out,
        DefaultRecipe(epochs=epochs, seed=seed, peak_lr=peak_lr),
        eval_every_epochs=eval_every,
        init_from=init_from,
    )
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))

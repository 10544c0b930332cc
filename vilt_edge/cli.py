"""The `vilt-edge` command line: parse, call, print. Heavy imports happen inside commands, so
`vilt-edge --help` stays fast and the deploy commands never import torch."""

from __future__ import annotations

import functools
import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from vilt_edge.errors import ViltEdgeError

app = typer.Typer(
    help="Take a trained ViLT (VQA / NLVR2) to edge devices: export, ask, and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def _user_errors(command):
    """Turn a user-caused error into one line on stderr and its exit code (also under
    typer's CliRunner, which does not go through `main`)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ViltEdgeError as error:
            _fail(str(error).strip().replace("\n", " "), error.exit_code)

    return wrapper


def _status(message: str):
    from rich.console import Console

    return Console(stderr=True).status(message)


@app.command()
@_user_errors
def export(
    model: Annotated[
        str, typer.Argument(help="HF ViLT directory, Lightning .ckpt, hub id, or 'default'.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write.")],
    opset: Annotated[int, typer.Option(help="ONNX opset (>= 17).")] = 17,
    exporter: Annotated[
        str, typer.Option(help="torch exporter: dynamo or torchscript.")
    ] = "dynamo",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
) -> None:
    """Export MODEL to a torch-free bundle (ONNX, tokenizer, preprocessing, labels, manifest)."""
    try:
        from vilt_edge.export import export_bundle
    except ImportError as error:
        _fail(
            f"export needs the model extra: pip install 'vilt-edge[model]' ({error.name} missing)"
        )
    with _status(f"exporting {model}"):
        bundle = export_bundle(model, out, opset=opset, exporter=exporter, overwrite=overwrite)
    manifest = bundle.manifest
    size_mb = (bundle.model_path.stat().st_size) / 1e6
    typer.echo(
        f"wrote {bundle.path} ({manifest.task}, {manifest.precision}, opset {opset}, "
        f"{size_mb:.1f} MB model, text length {manifest.text_length})"
    )


@app.command()
@_user_errors
def ask(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    image: Annotated[
        list[Path], typer.Option("--image", "-i", help="Image file (twice for NLVR2: left, right).")
    ],
    question: Annotated[str, typer.Option("--question", "-q", help="Question or NLVR2 sentence.")],
    top_k: Annotated[int, typer.Option("--top-k", help="How many answers to print.")] = 5,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Answer a question about an image with a bundle."""
    from vilt_edge.runtime import ViltRuntime

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        runtime = ViltRuntime.load(bundle, threads=threads)
        images = image[0] if len(image) == 1 else tuple(image)
        answers = runtime.ask(images, question, top_k=top_k)
    for warning in caught:
        typer.echo(f"warning: {warning.message}", err=True)
    latency = {k: round(v, 3) for k, v in runtime.last_latency_ms.items()}
    if as_json:
        typer.echo(json.dumps({"answers": [a.to_json() for a in answers], "latency_ms": latency}))
        return
    for answer in answers:
        typer.echo(f"{answer.score:7.4f}  {answer.answer}")
    typer.echo(
        f"latency: preprocess {latency['preprocess']:.1f} ms, model {latency['model']:.1f} ms, "
        f"total {latency['total']:.1f} ms",
        err=True,
    )


@app.command()
@_user_errors
def validate(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    data: Annotated[str, typer.Option(help="Data spec: easy-vqa[:test|train].")] = "easy-vqa:test",
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples.")] = None,
    show: Annotated[
        int, typer.Option(help="Also answer N examples one by one and print them.")
    ] = 0,
    batch_size: Annotated[int, typer.Option(help="Examples per model call.")] = 32,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Measure a bundle's accuracy on a data set (latency measured in the same run)."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
    from rich.table import Table

    from vilt_edge.runtime import ViltRuntime
    from vilt_edge.validate import load_data_spec
    from vilt_edge.validate import validate as run_validation

    if limit is not None and limit < 1:
        _fail("--limit must be at least 1", 2)
    if batch_size < 1:
        _fail("--batch-size must be at least 1", 2)
    name, examples = load_data_spec(data)
    examples = examples[:limit] if limit else examples
    runtime = ViltRuntime.load(bundle, threads=threads)
    console = Console()
    if show and not as_json:
        table = Table("question", "answer", "score", "truth", "ms", title=f"{bundle} on {name}")
        for example in examples[:show]:
            top = runtime.ask(example.image_path, example.question, top_k=1)[0]
            mark = "" if top.answer == example.answers[0] else " [red]x[/red]"
            table.add_row(
                example.question,
                top.answer + mark,
                f"{top.score:.3f}",
                example.answers[0],
                f"{runtime.last_latency_ms['total']:.1f}",
            )
        console.print(table)
    with Progress(
        "[bold]validate",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=as_json,
    ) as progress:
        task = progress.add_task("validate", total=len(examples))
        result = run_validation(
            runtime,
            examples,
            name,
            batch_size=batch_size,
            on_progress=lambda n: progress.advance(task, n),
        )
    if as_json:
        typer.echo(json.dumps(result.to_json()))
        return
    by_type = ", ".join(f"{k} {v:.2%}" for k, v in result.accuracy_by_type.items())
    console.print(
        f"{name}: accuracy {result.accuracy:.2%} on {result.n} questions ({by_type}); "
        f"{result.per_example_ms:.2f} ms per question end to end at batch {batch_size}"
    )


@app.command("train-default")
@_user_errors
def train_default_command(
    out: Annotated[Path, typer.Option("--out", "-o", help="HF ViLT directory to write.")],
    epochs: Annotated[int, typer.Option(help="Training epochs.")] = 12,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    peak_lr: Annotated[float, typer.Option(help="Peak learning rate (one-cycle).")] = 3e-4,
    init_from: Annotated[
        Path | None, typer.Option(help="Continue from a previous run's directory.")
    ] = None,
) -> None:
    """Train the embedded easy-VQA default from scratch (seeded; about an hour on 2 cores)."""
    from vilt_edge.train_default import DefaultRecipe, train_default

    if out.exists():
        _fail(f"output exists: {out}")
    summary = train_default(
        out,
        DefaultRecipe(epochs=epochs, seed=seed, peak_lr=peak_lr),
        eval_every_epochs=2,
        init_from=init_from,
    )
    typer.echo(json.dumps({k: v for k, v in summary.items() if k != "history"}, indent=2))


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app()
    except ViltEdgeError as error:
        message = str(error).strip().replace("\n", " ")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

"""The `vilt-edge` command line: parse, call, print. Each command parses its options, calls one
stage and prints its typed result (`cli_render`; `--json`: the result's `to_json()`). Shared
option types and failure handling are in `cli_common`; remote runs in `remote`. Heavy imports
happen inside commands, so `vilt-edge --help` stays fast and the deploy commands never import
torch."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from typing import Annotated

import typer

from vilt_edge import cli_model, cli_serve
from vilt_edge import cli_render as render
from vilt_edge.cli_common import (
    AsJson,
    Overwrite,
    RemoteHost,
    RemotePython,
    SshConfig,
    Threads,
    check_threads,
    error_line,
    fail,
    load_bundle,
    load_runtime,
    needs_extra,
    progress_bar,
    status,
    summarize_warnings,
    target_help,
    truncation_warnings,
    user_errors,
)
from vilt_edge.errors import ViltEdgeError

app = typer.Typer(
    help="Take a trained ViLT (VQA / NLVR2) to edge devices: export, ask, and more.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def ask(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    image: Annotated[
        list[Path], typer.Option("--image", "-i", help="Image file (twice for NLVR2: left, right).")
    ],
    question: Annotated[str, typer.Option("--question", "-q", help="Question or NLVR2 sentence.")],
    top_k: Annotated[int, typer.Option("--top-k", help="How many answers to print.")] = 5,
    threads: Threads = None,
    as_json: AsJson = False,
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


def validate(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    data: Annotated[
        str, typer.Option(help="vqav2:DIR, nlvr2:PATH or easy-vqa[:test|train].")
    ] = "easy-vqa:test",
    questions: Annotated[
        Path | None, typer.Option(help="VQAv2 questions JSON (with --data vqav2).")
    ] = None,
    annotations: Annotated[
        Path | None, typer.Option(help="VQAv2 annotations JSON (with --data vqav2).")
    ] = None,
    images: Annotated[
        Path | None, typer.Option(help="VQAv2 image folder (with --data vqav2).")
    ] = None,
    reference: Annotated[
        str | None,
        typer.Option(
            help="Bundle to measure drift against; default: the FP32 source named in the "
            "manifest; 'none' for no reference."
        ),
    ] = None,
    limit: Annotated[int | None, typer.Option(help="Use only the first N examples.")] = None,
    batch_size: Annotated[int, typer.Option(help="Examples per model call.")] = 1,
    threads: Threads = None,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up batches.")] = 5,
    name: Annotated[str | None, typer.Option(help="Variant name in results and reports.")] = None,
    show: Annotated[int, typer.Option(help="Also print the first N examples' answers.")] = 0,
    as_json: AsJson = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the full results (for `vilt-edge report`).")
    ] = None,
    remote: RemoteHost = None,
    python: RemotePython = "python3",
    ssh_config: SshConfig = None,
) -> None:
    """Accuracy on a data set, drift against the FP32 reference, and latency, in one run."""
    from vilt_edge.data import load_data
    from vilt_edge.results import write_results
    from vilt_edge.validate import check_inputs, reference_from_manifest, summary_json
    from vilt_edge.validate import validate as run_validation

    if limit is not None and limit < 1:
        fail("--limit must be at least 1", 2)
    if batch_size < 1:
        fail("--batch-size must be at least 1", 2)
    if warmup < 0:
        fail("--warmup must not be negative", 2)
    if out is not None and out.is_dir():
        fail(f"--out {out} is a folder; give a file name, e.g. {out}/results.json", 2)
    if out is not None:  # before the run: an earlier results file only, never a user's file
        from vilt_edge.outputs import check_replaceable

        check_replaceable(out, "results")
    if remote is not None:
        from vilt_edge.remote import validate_remote

        if show:
            fail("--show is not available with --remote", 2)
        args = ["--data", data, "--batch-size", str(batch_size), "--warmup", str(warmup)]
        for flag, value in (("--questions", questions), ("--annotations", annotations),
                            ("--images", images), ("--limit", limit), ("--threads", threads),
                            ("--name", name)):  # fmt: skip
            if value is not None:
                args += [flag, str(value)]
        with status(f"validating {bundle} on {remote}"):
            results = validate_remote(bundle, remote, python, ssh_config, reference, args)
        if out is not None:
            write_results(results, out)
        typer.echo(json.dumps({**summary_json(results), "remote": remote}))
        return
    dataset = load_data(data, questions=questions, annotations=annotations, images=images)
    dataset = dataset.limited(limit)
    runtime = load_runtime(bundle, threads)
    reference_runtime = None
    if reference is None:
        reference = reference_from_manifest(runtime)
        if reference is not None and not Path(reference).is_dir():
            typer.echo(
                f"warning: the reference {reference} named in the manifest is not there; "
                "validating without one (pass --reference BUNDLE)",
                err=True,
            )
            reference = None
    if reference is not None and reference.lower() != "none":
        reference_runtime = load_runtime(reference, threads)
    check_inputs(runtime, dataset, reference_runtime)
    total = len(dataset) * (2 if reference_runtime is not None else 1)
    with progress_bar("validate", as_json) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = bar.add_task("validate", total=total)
        results = run_validation(
            runtime,
            dataset,
            reference=reference_runtime,
            batch_size=batch_size,
            warmup=warmup,
            name=name,
            on_progress=lambda n: bar.advance(task, n),
        )
    summarize_warnings(caught)
    if out is not None:
        write_results(results, out)
    if as_json:
        typer.echo(json.dumps(summary_json(results)))
        return
    render.print_validation(results, dataset, show, batch_size)
    if out is not None:
        typer.echo(f"wrote {out}", err=True)


def bench(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    image_size: Annotated[
        str | None, typer.Option(help="HEIGHTxWIDTH; default: the bundle's square size.")
    ] = None,
    text_len: Annotated[
        int | None, typer.Option(help="Question tokens; default: the bundle's text length.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Examples per call.")] = 1,
    threads: Threads = None,
    runs: Annotated[int, typer.Option(help="Timed runs after 5 warm-up runs.")] = 50,
    as_json: AsJson = False,
    remote: RemoteHost = None,
    python: RemotePython = "python3",
    ssh_config: SshConfig = None,
) -> None:
    """Model latency on synthetic inputs of one shape (p50/p90/p99, throughput)."""
    from vilt_edge.bench import bench as run_bench
    from vilt_edge.bench import parse_image_size

    size = parse_image_size(image_size) if image_size is not None else None
    if remote is not None:
        from vilt_edge.remote import bench_remote

        args = ["bench", "{bundle}", "--json", "--batch", str(batch), "--runs", str(runs)]
        for flag, value in (("--image-size", image_size), ("--text-len", text_len),
                            ("--threads", threads)):  # fmt: skip
            if value is not None:
                args += [flag, str(value)]
        with status(f"benchmarking {bundle} on {remote}"):
            figures = bench_remote(bundle, remote, python, ssh_config, args)
    else:
        runtime = load_runtime(bundle, threads)
        with status(f"benchmarking {bundle}"):
            result = run_bench(runtime, image_size=size, text_len=text_len, batch=batch, runs=runs)
        figures = result.to_json()
    if as_json:
        typer.echo(json.dumps(figures))
        return
    typer.echo(render.bench_line(figures))


def compile_command(
    bundle: Annotated[
        str, typer.Argument(help="Bundle directory (FP32, INT8 or FP16), or 'default'.")
    ],
    target: Annotated[str, typer.Option(help=target_help())],
    out: Annotated[
        Path | None, typer.Option("--out", "-o", help="Compiled bundle to write.")
    ] = None,
    max_batch: Annotated[int, typer.Option(help="Largest batch the engine accepts.")] = 1,
    image_sizes: Annotated[
        str | None,
        typer.Option(help="HxW[,HxW...]: image sizes the engine must take (TensorRT profiles)."),
    ] = None,
    image_short_side: Annotated[
        int | None,
        typer.Option(help="Preprocess to this shorter side: fewer image tokens, faster."),
    ] = None,
    compiler: Annotated[
        str | None,
        typer.Option(
            help="GPU targets: tensorrt, torch-tensorrt or torch-cuda (default: the "
            "profile's runtime)."
        ),
    ] = None,
    dla: Annotated[bool, typer.Option("--dla", help="Run on the DLA, GPU fallback.")] = False,
    check: Annotated[
        bool, typer.Option("--check", help="Readiness check only; writes nothing.")
    ] = False,
    threads: Threads = None,
    workspace_gb: Annotated[
        float | None, typer.Option(help="TensorRT builder workspace (default: from the profile).")
    ] = None,
    tensorrt_version: Annotated[
        str | None,
        typer.Option(help="Without TensorRT here: the device's version to check against."),
    ] = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Ready a bundle for a device: ONNX Runtime for CPUs, a TensorRT engine for Jetsons/GPUs."""
    from vilt_edge.bench import parse_image_size
    from vilt_edge.compile import CompileOptions, compile_bundle

    sizes = tuple(parse_image_size(s) for s in image_sizes.split(",")) if image_sizes else ()
    if out is None and not check:
        fail("--out is required (or pass --check)", 2)
    options = CompileOptions(
        target=target,
        max_batch=max_batch,
        image_sizes=sizes,
        image_short_side=image_short_side,
        compiler=compiler,
        dla=dla,
        check_only=check,
        threads=threads,
        workspace_gb=workspace_gb,
        overwrite=overwrite,
        tensorrt_version=tensorrt_version,
    )
    spinner = status(f"compiling {bundle} for {target}")
    with spinner:
        result = compile_bundle(bundle, out, options, status=spinner.update)
    if as_json:
        typer.echo(json.dumps(result.to_json(), indent=2))
    elif check:
        typer.echo(f"{result.target}: ready ({len(result.checks)} checks passed)")
    else:
        typer.echo(f"wrote {result.bundle.path} for {result.target}")
    if result.note:
        typer.echo(result.note, err=True)


def devices(
    detect: Annotated[bool, typer.Option("--detect", help="Name this host's profile.")] = False,
    floor: Annotated[
        str | None,
        typer.Option(help="Bundle (or 'default') whose latency floor to predict per device."),
    ] = None,
    image_size: Annotated[
        str | None, typer.Option(help="HEIGHTxWIDTH for --floor; default: the bundle's size.")
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Device profiles (from vilt_edge/devices/profiles and $VILT_EDGE_DEVICES), the host's, and
    roofline floors."""
    from vilt_edge.devices import describe_machine, detect_host, load_profiles, machine_description

    if detect:
        host = detect_host()
        if host is None:
            fail(f"no device profile matches this host ({describe_machine(machine_description())})")
        typer.echo(json.dumps(host.to_json(), indent=2) if as_json else host.name)
        return
    profiles = list(load_profiles().values())
    floors: dict[str, dict] = {}
    if floor is not None:
        from vilt_edge.bench import parse_image_size
        from vilt_edge.devices.roofline import count_graph, predict_floor

        bundle = load_bundle(floor)
        size = parse_image_size(image_size) if image_size else bundle.default_image_size
        patch = bundle.manifest.patch_size
        if min(size) < patch or size[0] % patch or size[1] % patch:
            fail(f"image size {size[0]}x{size[1]} must be positive multiples of {patch}", 2)
        with status(f"counting {bundle.path.name}'s operations at {size[0]}x{size[1]}"):
            cost = count_graph(  # an NLVR2 example is one encoder pass per image
                bundle.model_path,
                size,
                batch=bundle.manifest.num_images,
                text_length=bundle.manifest.text_length,
            )
        floors = {p.name: predict_floor(cost, p).to_json() for p in profiles}
    if as_json:
        rows = [{**p.to_json(), **({"floor": floors[p.name]} if floors else {})} for p in profiles]
        typer.echo(json.dumps(rows, indent=2))
        return
    render.print_devices(profiles, floors, floor)


def report(
    results: Annotated[
        list[Path], typer.Argument(help="Results files from `vilt-edge validate --out`.")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder to write.")],
) -> None:
    """Accuracy-versus-latency report (PNG plot, Markdown, self-contained HTML)."""
    try:
        from vilt_edge.report import write_report
    except ImportError as error:
        needs_extra("report", "report", error)
    paths = write_report(results, out)
    typer.echo(paths.markdown.read_text(encoding="utf-8"))
    typer.echo(f"wrote {paths.html}, {paths.markdown} and {paths.png}", err=True)


def quantize(
    bundle: Annotated[str, typer.Argument(help="FP32 bundle directory, or 'default'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write.")],
    precision: Annotated[
        str, typer.Option(help="int8, fp16 or bf16 (BF16: CPUs with AMX-BF16 or AVX512-BF16).")
    ] = "int8",
    mode: Annotated[str, typer.Option(help="INT8 mode: static (Q/DQ) or dynamic.")] = "static",
    calib: Annotated[
        str | None,
        typer.Option(
            help="Calibration data spec (default for the embedded model: easy-vqa:train)."
        ),
    ] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration examples (at least 16).")] = 128,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    target: Annotated[str, typer.Option(help=target_help("The device it runs on"))] = "cpu",
    max_drop: Annotated[
        float | None,
        typer.Option(help="Accuracy budget in points; keep sensitive layers FP32 to meet it."),
    ] = None,
    eval_size: Annotated[int, typer.Option(help="Held-out examples for --max-drop.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed for choosing calibration examples.")] = 0,
    threads: Threads = None,
    overwrite: Overwrite = False,
    as_json: AsJson = False,
) -> None:
    """Quantize an FP32 bundle to INT8 (static or dynamic), FP16 or BF16, as a new bundle."""
    try:
        from vilt_edge.quantize import QuantizeOptions, quantize_bundle
    except ImportError as error:
        needs_extra("quantize", "quantize", error)
    from rich.console import Console

    options = QuantizeOptions(
        precision=precision.lower(),
        mode=mode.lower(),
        calib=calib,
        calib_size=calib_size,
        method=method.lower(),
        target=target,
        max_drop=max_drop,
        eval_size=eval_size,
        seed=seed,
        threads=threads,
        overwrite=overwrite,
    )
    options.check()
    check_threads(threads)
    console = Console(stderr=True)
    with progress_bar("quantize", as_json) as bar, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, description=stage)

        def on_status(message: str) -> None:
            if not as_json:
                console.print(f"[dim]{message}[/dim]")

        result = quantize_bundle(bundle, out, options, on_status, on_progress)
    summarize_warnings(truncation_warnings(caught))
    typer.echo(json.dumps(result.to_json()) if as_json else render.quantize_line(result))


# The commands, in the order `vilt-edge --help` lists them.
COMMANDS = (
    ("export", cli_model.export),
    ("ask", ask),
    ("validate", validate),
    ("bench", bench),
    ("compile", compile_command),
    ("devices", devices),
    ("report", report),
    ("quantize", quantize),
    ("distill", cli_model.distill),
    ("pipeline", cli_model.pipeline),
    ("train-default", cli_model.train_default_command),
    ("serve", cli_serve.serve),
    ("watch", cli_serve.watch),
)
for _name, _command in COMMANDS:
    app.command(_name)(user_errors(_command))


def main() -> None:
    """Console entry point: user errors become one line on stderr and a non-zero exit."""
    try:
        app()
    except ViltEdgeError as error:
        print(f"error: {error_line(error)}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()

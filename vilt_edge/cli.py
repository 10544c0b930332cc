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


def _load_bundle(bundle: str):
    from vilt_edge.default_model import open_bundle

    return open_bundle(bundle)


def _load_runtime(bundle: str, threads: int | None):
    from vilt_edge.runtime import ViltRuntime

    if threads is not None and threads < 1:
        _fail("--threads must be at least 1", 2)
    return ViltRuntime.load(bundle, threads=threads)


def _progress(label: str, disable: bool):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    return Progress(
        f"[bold]{label}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
    )


def _summarize_warnings(caught) -> None:
    """One line per kind of warning, with a count, instead of one per example."""
    counts: dict[str, int] = {}
    first: dict[str, str] = {}
    for warning in caught:
        kind = warning.category.__name__
        counts[kind] = counts.get(kind, 0) + 1
        first.setdefault(kind, str(warning.message))
    for kind, count in counts.items():
        more = f" (and {count - 1} more like it)" if count > 1 else ""
        typer.echo(f"warning: {first[kind]}{more}", err=True)


def _ms(latency: dict[str, float] | None) -> str:
    if not latency:
        return "-"
    return f"{latency['p50']:.2f} / {latency['p90']:.2f} / {latency['p99']:.2f}"


@app.command()
@_user_errors
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
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    warmup: Annotated[int, typer.Option(help="Untimed warm-up batches.")] = 5,
    name: Annotated[str | None, typer.Option(help="Variant name in results and reports.")] = None,
    show: Annotated[int, typer.Option(help="Also print the first N examples' answers.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Write the full results (for `vilt-edge report`).")
    ] = None,
    remote: Annotated[
        str | None,
        typer.Option(help="[user@]host: run there over ssh (--data is read there)."),
    ] = None,
    python: Annotated[
        str, typer.Option(help="With --remote: the Python that has vilt-edge there.")
    ] = "python3",
    ssh_config: Annotated[
        str | None, typer.Option(help="With --remote: an ssh config file (ssh -F).")
    ] = None,
) -> None:
    """Accuracy on a data set, drift against the FP32 reference, and latency, in one run."""
    from vilt_edge.results import describe_machine, write_results
    from vilt_edge.validate import check_inputs, load_data, reference_from_manifest, summary_json
    from vilt_edge.validate import validate as run_validation

    if limit is not None and limit < 1:
        _fail("--limit must be at least 1", 2)
    if batch_size < 1:
        _fail("--batch-size must be at least 1", 2)
    if warmup < 0:
        _fail("--warmup must not be negative", 2)
    if out is not None and out.is_dir():
        _fail(f"--out {out} is a folder; give a file name, e.g. {out}/results.json", 2)
    if out is not None:  # before the run: an earlier results file only, never a user's file
        from vilt_edge.outputs import check_replaceable

        check_replaceable(out, "results")
    if remote is not None:
        if show:
            _fail("--show is not available with --remote", 2)
        results = _validate_remote(
            bundle, remote, python, ssh_config, reference,
            ["--data", data, "--batch-size", str(batch_size), "--warmup", str(warmup)]
            + [a for flag, value in (("--questions", questions), ("--annotations", annotations),
                                     ("--images", images), ("--limit", limit),
                                     ("--threads", threads), ("--name", name))
               if value is not None for a in (flag, str(value))],
        )  # fmt: skip
        if out is not None:
            write_results(results, out)
        typer.echo(json.dumps({**summary_json(results), "remote": remote}))
        return
    dataset = load_data(data, questions=questions, annotations=annotations, images=images)
    dataset = dataset.limited(limit)
    runtime = _load_runtime(bundle, threads)
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
        reference_runtime = _load_runtime(reference, threads)
    check_inputs(runtime, dataset, reference_runtime)
    total = len(dataset) * (2 if reference_runtime is not None else 1)
    with _progress("validate", as_json) as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        task = progress.add_task("validate", total=total)
        results = run_validation(
            runtime,
            dataset,
            reference=reference_runtime,
            batch_size=batch_size,
            warmup=warmup,
            name=name,
            on_progress=lambda n: progress.advance(task, n),
        )
    _summarize_warnings(caught)
    if out is not None:
        write_results(results, out)
    if as_json:
        typer.echo(json.dumps(summary_json(results)))
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if show:
        labels = [p["answer"] for p in results.predictions[:show]]
        table = Table("question", "answer", "truth", title=f"first {show} of {dataset.name}")
        for example, answer in zip(dataset.examples[:show], labels, strict=False):
            if dataset.task == "nlvr2":
                truth, question = str(example.label), example.sentence
            else:
                truth, question = example.answers[0], example.question
            table.add_row(question, answer, truth)
        console.print(table)
    table = Table("measure", "value", title=f"{results.name} on {results.data} (n={results.n})")
    table.add_row("accuracy", f"{results.accuracy:.2%}")
    for group, value in results.accuracy_by_type.items():
        table.add_row(f"  {group}", f"{value:.2%}")
    if results.consistency is not None:
        table.add_row("consistency", f"{results.consistency:.2%}")
    if results.reference is not None:
        table.add_row("reference accuracy", f"{results.reference['accuracy']:.2%}")
        table.add_row("accuracy delta (points)", f"{results.accuracy_delta:+.2f}")
        table.add_row("top-1 agreement", f"{results.agreement:.2%}")
        table.add_row("mean logit cosine", f"{results.logit_cosine:.6f}")
        table.add_row("max-abs logit diff", f"{results.max_abs_logit_diff:.4g}")
    table.add_row(f"model ms p50/p90/p99 (batch {batch_size})", _ms(results.latency_ms))
    table.add_row("end-to-end ms p50/p90/p99", _ms(results.e2e_latency_ms))
    table.add_row("throughput (examples/s)", f"{results.throughput:.1f}")
    if results.deploy_peak_rss_mb is not None:
        table.add_row("deploy peak RSS (MB; load and answer)", f"{results.deploy_peak_rss_mb:.0f}")
    table.add_row("validating process peak RSS (MB)", f"{results.peak_rss_mb:.0f}")
    table.add_row("threads", str(results.threads))
    table.add_row("machine", describe_machine(results.machine))
    console.print(table)
    if out is not None:
        typer.echo(f"wrote {out}", err=True)


def _validate_remote(bundle, remote, python, ssh_config, reference, args):
    """`validate` on a remote host: copy the bundle (and its reference), run, fetch the results."""
    from vilt_edge.remote import Remote
    from vilt_edge.results import Results

    local = _load_bundle(bundle)
    bundles = {"bundle": local.path}
    if reference is None:
        source = (local.manifest.source or {}).get("bundle")
        reference = source if source and Path(source).is_dir() else "none"
    if reference.lower() != "none":
        bundles["reference"] = _load_bundle(reference).path
        args = [*args, "--reference", "{reference}"]
    else:
        args = [*args, "--reference", "none"]
    with _status(f"validating {bundle} on {remote}"):
        _, fetched = Remote(remote, python, ssh_config).run_vilt_edge(
            bundles,
            ["validate", "{bundle}", *args, "--json", "--out", "{work}/results.json"],
            fetch="results.json",
        )
    data = json.loads(fetched)
    # Name the bundles as they are here (the remote copies are gone); say where it ran.
    data["variant"].update(bundle=str(local.path), remote=remote)
    if data.get("reference") and "reference" in bundles:
        data["reference"]["bundle"] = str(bundles["reference"])
    return Results.from_json(data)


@app.command()
@_user_errors
def bench(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    image_size: Annotated[
        str | None, typer.Option(help="HEIGHTxWIDTH; default: the bundle's square size.")
    ] = None,
    text_len: Annotated[
        int | None, typer.Option(help="Question tokens; default: the bundle's text length.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Examples per call.")] = 1,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    runs: Annotated[int, typer.Option(help="Timed runs after 5 warm-up runs.")] = 50,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    remote: Annotated[
        str | None, typer.Option(help="[user@]host: run there over ssh, bring the results back.")
    ] = None,
    python: Annotated[
        str, typer.Option(help="With --remote: the Python that has vilt-edge there.")
    ] = "python3",
    ssh_config: Annotated[
        str | None, typer.Option(help="With --remote: an ssh config file (ssh -F).")
    ] = None,
) -> None:
    """Model latency on synthetic inputs of one shape (p50/p90/p99, throughput)."""
    from vilt_edge.bench import bench as run_bench
    from vilt_edge.bench import parse_image_size
    from vilt_edge.results import describe_machine

    size = parse_image_size(image_size) if image_size is not None else None
    if remote is not None:
        from vilt_edge.remote import Remote

        local = _load_bundle(bundle)  # verified here before it travels
        args = ["bench", "{bundle}", "--json", "--batch", str(batch), "--runs", str(runs)]
        for flag, value in (("--image-size", image_size), ("--text-len", text_len),
                            ("--threads", threads)):  # fmt: skip
            if value is not None:
                args += [flag, str(value)]
        with _status(f"benchmarking {bundle} on {remote}"):
            figures, _ = Remote(remote, python, ssh_config).run_vilt_edge(
                {"bundle": local.path}, args
            )
        figures["remote"] = remote
    else:
        runtime = _load_runtime(bundle, threads)
        with _status(f"benchmarking {bundle}"):
            figures = run_bench(runtime, image_size=size, text_len=text_len, batch=batch, runs=runs)
    if as_json:
        typer.echo(json.dumps(figures))
        return
    latency = figures["latency_ms"]
    typer.echo(
        f"{figures['bundle']} ({figures['precision']}, {figures['runtime']}, "
        f"{figures['threads']} threads) at {figures['image_size']}, {figures['text_len']} tokens, "
        f"batch {figures['batch']}: p50 {latency['p50']:.2f} ms, p90 {latency['p90']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms, {figures['throughput']:.1f} examples/s "
        f"({figures['runs']} runs; {describe_machine(figures['machine'])})"
    )


@app.command("compile")
@_user_errors
def compile_command(
    bundle: Annotated[
        str, typer.Argument(help="Bundle directory (FP32, INT8 or FP16), or 'default'.")
    ],
    target: Annotated[
        str, typer.Option(help="Device profile (`vilt-edge devices`), or cpu for this host.")
    ],
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
    threads: Annotated[int | None, typer.Option(help="CPU targets: inference threads.")] = None,
    workspace_gb: Annotated[
        float | None, typer.Option(help="TensorRT builder workspace (default: from the profile).")
    ] = None,
    tensorrt_version: Annotated[
        str | None,
        typer.Option(help="Without TensorRT here: the device's version to check against."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing --out.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Ready a bundle for a device: ONNX Runtime for CPUs, a TensorRT engine for Jetsons/GPUs."""
    from vilt_edge.bench import parse_image_size
    from vilt_edge.compile import CompileOptions, compile_bundle

    sizes = tuple(parse_image_size(s) for s in image_sizes.split(",")) if image_sizes else ()
    if out is None and not check:
        _fail("--out is required (or pass --check)", 2)
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
    status = _status(f"compiling {bundle} for {target}")
    with status:
        built, summary = compile_bundle(bundle, out, options, status=status.update)
    if as_json:
        typer.echo(json.dumps(summary, indent=2))
    elif check:
        typer.echo(f"{summary['target']}: ready ({len(summary.get('checks', []))} checks passed)")
    else:
        typer.echo(f"wrote {built.path} for {summary['target']}")
    if summary.get("note"):
        typer.echo(summary["note"], err=True)


@app.command()
@_user_errors
def devices(
    detect: Annotated[bool, typer.Option("--detect", help="Name this host's profile.")] = False,
    floor: Annotated[
        str | None,
        typer.Option(help="Bundle (or 'default') whose latency floor to predict per device."),
    ] = None,
    image_size: Annotated[
        str | None, typer.Option(help="HEIGHTxWIDTH for --floor; default: the bundle's size.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Device profiles (from vilt_edge/devices/profiles), the host's, and roofline floors."""
    from vilt_edge.devices import detect_host, load_profiles

    if detect:
        host = detect_host()
        if host is None:
            from vilt_edge.results import describe_machine, machine_description

            machine = describe_machine(machine_description())
            _fail(f"no device profile matches this host ({machine})")
        typer.echo(json.dumps(host.to_json(), indent=2) if as_json else host.name)
        return
    profiles = list(load_profiles().values())
    floors: dict[str, dict] = {}
    if floor is not None:
        from vilt_edge.bench import parse_image_size
        from vilt_edge.roofline import count_graph, predict_floor

        bundle = _load_bundle(floor)
        size = parse_image_size(image_size) if image_size else bundle.default_image_size
        patch = bundle.manifest.patch_size
        if min(size) < patch or size[0] % patch or size[1] % patch:
            _fail(f"image size {size[0]}x{size[1]} must be positive multiples of {patch}", 2)
        with _status(f"counting {bundle.path.name}'s operations at {size[0]}x{size[1]}"):
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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="device profiles" + (f" and floors of {floor}" if floors else ""))
    table.add_column("name", no_wrap=True)
    for column in ("kind", "runtime", "precisions", "memory", "bandwidth", "INT8 dense",
                   "FP16 dense", "DLA", "TensorRT"):  # fmt: skip
        table.add_column(column)
    if floors:
        table.add_column("floor", no_wrap=True)
    for p in profiles:
        row = [
            p.name,
            p.kind,
            p.runtime,
            ",".join(p.precisions),
            f"{p.memory_gb:g} GB",
            f"{p.memory_bandwidth_gbs:g} GB/s",
            f"{p.peak_int8_tops:g} TOPS",
            f"{p.peak_fp16_tflops:g} TFLOPS" if p.peak_fp16_tflops else "-",
            str(p.dla_cores),
            ", ".join(p.tensorrt) or "-",
        ]
        if floors:
            f = floors[p.name]
            row.append(f"{f['floor_ms']:.3g} ms ({f['bound']})")
        table.add_row(*row)
    Console().print(table)


@app.command()
@_user_errors
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
        _fail(f"report needs the report extra: pip install 'vilt-edge[report]' ({error.name})")
    paths = write_report(results, out)
    typer.echo(paths.markdown.read_text(encoding="utf-8"))
    typer.echo(f"wrote {paths.html}, {paths.markdown} and {paths.png}", err=True)


@app.command()
@_user_errors
def quantize(
    bundle: Annotated[str, typer.Argument(help="FP32 bundle directory, or 'default'.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Bundle directory to write.")],
    precision: Annotated[str, typer.Option(help="int8 or fp16.")] = "int8",
    mode: Annotated[str, typer.Option(help="INT8 mode: static (Q/DQ) or dynamic.")] = "static",
    calib: Annotated[
        str | None,
        typer.Option(
            help="Calibration data spec (default for the embedded model: easy-vqa:train)."
        ),
    ] = None,
    calib_size: Annotated[int, typer.Option(help="Calibration examples (at least 16).")] = 128,
    method: Annotated[str, typer.Option(help="minmax, entropy or percentile.")] = "minmax",
    target: Annotated[
        str, typer.Option(help="cpu, x86-avx512-vnni, x86-avx2, arm64, jetson-*, cuda-gpu.")
    ] = "cpu",
    max_drop: Annotated[
        float | None,
        typer.Option(help="Accuracy budget in points; keep sensitive layers FP32 to meet it."),
    ] = None,
    eval_size: Annotated[int, typer.Option(help="Held-out examples for --max-drop.")] = 500,
    seed: Annotated[int, typer.Option(help="Seed for choosing calibration examples.")] = 0,
    threads: Annotated[int | None, typer.Option(help="Inference threads.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing bundle.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Quantize an FP32 bundle to INT8 (static or dynamic) or FP16, as a new bundle."""
    try:
        from vilt_edge.quantize import QuantizeOptions, quantize_bundle
    except ImportError as error:
        _fail(
            f"quantize needs the quantize extra: pip install 'vilt-edge[quantize]' ({error.name})"
        )
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
    if threads is not None and threads < 1:
        _fail("--threads must be at least 1", 2)
    if out.exists() and not overwrite:
        _fail(f"output exists: {out} (choose another path or pass --overwrite)", 4)
    console = Console(stderr=True)
    with _progress("quantize", as_json) as progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tasks: dict[str, int] = {}

        def on_progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, description=stage)

        def status(message: str) -> None:
            if not as_json:
                console.print(f"[dim]{message}[/dim]")

        result, summary = quantize_bundle(bundle, out, options, status, on_progress)
    _summarize_warnings([w for w in caught if w.category.__name__ == "QuestionTruncatedWarning"])
    if as_json:
        typer.echo(json.dumps({"bundle": str(result.path), **summary}))
        return
    size_mb = result.model_path.stat().st_size / 1e6
    text = f"wrote {result.path} ({summary['precision']}"
    if summary["precision"] == "int8":
        text += f" {summary['mode']}, {summary['preset']['name']} preset"
    text += f", {size_mb:.1f} MB model)"
    fallback = summary.get("fallback")
    if fallback:
        kept = ", ".join(fallback["groups_kept_fp32"]) or "none"
        text += (
            f"; held-out drop {fallback['measured_drop']:.2f} points "
            f"(budget {fallback['max_drop']:g}), agreement {fallback['agreement']:.2%}, "
            f"layers kept FP32: {kept}"
        )
    if summary["precision"] == "fp16":
        text += f"; {len(summary['nodes_kept_fp32'])} nodes kept FP32 by the overflow check"
    typer.echo(text)


@app.command()
@_user_errors
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
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    device: Annotated[str | None, typer.Option(help="cpu or cuda (default: cuda if any).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
) -> None:
    """Distill the teacher into a student with fewer layers (optionally fewer image tokens)."""
    try:
        from vilt_edge.distill import DistillOptions, is_lead_worker, parse_layer_map
        from vilt_edge.distill import distill as run_distill
    except ImportError as error:
        _fail(f"distill needs the model extra: pip install 'vilt-edge[model]' ({error.name})")
    from rich.console import Console

    if threads is not None and threads < 1:
        _fail("--threads must be at least 1", 2)
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
    console = Console(stderr=True)
    # Set-up messages show on a transient spinner (nothing when stderr is not a terminal), so a
    # bad input still ends in exactly one line on stderr.
    spinner = console.status("distill: starting")
    progress = _distill_progress(as_json)
    task = None

    def on_progress(report) -> None:
        nonlocal task
        if task is None:
            spinner.stop()
            progress.start()
            task = progress.add_task("distill", total=report.total, status="")
        status = f"loss {report.loss:.3f}"
        if report.message:
            status = report.message
            progress.console.print(f"step {report.step}: {report.message}")
        progress.update(task, completed=report.step, status=status)

    def status(message: str) -> None:
        if task is None and not as_json:
            spinner.update(f"distill: {message}")

    if not as_json:
        spinner.start()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            summary = run_distill(teacher, out, options, resume, on_progress, status)
    finally:
        spinner.stop()
        if task is not None:
            progress.stop()
    if not lead:
        return
    _summarize_warnings([w for w in caught if w.category.__name__ == "QuestionTruncatedWarning"])
    if as_json:
        typer.echo(json.dumps({"student": str(out), **summary}))
        return
    held = summary.get("held_out") or {}
    text = (
        f"wrote {out}: {summary['student_layers']} of {summary['teacher_layers']} layers "
        f"(teacher layers {summary['layer_map']}), {summary['steps']} steps in "
        f"{summary['train_seconds']:.0f} s"
    )
    if held:
        text += f"; held-out agreement with the teacher {held['agreement']:.2%}"
        if held.get("accuracy") is not None:
            text += f", accuracy {held['accuracy']:.2%} (teacher {held['teacher_accuracy']:.2%})"
    typer.echo(text)


def _distill_progress(disable: bool):
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(
        "[bold]distill",
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        disable=disable,
    )


@app.command()
@_user_errors
def pipeline(
    model: Annotated[
        str, typer.Argument(help="Teacher: HF ViLT directory, .ckpt, or 'default'.")
    ] = "default",
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder for every stage's output.")] = (
        Path("out/pipeline")
    ),
    target: Annotated[str, typer.Option(help="Device profile, or cpu for this host.")] = "cpu",
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
    threads: Annotated[int | None, typer.Option(help="CPU threads.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace a previous pipeline run in OUT.")] = (
        False
    ),
) -> None:
    """Distill, quantize, compile, validate every variant against the FP32 teacher, report."""
    try:
        from vilt_edge.pipeline import PipelineOptions, run_pipeline
    except ImportError as error:
        _fail(f"pipeline needs the model extra: pip install 'vilt-edge[model]' ({error.name})")
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    options = PipelineOptions(
        model=model, target=target, data=data, train=train, layers=layers,
        distill=not no_distill, epochs=epochs, lr=lr, limit=limit, threads=threads,
        overwrite=overwrite,
    )  # fmt: skip
    console = Console(stderr=True)
    progress = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    step = progress.add_task("starting", total=None)

    def stage(message: str) -> None:
        if console.is_terminal:  # a log of stages for people; piped stderr keeps errors alone
            progress.console.print(f"[bold]pipeline[/bold]: {message}")
        progress.update(step, description=message, completed=0, total=None)

    def advance(label: str, done: int, total: int) -> None:
        progress.update(step, completed=done, total=total)

    with progress, warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        summary = run_pipeline(options, out, stage, advance)
    _summarize_warnings(caught)
    typer.echo(Path(summary["report"]["markdown"]).read_text(encoding="utf-8"))
    if summary.get("distill_setting"):
        typer.echo(f"distilled: {summary['distill_setting']}", err=True)
    if summary.get("note"):
        typer.echo(f"note: {summary['note']}", err=True)
    typer.echo(f"report: {summary['report']['html']}")


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
    eval_every: Annotated[
        int, typer.Option(help="Also test every N epochs (adds time; 0: only at the end).")
    ] = 0,
) -> None:
    """Train the embedded easy-VQA default from scratch (seeded; ~48 min on 2 cores)."""
    from vilt_edge.train_default import DefaultRecipe, train_default

    if out.exists():
        _fail(f"output exists: {out}")
    summary = train_default(
        out,
        DefaultRecipe(epochs=epochs, seed=seed, peak_lr=peak_lr),
        eval_every_epochs=eval_every,
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

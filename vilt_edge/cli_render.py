"""How the `vilt-edge` commands print their results for people (tables and one-line
summaries); `--json` prints the results' own `to_json()` instead."""

from __future__ import annotations

from typing import Any


def _ms(latency: dict[str, float] | None) -> str:
    if not latency:
        return "-"
    return f"{latency['p50']:.2f} / {latency['p90']:.2f} / {latency['p99']:.2f}"


def print_validation(results, dataset, show: int, batch_size: int) -> None:
    """`vilt-edge validate`'s tables: the first `show` answers, then every measure."""
    from rich.console import Console
    from rich.table import Table

    from vilt_edge.devices.host import describe_machine

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


def bench_line(figures: dict[str, Any]) -> str:
    from vilt_edge.devices.host import describe_machine

    latency = figures["latency_ms"]
    return (
        f"{figures['bundle']} ({figures['precision']}, {figures['runtime']}, "
        f"{figures['threads']} threads) at {figures['image_size']}, {figures['text_len']} tokens, "
        f"batch {figures['batch']}: p50 {latency['p50']:.2f} ms, p90 {latency['p90']:.2f} ms, "
        f"p99 {latency['p99']:.2f} ms, {figures['throughput']:.1f} examples/s "
        f"({figures['runs']} runs; {describe_machine(figures['machine'])})"
    )


def quantize_line(result) -> str:
    """`wrote out/int8 (int8 static, x86-avx2 preset, 2.2 MB model); ...`"""
    record = result.record
    size_mb = result.bundle.model_path.stat().st_size / 1e6
    text = f"wrote {result.bundle.path} ({record.precision}"
    if record.precision == "int8":
        text += f" {record.mode}, {record.preset_name} preset"
    text += f", {size_mb:.1f} MB model)"
    fallback = result.fallback
    if fallback:
        kept = ", ".join(fallback["groups_kept_fp32"]) or "none"
        text += (
            f"; held-out drop {fallback['measured_drop']:.2f} points "
            f"(budget {fallback['max_drop']:g}), agreement {fallback['agreement']:.2%}, "
            f"layers kept FP32: {kept}"
        )
    if record.precision == "fp16":
        text += f"; {len(record.nodes_kept_fp32)} nodes kept FP32 by the overflow check"
    return text


def distill_line(result) -> str:
    held = result.held_out or {}
    text = (
        f"wrote {result.student}: {result.student_layers} of {result.teacher_layers} layers "
        f"(teacher layers {list(result.layer_map)}), {result.steps} steps in "
        f"{result.train_seconds:.0f} s"
    )
    if held:
        text += f"; held-out agreement with the teacher {held['agreement']:.2%}"
        if held.get("accuracy") is not None:
            text += f", accuracy {held['accuracy']:.2%} (teacher {held['teacher_accuracy']:.2%})"
    return text


def print_devices(profiles, floors: dict[str, dict], floor: str | None) -> None:
    """`vilt-edge devices`: one row per profile, with its latency floor when asked."""
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


def pipeline_progress():
    """The pipeline's one progress line on stderr: spinner, stage, bar, count, time."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        SpinnerColumn,
        TextColumn,
        TimeElapsedColumn,
    )

    return Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=Console(stderr=True),
        transient=True,
    )


class DistillReporter:
    """`vilt-edge distill`'s output on stderr: set-up messages on a transient spinner (nothing
    when stderr is not a terminal, so a bad input still ends in exactly one line), then a
    progress bar with the loss, and a line per evaluation."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console

        from vilt_edge.cli_common import progress_bar

        self.quiet = quiet
        self.spinner = Console(stderr=True).status("distill: starting")
        self.progress = progress_bar("distill", disable=quiet, with_status=True)
        self.task = None

    def on_progress(self, report) -> None:
        if self.task is None:
            self.spinner.stop()
            self.progress.start()
            self.task = self.progress.add_task("distill", total=report.total, status="")
        status = f"loss {report.loss:.3f}"
        if report.message:
            status = report.message
            self.progress.console.print(f"step {report.step}: {report.message}")
        self.progress.update(self.task, completed=report.step, status=status)

    def status(self, message: str) -> None:
        if self.task is None and not self.quiet:
            self.spinner.update(f"distill: {message}")

    def __enter__(self) -> DistillReporter:
        if not self.quiet:
            self.spinner.start()
        return self

    def __exit__(self, *exc) -> None:
        self.spinner.stop()
        if self.task is not None:
            self.progress.stop()

"""What every `vilt-edge` command shares: the option types, one-line failures, progress bars and
spinners, and loading a bundle or runtime. `cli.py` holds the commands; `cli_render.py` prints
their results. Heavy imports stay inside functions, so `vilt-edge --help` stays fast."""

from __future__ import annotations

import functools
from typing import Annotated

import typer

from vilt_edge.errors import ViltEdgeError

# Options several commands take, declared once.
Threads = Annotated[int | None, typer.Option(help="Inference threads.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print one JSON object.")]
Overwrite = Annotated[bool, typer.Option(help="Replace an existing bundle.")]
RemoteHost = Annotated[
    str | None, typer.Option(help="[user@]host: run there over ssh, bring the results back.")
]
RemotePython = Annotated[
    str, typer.Option(help="With --remote: the Python that has vilt-edge there.")
]
SshConfig = Annotated[str | None, typer.Option(help="With --remote: an ssh config file (ssh -F).")]


def target_help(what: str = "Device profile") -> str:
    """The --target help, naming every profile (`vilt-edge devices` lists them)."""
    from vilt_edge.devices import target_names

    names = [name for name in target_names() if name != "cpu"]
    return f"{what}: cpu (this host's CPU), or one of {', '.join(names)}."


def fail(message: str, code: int = 1) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def error_line(error: ViltEdgeError) -> str:
    return str(error).strip().replace("\n", " ")


def user_errors(command):
    """Turn a user-caused error into one line on stderr and its exit code (also under
    typer's CliRunner, which does not go through `main`)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except ViltEdgeError as error:
            fail(error_line(error), error.exit_code)

    return wrapper


def check_threads(threads: int | None) -> None:
    if threads is not None and threads < 1:
        fail("--threads must be at least 1", 2)


def status(message: str):
    """A transient spinner on stderr."""
    from rich.console import Console

    return Console(stderr=True).status(message)


def progress_bar(label: str, disable: bool, with_status: bool = False):
    """A progress bar on stderr (`with_status`: a per-task status text after the count)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    columns = [f"[bold]{label}", BarColumn(), MofNCompleteColumn()]
    if with_status:
        columns.append(TextColumn("{task.fields[status]}"))
    return Progress(*columns, TimeRemainingColumn(), console=Console(stderr=True), disable=disable)


def summarize_warnings(caught) -> None:
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


def truncation_warnings(caught) -> list:
    return [w for w in caught if w.category.__name__ == "QuestionTruncatedWarning"]


def load_bundle(bundle: str):
    from vilt_edge.default_bundle import open_bundle

    return open_bundle(bundle)


def load_runtime(bundle: str, threads: int | None):
    from vilt_edge.runtime import ViltRuntime

    check_threads(threads)
    return ViltRuntime.load(bundle, threads=threads)


def needs_extra(command: str, extra: str, error: ImportError) -> None:
    fail(f"{command} needs the {extra} extra: pip install 'vilt-edge[{extra}]' ({error.name})")

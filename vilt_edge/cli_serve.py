"""The robot-side commands: `vilt-edge serve` (the HTTP answer service; `vilt_edge.serve` is
the app) and `vilt-edge watch` (questions over a video or camera; `vilt_edge.watch`)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from vilt_edge.cli_common import AsJson, Threads, load_runtime, needs_extra

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def serve(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    host: Annotated[
        str, typer.Option(help="Address to bind (loopback unless told).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
    max_batch: Annotated[int, typer.Option(help="Most requests per model call.")] = 8,
    max_wait_ms: Annotated[
        float, typer.Option(help="How long a batch waits for more requests.")
    ] = 5.0,
    max_queue: Annotated[int, typer.Option(help="Requests waiting before 503.")] = 64,
    max_body_mb: Annotated[float, typer.Option(help="Largest request body (413 past it).")] = 20.0,
    api_key_file: Annotated[
        Path | None, typer.Option(help="File holding the API key clients must send.")
    ] = None,
    threads: Threads = None,
) -> None:
    """Serve a bundle over HTTP: POST /v1/ask, GET /healthz, /metrics, /openapi.json."""
    try:
        import uvicorn

        from vilt_edge.serve import ServeOptions, create_app, read_api_key
    except ImportError as error:
        needs_extra("serve", "serve", error)
    key = read_api_key(api_key_file) if api_key_file is not None else None
    options = ServeOptions(max_batch=max_batch, max_wait_ms=max_wait_ms, max_queue=max_queue,
                           max_body_mb=max_body_mb, api_key=key)  # fmt: skip
    options.check()
    if not 0 < port < 65536:
        from vilt_edge.errors import InputError

        raise InputError(f"--port must be between 1 and 65535; got {port}")
    if host not in LOOPBACK and key is None:
        typer.echo(
            f"warning: serving on {host} without --api-key-file: anyone who can reach this "
            f"port can use the model",
            err=True,
        )
    runtime = load_runtime(bundle, threads)
    app = create_app(runtime, options, log=lambda line: typer.echo(line, err=True))
    typer.echo(f"serving {runtime.bundle.path} on http://{host}:{port}", err=True)
    # uvicorn stops accepting on SIGTERM/SIGINT and lets in-flight requests finish (the app's
    # lifespan drains the queue); then it raises the signal again under the handler it found,
    # which here ends the process with status 0: a requested stop is not a failure.
    for number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(number, _stopped)
    uvicorn.run(app, host=host, port=port, log_level="warning", timeout_graceful_shutdown=5)
    typer.echo("stopped", err=True)


def _stopped(number: int, frame: object) -> None:
    raise SystemExit(0)


def watch(
    bundle: Annotated[str, typer.Argument(help="Bundle directory, or 'default'.")],
    question: Annotated[
        list[str], typer.Option("--question", "-q", help="A question (repeat for more).")
    ],
    video: Annotated[Path | None, typer.Option(help="A video file.")] = None,
    camera: Annotated[int | None, typer.Option(help="A camera index (0: the first).")] = None,
    frames: Annotated[Path | None, typer.Option(help="A folder of frame images.")] = None,
    every: Annotated[float, typer.Option(help="Seconds between sampled frames.")] = 1.0,
    top_k: Annotated[int, typer.Option("--top-k", help="Answers per question in --json.")] = 1,
    limit: Annotated[int | None, typer.Option(help="Stop after this many frames.")] = None,
    threads: Threads = None,
    as_json: AsJson = False,
) -> None:
    """Ask questions of a video, a camera or a folder of frames, frame by frame."""
    import json

    from vilt_edge.watch import open_source
    from vilt_edge.watch import watch as run_watch

    source = open_source(video=video, camera=camera, frames=frames, every=every)
    runtime = load_runtime(bundle, threads)

    def emit(record: dict) -> None:
        if as_json:
            typer.echo(json.dumps(record))
        else:
            typer.echo(f"{record['time_s']:9.2f}s  frame {record['frame']:<6} "
                       f"{record['question']!r}: {record['answer']} ({record['score']:.3f}, "
                       f"{record['latency_ms']:.1f} ms)")  # fmt: skip

    with source:
        summary = run_watch(runtime, source, question, emit, top_k=top_k, limit=limit)
    typer.echo(
        f"watched {summary['frames']} frame(s) of {summary['source']} with "
        f"{summary['questions']} question(s); dropped {summary['dropped']} frame(s); "
        f"p50 {summary['latency_ms_p50']} ms per frame",
        err=True,
    )

"""`vilt-edge serve`: the HTTP answer service's command line (`vilt_edge.serve` is the app)."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Annotated

import typer

from vilt_edge.cli_common import Threads, load_runtime, needs_extra

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

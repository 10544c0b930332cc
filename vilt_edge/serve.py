"""`vilt-edge serve`: a bundle as a local HTTP answer service (FastAPI on uvicorn, the `serve`
extra), for apps that call perception as a service (C++, ROS nodes, dashboards).

    from vilt_edge.serve import ServeOptions, create_app
    app = create_app(ViltRuntime.load("out/default"), ServeOptions(max_batch=8))

- `POST /v1/ask`: multipart/form-data (`question`, one `image` file, two for NLVR2 bundles in
  order, optional `top_k`) or application/json (`{"question", "images": [base64...], "top_k"}`)
  -> `{"answers": [{"answer", "score"}...], "latency_ms": {"queue", "preprocess", "model",
  "total"}}`, the answers `vilt-edge ask` gives for the same input.
- `GET /healthz` (the bundle's name, task, precision and runtime), `GET /metrics` (Prometheus
  text: requests by status, latency and batch-size histograms, queue depth), `GET
  /openapi.json` (FastAPI's).
- Micro-batching: one worker thread owns the runtime (its sessions are not shared between
  threads); requests that arrive while it is busy, or within `max_wait_ms` of the first, run as
  one `ask_batch` of at most `max_batch` (which groups them by preprocessed image size). A
  lone request after a lone one (a single client) does not wait: there is nothing to batch it
  with. Images are decoded in a thread pool, off the event loop. The queue is bounded
  (`max_queue`): when full the answer is 503 with Retry-After.
- Bad requests get a 4xx `{"error": "..."}`; the server stays up. With an API key, requests
  without it (`Authorization: Bearer KEY` or `X-API-Key: KEY`) get 401, compared in constant
  time; the key is never logged or counted.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hmac
import json
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request  # the serve extra; FastAPI reads these annotations
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

from vilt_edge.errors import InputError, ViltEdgeError, first_line
from vilt_edge.preprocess import load_image_bytes

MAX_TOP_K = 100


@dataclass(frozen=True)
class ServeOptions:
    max_batch: int = 8
    max_wait_ms: float = 5.0
    max_queue: int = 64
    max_body_mb: float = 20.0
    api_key: str | None = field(default=None, repr=False)  # never printed

    def check(self) -> None:
        if self.max_batch < 1 or self.max_queue < 1:
            raise InputError("--max-batch and the queue length must be at least 1")
        if not 0 <= self.max_wait_ms <= 10_000:
            raise InputError("--max-wait-ms must be between 0 and 10000")
        if not 0 < self.max_body_mb <= 1024:
            raise InputError("--max-body-mb must be between 0 and 1024")


def read_api_key(path: Path) -> str:
    """The key in `path` (its first line, stripped); one line naming the file if unusable."""
    try:
        key = path.read_text(encoding="utf-8").strip().splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise InputError(f"{path}: cannot read the API key file ({first_line(error)})") from None
    if not key or len(key[0].strip()) < 16:
        raise InputError(f"{path}: the API key must be one line of at least 16 characters")
    return key[0].strip()


class RequestError(Exception):
    """A bad request: its HTTP status and the one line the client gets."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}


@dataclass
class _Job:
    images: Any  # one PIL image, or a (left, right) pair
    question: str
    top_k: int
    future: asyncio.Future
    enqueued: float
    decode_ms: float


class Batcher:
    """The queue and the worker thread that owns the runtime."""

    def __init__(self, runtime, options: ServeOptions, metrics: Metrics) -> None:
        self.runtime, self.options, self.metrics = runtime, options, metrics
        self.queue: asyncio.Queue[_Job] = asyncio.Queue(maxsize=options.max_queue)
        self.model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vilt-model")
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        """Finish what is queued, then stop the worker."""
        await self.queue.join()
        if self._task is not None:
            self._task.cancel()
        self.model_thread.shutdown(wait=True)

    def submit(self, job: _Job) -> None:
        try:
            self.queue.put_nowait(job)
        except asyncio.QueueFull:
            raise RequestError(503, "the server is busy; retry shortly",
                               {"Retry-After": "1"}) from None  # fmt: skip
        self.metrics.queue_depth.set(self.queue.qsize())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        last_batch = 1
        while True:
            jobs = [await self.queue.get()]
            # Under load requests queue up while the model runs, and waiting for more pays off;
            # a lone request after a lone request (a single client) would only wait.
            lone = last_batch == 1 and self.queue.empty()
            wait = 0.0 if lone else self.options.max_wait_ms / 1000
            deadline = loop.time() + wait
            while len(jobs) < self.options.max_batch:
                timeout = deadline - loop.time()
                try:
                    job = (
                        self.queue.get_nowait()
                        if timeout <= 0
                        else await asyncio.wait_for(self.queue.get(), timeout)
                    )
                except (asyncio.QueueEmpty, asyncio.TimeoutError):
                    break
                jobs.append(job)
            self.metrics.queue_depth.set(self.queue.qsize())
            self.metrics.batch_size.observe(len(jobs))
            last_batch = len(jobs)
            started = time.perf_counter()
            try:
                answers, latency = await loop.run_in_executor(self.model_thread, self._run, jobs)
            except Exception as error:  # noqa: BLE001 - every waiting request hears it
                for job in jobs:
                    if not job.future.done():
                        job.future.set_exception(error)
            else:
                for job, job_answers in zip(jobs, answers, strict=True):
                    queue_ms = (started - job.enqueued) * 1000
                    result = {
                        "answers": [a.to_json() for a in job_answers[: job.top_k]],
                        "latency_ms": {
                            "queue": round(queue_ms, 3),
                            "preprocess": round(job.decode_ms + latency["preprocess"], 3),
                            "model": round(latency["model"], 3),
                            "total": round(job.decode_ms + queue_ms + latency["total"], 3),
                        },
                    }
                    if not job.future.done():
                        job.future.set_result(result)
            finally:
                for _ in jobs:
                    self.queue.task_done()

    def _run(self, jobs: list[_Job]):
        top_k = max(job.top_k for job in jobs)
        answers = self.runtime.ask_batch(
            [job.images for job in jobs], [job.question for job in jobs], top_k=top_k,
            batch_size=self.options.max_batch,
        )  # fmt: skip
        return answers, dict(self.runtime.last_latency_ms)


class Metrics:
    """Prometheus metrics in a registry of this server's own."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter(
            "vilt_edge_requests", "Requests by path and HTTP status", ["path", "status"],
            registry=self.registry,
        )  # fmt: skip
        self.latency = Histogram(
            "vilt_edge_ask_latency_seconds", "Time to answer /v1/ask, queue included",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=self.registry,
        )  # fmt: skip
        self.batch_size = Histogram(
            "vilt_edge_batch_size", "Requests per model call", buckets=(1, 2, 4, 8, 16, 32, 64),
            registry=self.registry,
        )  # fmt: skip
        self.queue_depth = Gauge(
            "vilt_edge_queue_depth", "Requests waiting for the model", registry=self.registry
        )

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


def _authorized(headers, key: str | None) -> bool:
    if key is None:
        return True
    given = headers.get("x-api-key") or ""
    authorization = headers.get("authorization") or ""
    if authorization.lower().startswith("bearer "):
        given = given or authorization[7:].strip()
    return hmac.compare_digest(given.encode(), key.encode())


def _top_k(value: Any) -> int:
    if value is None or value == "":
        return 5
    try:
        top_k = int(value)
        if isinstance(value, float) or str(value).strip() != str(top_k):
            raise ValueError
    except (TypeError, ValueError):
        raise RequestError(400, f"top_k must be a whole number; got {value!r}") from None
    if not 1 <= top_k <= MAX_TOP_K:
        raise RequestError(400, f"top_k must be between 1 and {MAX_TOP_K}; got {top_k}")
    return top_k


DRAIN_LIMIT = 64_000_000  # past this an oversized body is cut off, not read to its end


async def _read_body(request, limit: int) -> bytes:
    """The body, at most `limit` bytes; over it, 413. An oversized body of modest size is read
    to its end (and dropped) first, so that the client, still sending, can read the answer."""
    too_large = RequestError(413, f"the request body is over {limit / 1e6:g} MB")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > DRAIN_LIMIT:
        raise too_large
    body, seen = bytearray(), 0
    async for chunk in request.stream():
        seen += len(chunk)
        if seen > DRAIN_LIMIT:
            raise too_large
        if seen <= limit:
            body += chunk
    if seen > limit:
        raise too_large
    return bytes(body)


async def _parse_ask(request, limit: int) -> tuple[str, list[bytes], int]:
    """(question, encoded images, top_k) from a multipart or JSON request."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    body = await _read_body(request, limit)
    if kind == "application/json":
        try:
            data = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise RequestError(400, "the body is not valid JSON") from None
        if not isinstance(data, dict):
            raise RequestError(400, 'the JSON body must be an object {"question", "images"}')
        images = data.get("images")
        if images is None and "image" in data:
            images = [data["image"]]
        if not isinstance(images, list) or not all(isinstance(i, str) for i in images):
            raise RequestError(400, '"images" must be a list of base64-encoded image files')
        try:
            encoded = [base64.b64decode(i, validate=True) for i in images]
        except (binascii.Error, ValueError):
            raise RequestError(400, "an image is not valid base64") from None
        return data.get("question"), encoded, _top_k(data.get("top_k"))
    if kind == "multipart/form-data":
        from starlette.datastructures import UploadFile
        from starlette.formparsers import MultiPartException, MultiPartParser

        try:
            form = await MultiPartParser(request.headers, _replay(body)).parse()
        except MultiPartException as error:
            raise RequestError(400, f"malformed multipart body ({error.message})") from None
        uploads = [item for item in form.getlist("image") if isinstance(item, UploadFile)]
        encoded = [await upload.read() for upload in uploads]
        question = form.get("question")
        return (question if isinstance(question, str) else None), encoded, _top_k(form.get("top_k"))
    raise RequestError(415, "send multipart/form-data or application/json")


async def _replay(body: bytes):
    yield body


def create_app(runtime, options: ServeOptions | None = None, log: Callable[[str], None] = print):
    """The FastAPI app serving `runtime` (a loaded `ViltRuntime`)."""
    options = options or ServeOptions()
    options.check()
    metrics = Metrics()
    decoder = ThreadPoolExecutor(max_workers=2, thread_name_prefix="vilt-decode")
    state: dict[str, Batcher] = {}
    limit = int(options.max_body_mb * 1e6)
    images_per_example = runtime.manifest.num_images

    async def lifespan(app):
        batcher = Batcher(runtime, options, metrics)
        batcher.start()
        state["batcher"] = batcher
        yield
        await batcher.stop()  # in-flight requests finish first
        decoder.shutdown(wait=True)

    app = FastAPI(title="vilt-edge", version="1", lifespan=lifespan)

    def error(status: int, message: str, path: str, headers=None) -> JSONResponse:
        metrics.requests.labels(path=path, status=str(status)).inc()
        return JSONResponse({"error": message}, status_code=status, headers=headers)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):  # 404, 405: JSON too
        return error(exc.status_code, str(exc.detail), "other")

    @app.get("/healthz")
    async def healthz():
        metrics.requests.labels(path="/healthz", status="200").inc()
        manifest = runtime.manifest
        return {
            "status": "ok",
            "bundle": Path(runtime.bundle.path).name,
            "task": manifest.task,
            "precision": manifest.precision,
            "runtime": manifest.runtime,
        }

    @app.get("/metrics")
    async def prometheus():
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.post("/v1/ask", openapi_extra={"requestBody": _ASK_BODY})
    async def ask(request: Request):
        started = time.perf_counter()
        path = "/v1/ask"
        if not _authorized(request.headers, options.api_key):
            return error(401, "missing or wrong API key", path, {"WWW-Authenticate": "Bearer"})
        try:
            question, encoded, top_k = await _parse_ask(request, limit)
            if not isinstance(question, str) or not question.strip():
                raise RequestError(400, "give a non-empty question")
            if len(encoded) != images_per_example:
                what = "one image" if images_per_example == 1 else "two images (left, right)"
                raise RequestError(
                    400, f"this {runtime.task} bundle takes {what}; got {len(encoded)}"
                )
            loop = asyncio.get_running_loop()
            decode_started = time.perf_counter()
            images = await asyncio.gather(*[
                loop.run_in_executor(decoder, load_image_bytes, data, f"image {i + 1}")
                for i, data in enumerate(encoded)
            ])  # fmt: skip
            decode_ms = (time.perf_counter() - decode_started) * 1000
            future = loop.create_future()
            job = _Job(images[0] if len(images) == 1 else tuple(images), question, top_k,
                       future, time.perf_counter(), decode_ms)  # fmt: skip
            state["batcher"].submit(job)
            result = await future
        except RequestError as bad:
            return error(bad.status, bad.message, path, bad.headers)
        except ViltEdgeError as bad:  # a corrupt image, a question the tokenizer refuses
            return error(400, first_line(bad), path)
        except Exception as failure:  # noqa: BLE001 - the server stays up and says why
            log(f"error: /v1/ask: {first_line(failure)}")
            return error(500, "the model failed on this request", path)
        metrics.requests.labels(path=path, status="200").inc()
        metrics.latency.observe(time.perf_counter() - started)
        return result

    return app


_ASK_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["question", "image"],
                "properties": {
                    "question": {"type": "string"},
                    "image": {
                        "type": "array",
                        "items": {"type": "string", "format": "binary"},
                        "description": "one image file (two for NLVR2 bundles: left, right)",
                    },
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                },
            }
        },
        "application/json": {
            "schema": {
                "type": "object",
                "required": ["question", "images"],
                "properties": {
                    "question": {"type": "string"},
                    "images": {"type": "array", "items": {"type": "string", "format": "byte"}},
                    "top_k": {"type": "integer", "minimum": 1, "maximum": MAX_TOP_K},
                },
            }
        },
    },
}

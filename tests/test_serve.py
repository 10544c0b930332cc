"""`vilt-edge serve`: a real server process on 127.0.0.1 and a free port, real HTTP clients
(urllib): answers equal `ask`'s under concurrent clients, every bad request a 4xx JSON with the
server still healthy, the API key, the bounded queue, a graceful stop."""

from __future__ import annotations

import base64
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from conftest import one_line_error
from PIL import Image
from serve_helpers import Server
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.runtime import ViltRuntime


def png(color=(255, 0, 0), size=(64, 64)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, color).save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def default_server(tmp_path_factory):
    server = Server("default", "--max-batch", "8", "--max-body-mb", "2")
    yield server
    server.stop()


def coco_examples(shared_data: Path) -> list[tuple[Path, str]]:
    mini = shared_data / "vqav2-mini"
    questions = json.loads((mini / "v2_OpenEnded_mscoco_val2014_questions.mini.json").read_text())[
        "questions"
    ]
    examples = []
    for q in questions:
        path = mini / "images" / "val2014" / f"COCO_val2014_{q['image_id']:012d}.jpg"
        examples.append((path, q["question"]))
    return examples


def assert_same_answers(served: list[dict], asked) -> None:
    assert [a["answer"] for a in served] == [a.answer for a in asked]
    for got, want in zip(served, asked, strict=True):
        assert abs(got["score"] - want.score) < 1e-5


def test_served_answers_equal_ask_under_8_concurrent_clients(default_server, shared_data):
    examples = coco_examples(shared_data) * 3  # 30 requests, 8 at a time
    runtime = ViltRuntime.load("default", threads=1)
    expected = [runtime.ask(path, question, top_k=3) for path, question in examples]

    def call(example):
        path, question = example
        return default_server.ask(question, [path.read_bytes()], top_k=3)

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(call, examples))
    for (status, body, _), want in zip(results, expected, strict=True):
        assert status == 200, body
        assert_same_answers(body["answers"], want)
        assert set(body["latency_ms"]) == {"queue", "preprocess", "model", "total"}
    status, metrics, _ = default_server.get("/metrics")
    text = metrics.decode()
    assert 'vilt_edge_requests_total{path="/v1/ask",status="200"}' in text
    batches = [line for line in text.splitlines() if line.startswith("vilt_edge_batch_size_count")]
    count = float(batches[0].split()[-1])
    assert count < len(examples)  # concurrent requests shared model calls


def test_json_requests_answer_as_multipart(default_server):
    body = json.dumps({"question": "what color is the shape?", "top_k": 2,
                       "images": [base64.b64encode(png()).decode()]}).encode()  # fmt: skip
    status, data, _ = default_server.request("POST", "/v1/ask", body,
                                             {"Content-Type": "application/json"})  # fmt: skip
    assert status == 200
    _, multi, _ = default_server.ask("what color is the shape?", [png()], top_k=2)
    assert json.loads(data)["answers"] == multi["answers"]


def bomb() -> bytes:
    buffer = io.BytesIO()
    Image.new("1", (20000, 20000)).save(buffer, "PNG")  # 400 Mpx in a few kB
    return buffer.getvalue()


@pytest.mark.parametrize(
    ("kwargs", "status", "fragment"),
    [
        (dict(images=[png()]), 400, "non-empty question"),
        (dict(question="  ", images=[png()]), 400, "non-empty question"),
        (dict(question="what?"), 400, "takes one image; got 0"),
        (dict(question="what?", images=[png(), png()]), 400, "takes one image; got 2"),
        (dict(question="what?", images=[b"not an image at all"]), 400, "not an image file"),
        (dict(question="what?", images=[png()[:60]]), 400, "image 1"),
        (dict(question="what?", images=[bomb()]), 400, "decompression bomb"),
        (dict(question="what?", images=[png()], top_k=0), 400, "top_k must be between"),
        (dict(question="what?", images=[png()], top_k=101), 400, "top_k must be between"),
        (dict(question="what?", images=[png()], top_k="abc"), 400, "top_k must be a whole"),
        (dict(question="what?", images=[b"x" * 2_100_000]), 413, "over 2 MB"),
    ],
)
def test_bad_requests_get_a_4xx_json_and_the_server_stays_up(default_server, kwargs, status,
                                                             fragment):  # fmt: skip
    got, body, _ = default_server.ask(**kwargs)
    assert got == status and fragment in body["error"], body
    assert default_server.get("/healthz")[0] == 200


def test_malformed_bodies_and_paths(default_server):
    for body, kind in [
        (b"--nope\r\nbroken", "multipart/form-data; boundary=zzz"),
        (b"{not json", "application/json"),
        (b"[1, 2]", "application/json"),
        (b'{"question": "q", "images": ["%%%"]}', "application/json"),
    ]:
        status, data, _ = default_server.request("POST", "/v1/ask", body, {"Content-Type": kind})
        assert status == 400 and "error" in json.loads(data), data
    status, data, _ = default_server.request(
        "POST", "/v1/ask", b"x", {"Content-Type": "text/plain"}
    )
    assert status == 415 and "error" in json.loads(data)
    status, data, _ = default_server.get("/v2/nothing")
    assert status == 404 and json.loads(data) == {"error": "Not Found"}
    status, data, _ = default_server.get("/openapi.json")
    assert status == 200 and "/v1/ask" in json.loads(data)["paths"]
    status, data, _ = default_server.get("/healthz")
    health = json.loads(data)
    assert status == 200 and health["task"] == "vqa" and health["runtime"] == "onnxruntime"


def test_api_key(tmp_path):
    key = "k" * 12 + "-secret-" + uuid.uuid4().hex
    key_file = tmp_path / "key"
    key_file.write_text(key + "\n")
    server = Server("default", "--api-key-file", str(key_file))
    try:
        assert server.ask("what?", [png()])[0] == 401
        assert server.ask("what?", [png()], headers={"X-API-Key": "wrong" * 5})[0] == 401
        assert server.ask("what?", [png()], headers={"Authorization": f"Bearer {key}"})[0] == 200
        assert server.ask("what?", [png()], headers={"X-API-Key": key})[0] == 200
        metrics = server.get("/metrics")[1].decode()
        assert key not in metrics and 'status="401"' in metrics
    finally:
        assert server.stop() == 0
    assert key not in server.process.stderr.read()


def test_a_full_queue_answers_503_and_recovers():
    server = Server("default", "--max-queue", "1", "--max-batch", "1", "--max-wait-ms", "50")
    try:
        with ThreadPoolExecutor(max_workers=12) as pool:
            results = list(pool.map(lambda _: server.ask("what shape?", [png()]), range(12)))
        statuses = [status for status, _, _ in results]
        assert 503 in statuses and 200 in statuses, statuses
        busy = next(head for status, _, head in results if status == 503)
        assert {k.lower(): v for k, v in busy.items()}.get("retry-after") == "1"
        assert server.ask("what shape?", [png()])[0] == 200
    finally:
        server.stop()


def test_sigterm_finishes_in_flight_requests_and_exits_0():
    server = Server("default", "--max-wait-ms", "300")
    with ThreadPoolExecutor(max_workers=3) as pool:
        pending = [pool.submit(server.ask, "what color?", [png()]) for _ in range(3)]
        time.sleep(0.1)  # accepted, waiting in the batch window
        started = time.time()
        code = server.stop()
        assert code == 0 and time.time() - started < 10
        assert [f.result()[0] for f in pending] == [200, 200, 200]


def test_nlvr2_bundle_serves_pairs(tiny_nlvr2_bundle, tmp_path):
    server = Server(str(tiny_nlvr2_bundle))
    try:
        left, right = png((255, 0, 0), (64, 96)), png((0, 0, 255), (96, 64))
        status, body, _ = server.ask("the left image is red", [left, right], top_k=2)
        assert status == 200
        (tmp_path / "l.png").write_bytes(left)
        (tmp_path / "r.png").write_bytes(right)
        runtime = ViltRuntime.load(tiny_nlvr2_bundle, threads=1)
        want = runtime.ask((tmp_path / "l.png", tmp_path / "r.png"), "the left image is red", 2)
        assert_same_answers(body["answers"], want)
        status, body, _ = server.ask("one image", [left])
        assert status == 400 and "two images" in body["error"]
    finally:
        server.stop()


def test_serve_command_refuses_bad_settings_in_one_line(tmp_path):
    runner = CliRunner()
    short = tmp_path / "short"
    short.write_text("abc\n")
    one_line_error(runner.invoke(app, ["serve", "default", "--api-key-file", str(short)]), 2,
                   "at least 16 characters")  # fmt: skip
    one_line_error(runner.invoke(app, ["serve", "default", "--api-key-file",
                                       str(tmp_path / "none")]), 2, "cannot read")  # fmt: skip
    one_line_error(runner.invoke(app, ["serve", "default", "--max-batch", "0"]), 2, "--max-batch")
    one_line_error(runner.invoke(app, ["serve", "default", "--port", "70000"]), 2, "--port")
    one_line_error(runner.invoke(app, ["serve", str(tmp_path / "nope")]), 4, "nope")


def test_binding_beyond_loopback_without_a_key_warns():
    server = Server("default", "--host", "0.0.0.0")
    try:
        assert server.get("/healthz")[0] == 200
    finally:
        server.stop()
    assert "without --api-key-file" in server.process.stderr.read()

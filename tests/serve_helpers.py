"""A `vilt-edge serve` process on a free loopback port and a urllib client for it: used by
tests/test_serve.py and benchmarks/serve_load.py (so it imports nothing of pytest)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, bundle: str, *args: str, cache: Path | None = None) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ}
        if cache is not None:
            env["VILT_EDGE_CACHE"] = str(cache)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from vilt_edge.cli import main; main()", "serve", bundle,
             "--port", str(self.port), "--threads", "1", *args],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env,
        )  # fmt: skip
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"the server exited: {self.process.stderr.read()}")
            try:
                if self.get("/healthz")[0] == 200:
                    return
            except OSError:
                time.sleep(0.2)
        raise AssertionError("the server did not come up in 60 s")

    def get(self, path: str, headers: dict | None = None) -> tuple[int, bytes, dict]:
        return self.request("GET", path, None, headers or {})

    def request(self, method: str, path: str, body: bytes | None, headers: dict):
        request = urllib.request.Request(self.url + path, data=body, method=method,
                                         headers=headers)  # fmt: skip
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read(), dict(response.headers)
        except urllib.error.HTTPError as error:
            return error.code, error.read(), dict(error.headers)

    def ask(self, question=None, images=(), top_k=None, headers=None, fields=None):
        body, kind = multipart(question, images, top_k, fields)
        status, data, head = self.request("POST", "/v1/ask", body,
                                          {"Content-Type": kind, **(headers or {})})  # fmt: skip
        return status, json.loads(data), head

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=15)
        finally:
            if self.process.poll() is None:
                self.process.kill()


def multipart(question, images, top_k=None, fields=None) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    items = []
    if question is not None:
        items.append(("question", None, question.encode()))
    for index, data in enumerate(images):
        items.append(("image", f"image{index}.png", data))
    if top_k is not None:
        items.append(("top_k", None, str(top_k).encode()))
    items += list(fields or [])
    for name, filename, data in items:
        head = f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"'
        if filename:
            head += f'; filename="{filename}"\r\nContent-Type: application/octet-stream'
        parts.append(head.encode() + b"\r\n\r\n" + data + b"\r\n")
    body = b"".join(parts) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"

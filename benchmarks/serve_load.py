"""Load on `vilt-edge serve` over loopback: requests/s and p50/p99 latency at 1, 4 and 16
concurrent clients, batching on (`--max-batch 8 --max-wait-ms 5`) and off (`--max-batch 1
--max-wait-ms 0`), for the embedded default and a ViLT-B/32 INT8 bundle (random weights).

    python benchmarks/serve_load.py [--requests 64] [--threads 2] [--skip-b32]

Each cell starts a fresh server process, warms it with 4 requests, then `--requests` requests
(a real PNG each, one question) are sent by N client threads over keep-alive-free urllib
connections, as a simple app would. Needs the serve extra (and for the B/32 row the model and
quantize extras). The server and the clients share this machine's cores: the figures are what
one box serving itself gets, not a server measured alone.
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT))


def png(seed: int, size=(384, 512)) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 255, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    return buffer.getvalue()


def measure(bundle: str, clients: int, batching: bool, requests: int, threads: int, size):
    from serve_helpers import Server

    flags = ["--max-batch", "8", "--max-wait-ms", "5"] if batching else [
        "--max-batch", "1", "--max-wait-ms", "0"]  # fmt: skip
    server = Server(bundle, *flags, "--max-queue", "256", "--threads", str(threads))
    try:
        images = [png(i, size) for i in range(8)]
        for i in range(4):
            server.ask("what color is the shape?", [images[i % 8]])
        latencies: list[float] = []

        def one(i: int) -> None:
            started = time.perf_counter()
            status, body, _ = server.ask("what color is the shape?", [images[i % 8]])
            if status != 200:
                raise SystemExit(f"request failed: {status} {body}")
            latencies.append((time.perf_counter() - started) * 1000)

        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=clients) as pool:
            list(pool.map(one, range(requests)))
        wall = time.perf_counter() - started
    finally:
        server.stop()
    return {
        "rps": requests / wall,
        "p50": statistics.median(latencies),
        "p99": float(np.percentile(latencies, 99)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=64)
    parser.add_argument("--b32-requests", type=int, default=24)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--skip-b32", action="store_true")
    args = parser.parse_args()
    from vilt_edge.devices.host import describe_machine, machine_description

    bundles = [("default (easy-VQA, 56 px)", "default", args.requests, (56, 56))]
    with tempfile.TemporaryDirectory(prefix="vilt-edge-serve-") as temp:
        if not args.skip_b32:
            from cpu_precisions import b32_directory

            from vilt_edge.model.export import export_bundle
            from vilt_edge.quantize import QuantizeOptions, quantize_bundle

            print("building ViLT-B/32 INT8 (random weights) ...", file=sys.stderr)
            fp32 = export_bundle(b32_directory(Path(temp) / "hf"), Path(temp) / "fp32").path
            int8 = quantize_bundle(
                fp32, Path(temp) / "int8", QuantizeOptions(precision="int8", mode="dynamic")
            ).bundle.path
            bundles.append(("ViLT-B/32 INT8 dynamic, 384x512", str(int8), args.b32_requests,
                            (384, 512)))  # fmt: skip
        rows = []
        for name, bundle, requests, size in bundles:
            for batching in (False, True):
                for clients in (1, 4, 16):
                    print(f"  {name}: {clients} clients, batching {batching}", file=sys.stderr)
                    result = measure(bundle, clients, batching, requests, args.threads, size)
                    rows.append((name, batching, clients, result))
    print(f"\nvilt-edge serve on loopback; machine: {describe_machine(machine_description())}")
    print("| bundle | batching | clients | requests/s | p50 ms | p99 ms |")
    print("|---|---|---:|---:|---:|---:|")
    for name, batching, clients, r in rows:
        print(f"| {name} | {'on' if batching else 'off'} | {clients} | {r['rps']:.1f} | "
              f"{r['p50']:.1f} | {r['p99']:.1f} |")  # fmt: skip


if __name__ == "__main__":
    main()

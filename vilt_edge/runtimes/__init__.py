"""Runners: one small protocol (load, run, describe), one module per runtime, a registry by name.

    from vilt_edge.runtimes import get_runner

    with get_runner("onnxruntime").load("bundle/model.onnx", threads=2) as runner:
        logits = runner.run({"input_ids": ..., "attention_mask": ..., "pixel_values": ...})

A bundle's manifest names its runtime; `vilt_edge.runtime.ViltRuntime` looks it up here. A new
runtime is a module with a class that satisfies `Runner`, added to `RUNTIMES`. Runner modules
import their backend inside `load`, so importing this registry stays cheap.
"""

from __future__ import annotations

import os
from typing import Any, Protocol, runtime_checkable

import numpy as np

from vilt_edge.errors import BundleError
from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner
from vilt_edge.runtimes.openvino import OpenVinoRunner
from vilt_edge.runtimes.tensorrt import TensorRTRunner
from vilt_edge.runtimes.torch_cuda import TorchCudaRunner


@runtime_checkable
class Runner(Protocol):
    """Owns one loaded model; a context manager that releases it on exit."""

    name: str
    last_inference_time_ms: float | None  # wall time of the latest `run`

    @classmethod
    def load(
        cls,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> Runner:
        """`settings`: the manifest's `runtime_settings` (written by `vilt-edge compile`)."""
        ...

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """Feeds by input name -> the model's logits."""
        ...

    def describe(self) -> dict[str, Any]: ...

    def close(self) -> None: ...

    def __enter__(self) -> Runner: ...

    def __exit__(self, *exc_info: object) -> None: ...


RUNTIMES: dict[str, type[Runner]] = {"onnxruntime": OnnxRuntimeRunner}
RUNTIMES["openvino"] = OpenVinoRunner  # imports openvino only when loaded
RUNTIMES["tensorrt"] = TensorRTRunner  # imports tensorrt only in `load`
RUNTIMES["torch-cuda"] = TorchCudaRunner  # imports torch only when loaded


def get_runner(name: str) -> type[Runner]:
    """`get_runner("onnxruntime")` -> the runner class; an unknown name raises `BundleError`."""
    try:
        return RUNTIMES[name]
    except (KeyError, TypeError):
        known = ", ".join(sorted(RUNTIMES))
        raise BundleError(f"unknown runtime {name!r} (this vilt-edge knows: {known})") from None

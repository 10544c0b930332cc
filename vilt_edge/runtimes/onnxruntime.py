"""The onnxruntime runner: its CPU execution provider, or OpenVINO's where the bundle asks.

A compiled bundle's `runtime_settings` may name `execution_provider: "openvino"` (the x86-amx
profile does): the session then runs on ONNX Runtime's OpenVINO execution provider plugin
(`onnxruntime-ep-openvino`, the `openvino` extra), with the CPU provider for anything OpenVINO
does not take. Without the plugin, or on a CPU it offers no device for (it lists Intel CPUs
only), loading says so in one line.

from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner

with OnnxRuntimeRunner("bundle/model.onnx", threads=2) as runner:
    logits = runner.run(feeds)
    print(runner.last_inference_time_ms, runner.describe())
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.errors import BundleError, first_line
from vilt_edge.runtimes.base import RunnerBase

OUTPUT = "logits"


class OnnxRuntimeRunner(RunnerBase):
    """One onnxruntime `InferenceSession` over a model file; `run(feeds)` -> logits."""

    name = "onnxruntime"

    def __init__(
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.check_threads(threads)
        try:
            import onnxruntime
        except ImportError:
            raise BundleError(
                "this bundle runs on onnxruntime, which is not installed (pip install onnxruntime)"
            ) from None
        self.model_path = Path(model_path)
        self.threads = (
            threads if threads is not None else (settings or {}).get("intra_op_num_threads")
        )
        self.last_inference_time_ms: float | None = None
        self._version = onnxruntime.__version__
        # `settings` come from a compiled bundle's manifest (`vilt-edge compile`): the device
        # profile's thread count and memory arena. An explicit `threads` wins.
        settings = settings or {}
        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if self.threads is not None:
            options.intra_op_num_threads = self.threads
        if "enable_cpu_mem_arena" in settings:
            options.enable_cpu_mem_arena = bool(settings["enable_cpu_mem_arena"])
        # ONNX Runtime's memory pattern plans one block for all activations per input shape;
        # without it, peak RSS of ViLT-B/32's INT8 bundle fell 10 MB (5%) and the FP32 one's
        # 19 MB at the same latency, side by side (NOTES-cpu-speed.md, step 15). A bundle's
        # text axis is dynamic, so the plan would be remade per question length anyway.
        options.enable_mem_pattern = bool(settings.get("enable_mem_pattern", False))
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: model file not found")
        self.execution_provider = str(settings.get("execution_provider", "cpu"))
        providers: list[str] | None = ["CPUExecutionProvider"]
        if self.execution_provider == "openvino":
            from vilt_edge.runtimes.openvino import openvino_ep_devices, openvino_ep_options

            devices = openvino_ep_devices(onnxruntime)
            ep_options, cache = openvino_ep_options(settings, self.threads, self.model_path)
            options.add_provider_for_devices(devices, ep_options)
            providers = None  # the session's providers are the ones added for its devices
        elif self.execution_provider != "cpu":
            raise BundleError(
                f"runtime_settings.execution_provider must be cpu or openvino; "
                f"got {self.execution_provider!r}"
            )
        try:
            self._session = onnxruntime.InferenceSession(
                str(self.model_path), sess_options=options, providers=providers
            )
        except Exception as error:  # onnxruntime's load failures share no useful base class
            raise BundleError(
                f"{self.model_path}: onnxruntime cannot load this model ({first_line(error)})"
            ) from None
        if self.execution_provider == "openvino":
            from vilt_edge.runtimes.openvino import seal_cache

            seal_cache(cache)
        self.input_names = [node.name for node in self._session.get_inputs()]
        # Graphs exported since EXPORT_REVISION 3 take any text length up to the bundle's, so
        # the runtime can cut a batch's padding columns (`vilt_edge.runtime.trim_padding`).
        text_axes = [
            node.shape[1]
            for node in self._session.get_inputs()
            if node.name in ("input_ids", "attention_mask") and len(node.shape) == 2
        ]
        self.dynamic_text = bool(text_axes) and not any(isinstance(d, int) for d in text_axes)
        outputs = [node.name for node in self._session.get_outputs()]
        self._output = OUTPUT if OUTPUT in outputs else outputs[0]

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """`run({"input_ids": ..., "attention_mask": ..., "pixel_values": ...})` -> logits.

        Feeds the model does not declare are left out, since an exporter may prune an unused
        input; a declared input missing from `feeds` raises `BundleError`.
        """
        if self._session is None:
            raise RuntimeError("this runner is closed")
        inputs = self.model_inputs(feeds)
        started = time.perf_counter()
        (logits,) = self._session.run([self._output], inputs)
        self.last_inference_time_ms = (time.perf_counter() - started) * 1000
        return logits

    def describe(self) -> dict[str, Any]:
        """Runtime name, version, providers and threads, for reports and `--json` output."""
        providers = self._session.get_providers() if self._session is not None else []
        return {
            "runtime": self.name,
            "version": self._version,
            "providers": providers,
            # ONNX Runtime's default intra-op pool has one thread per physical core; the
            # logical CPUs this process may use is the closest torch-free stand-in.
            "threads": self.threads or _usable_cpus(),
            "model": str(self.model_path),
        }

    def close(self) -> None:
        self._session = None


def _usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1

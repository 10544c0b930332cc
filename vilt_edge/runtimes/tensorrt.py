"""The TensorRT runner: a serialized engine (model.plan) run through TensorRT's Python API.

    from vilt_edge.runtimes.tensorrt import TensorRTRunner

    with TensorRTRunner.load("bundle/model.plan", settings=manifest_runtime_settings) as runner:
        logits = runner.run(feeds)

A TensorRT engine only loads on the TensorRT version that built it, and is tuned for one GPU
(TensorRT's documentation: engines are specific to the exact TensorRT version and to the GPU
model they were built on), so `load` compares the bundle's `runtime_settings` (written by
`vilt-edge compile`) with this machine and refuses a mismatch in one line, before TensorRT
would fail in a less readable way.

Device memory is managed with cuda-python's runtime API, as NVIDIA's TensorRT samples do
(samples/python/common_runtime.py): one device buffer per I/O tensor, sized for its largest
shape and allocated once at load, and one CUDA stream. Each call returns a tuple whose first
item is a `cudaError_t`.

`tensorrt` and `cuda` are imported inside functions, so importing this module (and the runner
registry) works on machines without them.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.errors import BundleError, InputError, first_line
from vilt_edge.runtimes.base import RunnerBase

OUTPUT = "logits"
NOT_INSTALLED = (
    "this bundle runs on TensorRT, which is not installed here (it comes with JetPack on a Jetson)"
)


def cudart_module() -> Any:
    """cuda-python's runtime API: `cuda.bindings.runtime`, or `cuda.cudart` before cuda-python
    12.6 moved it. Raises ImportError when cuda-python is not installed."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart
    return cudart


def cuda_check(cudart: Any, result: Any, what: str) -> Any:
    """Unpack a cuda-python call's `(err, value...)` tuple; an error raises `BundleError`."""
    err, *values = result
    if err != cudart.cudaError_t.cudaSuccess:
        name = getattr(err, "name", None) or str(err)
        raise BundleError(f"CUDA {what} failed: {name}")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def cuda_device_count(cudart: Any) -> int:
    """Visible CUDA GPUs; 0 when the driver reports none or an error (no driver, no device)."""
    err, count = cudart.cudaGetDeviceCount()
    if err != cudart.cudaError_t.cudaSuccess:
        return 0
    return int(count)


def gpu_identity(device: int = 0) -> dict[str, str]:
    """`{"gpu": "Orin", "compute_capability": "8.7"}` for CUDA device `device`."""
    cudart = cudart_module()
    props = cuda_check(cudart, cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
    name = props.name
    if isinstance(name, bytes | bytearray):
        name = bytes(name).split(b"\0", 1)[0].decode("utf-8", errors="replace")
    return {"gpu": str(name).strip(), "compute_capability": f"{props.major}.{props.minor}"}


def tensorrt_major(version: str) -> int:
    """8 for "8.5.2.2", 10 for "10.3.0.30"."""
    try:
        return int(str(version).split(".")[0])
    except ValueError:
        return 0


def make_logger(trt: Any, messages: list[str], forward: Callable[[str], None] | None = None) -> Any:
    """A `trt.ILogger` that keeps TensorRT's errors in `messages` (for one-line error reports)
    and passes warnings and errors to `forward(text)` when given, instead of TensorRT's default
    logger printing them to stderr."""
    errors = (trt.ILogger.Severity.INTERNAL_ERROR, trt.ILogger.Severity.ERROR)
    shown = (*errors, trt.ILogger.Severity.WARNING)

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)

        def log(self, severity: Any, msg: str) -> None:
            if severity in errors:
                messages.append(first_line(msg, ""))
            if forward is not None and severity in shown:
                forward(f"TensorRT: {first_line(msg, '')}")

    return _Logger()


def _dims(shape: Any) -> tuple[int, ...]:
    return tuple(int(d) for d in shape)


def _show(shape: tuple[int, ...]) -> str:
    return "x".join(str(d) for d in shape) if shape else "scalar"


class TensorRTRunner(RunnerBase):
    """One deserialized TensorRT engine with an execution context, device buffers and a stream;
    `run(feeds)` -> logits (float32)."""

    name = "tensorrt"

    def __init__(
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.check_threads(threads)
        self.model_path = Path(model_path)
        # The GPU does the work; one host thread drives the stream, so `threads` does not apply.
        self.threads: int | None = None
        self.last_inference_time_ms: float | None = None
        self.input_names: list[str] = []
        self._context: Any = None
        self._engine: Any = None
        self._runtime: Any = None
        self._stream: Any = None
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (device pointer, bytes)
        try:
            import tensorrt as trt
        except ImportError:
            raise BundleError(NOT_INSTALLED) from None
        try:
            self._cudart = cudart_module()
        except ImportError:
            raise BundleError(
                "this bundle runs on TensorRT, which needs cuda-python (pip install cuda-python)"
            ) from None
        self._trt = trt
        self._version = str(trt.__version__)
        settings = settings or {}
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: engine file not found")
        built_version = settings.get("tensorrt_version")
        if built_version and str(built_version) != self._version:
            raise BundleError(
                f"{self.model_path.name} was built with TensorRT {built_version}, but this "
                f"machine has TensorRT {self._version}; an engine only loads on the TensorRT "
                f"version that built it, so compile the bundle again on this device"
            )
        if cuda_device_count(self._cudart) < 1:
            raise BundleError(f"{self.model_path.name} needs a CUDA GPU, and none is visible here")
        self._identity = gpu_identity()
        for key, what in (("gpu", "GPU"), ("compute_capability", "compute capability")):
            built = settings.get(key)
            if built and str(built) != self._identity[key]:
                raise BundleError(
                    f"{self.model_path.name} was built for {what} {built}, but this machine has "
                    f"{what} {self._identity[key]}; TensorRT engines are specific to the GPU "
                    f"they were built on, so compile the bundle again on this device"
                )
        try:
            self._load(settings.get("max_shapes") or {})
        except BaseException:
            self.close()
            raise

    def _load(self, max_shapes: dict[str, Any]) -> None:
        trt, cudart = self._trt, self._cudart
        self._messages: list[str] = []
        self._logger = make_logger(trt, self._messages)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.model_path.read_bytes())
        if self._engine is None:
            reason = self._messages[0] if self._messages else "deserialize_cuda_engine failed"
            raise BundleError(
                f"{self.model_path.name}: TensorRT {self._version} cannot load this engine "
                f"({reason})"
            )
        engine = self._engine
        self._context = engine.create_execution_context()
        if self._context is None:
            reason = self._messages[0] if self._messages else "out of GPU memory?"
            raise BundleError(
                f"{self.model_path.name}: TensorRT could not create an execution context ({reason})"
            )
        context = self._context
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        modes = {name: engine.get_tensor_mode(name) for name in names}
        self.input_names = [n for n in names if modes[n] == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if modes[n] == trt.TensorIOMode.OUTPUT]
        if OUTPUT in outputs:
            self._output = OUTPUT
        elif len(outputs) == 1:
            self._output = outputs[0]
        else:
            raise BundleError(
                f"{self.model_path.name}: the engine has outputs {', '.join(outputs) or 'none'}; "
                f"expected one named {OUTPUT}"
            )
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self._max_shapes: dict[str, tuple[int, ...]] = {}
        for name in self.input_names:
            declared = _dims(engine.get_tensor_shape(name))
            if name in max_shapes:
                largest = _dims(max_shapes[name])
            elif all(d >= 0 for d in declared):
                largest = declared
            else:
                raise BundleError(
                    f"manifest.json: runtime_settings.max_shapes has no entry for the engine's "
                    f"dynamic input {name}"
                )
            if not context.set_input_shape(name, largest):
                raise BundleError(
                    f"{self.model_path.name}: the engine rejects {name} at its maximum shape "
                    f"{_show(largest)} from manifest.json"
                )
            self._max_shapes[name] = largest
        if self._max_shapes.get("input_ids"):
            self.max_batch = int(self._max_shapes["input_ids"][0])
        for name in outputs:
            shape = _dims(context.get_tensor_shape(name))
            if any(d < 0 for d in shape):
                raise BundleError(
                    f"{self.model_path.name}: output {name} has a data-dependent shape "
                    f"{shape}, which this runner does not support"
                )
            self._max_shapes[name] = shape
        for name in names:
            nbytes = max(1, int(np.prod(self._max_shapes[name])) * self._dtypes[name].itemsize)
            pointer = cuda_check(cudart, cudart.cudaMalloc(nbytes), "cudaMalloc")
            self._buffers[name] = (int(pointer), nbytes)
        self._stream = cuda_check(cudart, cudart.cudaStreamCreate(), "cudaStreamCreate")

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        """`run({"input_ids": ..., "attention_mask": ..., "pixel_values": ...})` -> logits.

        Feeds are cast to the engine's input types (TensorRT 8.5 takes int32 ids); a shape
        beyond the engine's maximum raises `InputError`, a missing input `BundleError`.
        """
        if self._context is None:
            raise RuntimeError("this runner is closed")
        self.model_inputs(feeds)  # raises on a missing input
        cudart, context = self._cudart, self._context
        arrays: dict[str, np.ndarray] = {}
        for name in self.input_names:
            array = np.ascontiguousarray(feeds[name], dtype=self._dtypes[name])
            largest = self._max_shapes[name]
            if array.ndim != len(largest) or any(
                d > m for d, m in zip(array.shape, largest, strict=True)
            ):
                raise InputError(
                    f"input {name} has shape {_show(array.shape)}, beyond this engine's maximum "
                    f"{_show(largest)} (compile the bundle with larger --max-batch/--image-size)"
                )
            if not context.set_input_shape(name, array.shape):
                raise InputError(
                    f"input {name} has shape {_show(array.shape)}, outside the shapes this "
                    f"engine was built for (up to {_show(largest)})"
                )
            arrays[name] = array
        output_shape = _dims(context.get_tensor_shape(self._output))
        logits = np.empty(output_shape, dtype=self._dtypes[self._output])
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        started = time.perf_counter()
        for name, array in arrays.items():
            pointer = self._buffers[name][0]
            if array.nbytes:
                copy = cudart.cudaMemcpyAsync(
                    pointer, array.ctypes.data, array.nbytes, to_device, self._stream
                )
                cuda_check(cudart, copy, "cudaMemcpyAsync")
        for name, (pointer, _) in self._buffers.items():
            context.set_tensor_address(name, pointer)
        if not context.execute_async_v3(int(self._stream)):
            reason = self._messages[-1] if self._messages else "execute_async_v3 failed"
            raise BundleError(f"{self.model_path.name}: TensorRT could not run ({reason})")
        if logits.nbytes:
            copy = cudart.cudaMemcpyAsync(
                logits.ctypes.data,
                self._buffers[self._output][0],
                logits.nbytes,
                to_host,
                self._stream,
            )
            cuda_check(cudart, copy, "cudaMemcpyAsync")
        cuda_check(cudart, cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        self.last_inference_time_ms = (time.perf_counter() - started) * 1000
        return logits.astype(np.float32, copy=False)

    def describe(self) -> dict[str, Any]:
        """Runtime name, TensorRT version, GPU and model, for reports and `--json` output."""
        identity = getattr(self, "_identity", {})
        return {
            "runtime": self.name,
            "version": getattr(self, "_version", None),
            "gpu": identity.get("gpu"),
            "compute_capability": identity.get("compute_capability"),
            "providers": ["TensorRT"],
            "threads": self.threads,
            "model": str(self.model_path),
        }

    def close(self) -> None:
        """Free the device buffers and the stream; release the context before the engine."""
        cudart = getattr(self, "_cudart", None)
        self._context = None
        self._engine = None
        self._runtime = None
        if cudart is None:
            return
        buffers, self._buffers = self._buffers, {}
        for pointer, _ in buffers.values():
            cudart.cudaFree(pointer)
        if self._stream is not None:
            stream, self._stream = self._stream, None
            cudart.cudaStreamDestroy(stream)

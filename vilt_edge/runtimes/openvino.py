"""OpenVINO on CPUs, two ways: the runtime itself (`OpenVinoRunner`, runtime "openvino") and
the pieces ONNX Runtime's OpenVINO execution provider needs (`openvino_ep_devices`,
`openvino_ep_options`), which `OnnxRuntimeRunner` uses when a compiled bundle's settings name
`execution_provider: "openvino"`.

    from vilt_edge.runtimes.openvino import OpenVinoRunner
    settings = {"inference_precision": "bf16"}  # a bf16 bundle's runtime_settings
    with OpenVinoRunner("bundle/model.onnx", threads=2, settings=settings) as r:
        logits = r.run(feeds)

Both compile the ONNX graph for this CPU when the model is loaded (seconds for ViLT-B/32) and
keep the compiled blob in OpenVINO's model cache (`model_cache_dir`): a folder of the user's
cache per OpenVINO version and CPU (model, ISA flags, AMX grant), so a robot compiles once, and
another CPU or OpenVINO release compiles anew instead of loading a blob made for something else.
OpenVINO keys the blobs inside by the model and its compile settings.

`inference_precision` is what OpenVINO computes the float parts in: "f32" (the default here:
OpenVINO's own default on AMX hosts is BF16, which an FP32 bundle must not silently become) or
"bf16" (a bf16 bundle; only on CPUs with AMX-BF16 or AVX512-BF16, checked at load).
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.bundle import external_data_file, sha256_file
from vilt_edge.errors import BundleError, first_line
from vilt_edge.runtimes.base import RunnerBase

EP_NAME = "OpenVINOExecutionProvider"
INSTALL = "pip install 'vilt-edge[openvino]'"
INFERENCE_PRECISIONS = ("f32", "bf16")
BF16_FLAGS = ("amx_bf16", "avx512_bf16")
OUTPUT = "logits"


def model_cache_dir(runtime_version: str) -> Path:
    """`<cache>/openvino/<version>/<cpu key>`: one folder per OpenVINO build and CPU."""
    from vilt_edge.devices.host import machine_description, usable_cpu_flags
    from vilt_edge.paths import cache_dir

    machine = machine_description()
    cpu = "|".join([machine["cpu"], *sorted(usable_cpu_flags())])
    key = hashlib.sha256(cpu.encode()).hexdigest()[:16]
    version = "".join(c if c.isalnum() or c in ".-" else "_" for c in runtime_version)
    return cache_dir() / "openvino" / version / key


def precision_name(reported: str) -> str:
    """ "bf16" or "f32" for what OpenVINO reports as its inference precision: a Type printed as
    `<Type: 'bfloat16'>` (2026.4) or `bf16`, `<Type: 'float32'>` or `f32`."""
    text = str(reported).lower()
    return "bf16" if "bf16" in text or "bfloat16" in text else "f32"


def inference_precision(settings: dict[str, Any]) -> str:
    """The manifest's inference precision ("f32" unless it says "bf16"), checked here."""
    precision = str(settings.get("inference_precision", "f32")).lower()
    if precision not in INFERENCE_PRECISIONS:
        raise BundleError(
            f"runtime_settings.inference_precision must be one of {', '.join(INFERENCE_PRECISIONS)}"
            f"; got {precision!r}"
        )
    if precision == "bf16":
        from vilt_edge.devices.host import machine_description, usable_cpu_flags

        if not set(BF16_FLAGS) & usable_cpu_flags():
            raise BundleError(
                f"this bundle computes in BF16, which this CPU ({machine_description()['cpu']}) "
                f"cannot: it needs AMX-BF16 or AVX512-BF16; run the FP32 or INT8 bundle here"
            )
    return precision


def _cache_settings(
    settings: dict[str, Any], version: str, model_path: Path, config: str = ""
) -> tuple[Path | None, list[str]]:
    """This model's cache folder, made and checked (`drop_damaged`): (folder, names dropped);
    None where the manifest turns the cache off or the cache cannot be written. `config` (the
    properties it is compiled with) keys the folder too: ONNX Runtime's OpenVINO provider names
    its blob by the model alone, so a BF16 session of a graph loaded the blob an FP32 session
    of the same file had written and failed in OpenVINO ("Failed to broadcast work_amount",
    seen on an AMX Xeon)."""
    if settings.get("model_cache") is False:
        return None, []
    folder = model_cache_dir(version) / _model_key(model_path, config)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        return folder, drop_damaged(folder)
    except OSError:
        return None, []  # a read-only home: compile at every load rather than fail


def _model_key(model_path: Path, config: str = "") -> str:
    """One cache folder per model file (and its weights file), as it is on disk now, and per
    compile `config`."""
    parts = [config] if config else []
    for path in (model_path, model_path.with_name(external_data_file(model_path.name))):
        if path.is_file():
            stat = path.stat()
            parts.append(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}")
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:16]


SEAL = ".sha256"


def drop_damaged(folder: Path) -> list[str]:
    """Delete every compiled blob in a model's cache folder that is not as it was written: its
    sha256 differs from the one recorded beside it when it was written (a bad sector, a file
    edited), or none was recorded (a write cut short by a power loss). OpenVINO loads a damaged
    blob without noticing and answers wrongly (tested: 4 KB zeroed in a blob moved the logits
    by up to 1.7), so the model is compiled anew instead. Returns the names dropped."""
    dropped = []
    for path in sorted(folder.rglob("*")):
        if not path.is_file() or path.name.endswith(SEAL):
            continue
        seal = path.with_name(path.name + SEAL)
        if not seal.is_file() or seal.read_text(encoding="utf-8").strip() != sha256_file(path):
            path.unlink(missing_ok=True)
            seal.unlink(missing_ok=True)
            dropped.append(path.name)
    for seal in folder.rglob(f"*{SEAL}"):  # seals whose blob is gone
        if not seal.with_name(seal.name[: -len(SEAL)]).is_file():
            seal.unlink(missing_ok=True)
    return dropped


def seal_cache(folder: Path | None) -> None:
    """Record the sha256 of each blob OpenVINO has just written (atomically, beside it)."""
    if folder is None:
        return
    for path in sorted(folder.rglob("*")):
        seal = path.with_name(path.name + SEAL)
        if not path.is_file() or path.name.endswith(SEAL) or seal.is_file():
            continue
        partial = seal.with_name(seal.name + ".partial")
        try:
            partial.write_text(sha256_file(path) + "\n", encoding="utf-8")
            os.replace(partial, seal)
        except OSError:
            partial.unlink(missing_ok=True)  # unsealed: dropped and rebuilt at the next load


class OpenVinoRunner(RunnerBase):
    """One OpenVINO compiled model over an ONNX file, on the CPU; `run(feeds)` -> logits."""

    name = "openvino"
    dynamic_text = True  # OpenVINO compiles the graph's dynamic axes as dynamic

    def __init__(
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        self.check_threads(threads)
        try:
            import openvino
        except ImportError:
            raise BundleError(
                f"this bundle runs on OpenVINO, which is not installed ({INSTALL})"
            ) from None
        settings = settings or {}
        self.model_path = Path(model_path)
        if not self.model_path.is_file():
            raise BundleError(f"{self.model_path}: model file not found")
        self.threads = threads if threads is not None else settings.get("intra_op_num_threads")
        self.precision = inference_precision(settings)
        self._version = openvino.__version__.split("-")[0]
        self.cache, self.cache_dropped = _cache_settings(settings, self._version, self.model_path)
        config: dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_PRECISION_HINT": self.precision,
        }
        if self.threads is not None:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        if self.cache is not None:
            config["CACHE_DIR"] = str(self.cache)
        started = time.perf_counter()
        try:
            core = openvino.Core()
            # compile_model(path) reads the file itself, which is what lets the cache skip the
            # ONNX import on a warm start.
            self._compiled = core.compile_model(str(self.model_path), "CPU", config)
        except Exception as error:  # OpenVINO raises RuntimeError and its own types
            raise BundleError(
                f"{self.model_path}: OpenVINO cannot compile this model ({first_line(error)})"
            ) from None
        self.compile_ms = (time.perf_counter() - started) * 1000
        seal_cache(self.cache)
        # What OpenVINO will compute in: it quietly keeps f32 where the CPU lacks BF16.
        effective = str(self._compiled.get_property("INFERENCE_PRECISION_HINT"))
        self.effective_precision = precision_name(effective)
        if self.precision == "bf16" and self.effective_precision != "bf16":
            raise BundleError(
                f"{self.model_path}: OpenVINO would run this BF16 bundle in FP32 on this CPU "
                f"(it reports {effective}); run the FP32 bundle here"
            )
        self._request = self._compiled.create_infer_request()
        self.input_names = [port.get_any_name() for port in self._compiled.inputs]
        outputs = [port.get_any_name() for port in self._compiled.outputs]
        self._output = OUTPUT if OUTPUT in outputs else outputs[0]
        self.last_inference_time_ms: float | None = None

    def run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        if self._request is None:
            raise RuntimeError("this runner is closed")
        inputs = self.model_inputs(feeds)
        started = time.perf_counter()
        results = self._request.infer(inputs)
        self.last_inference_time_ms = (time.perf_counter() - started) * 1000
        return np.array(results[self._output], copy=True)

    def describe(self) -> dict[str, Any]:
        return {
            "runtime": self.name,
            "version": self._version,
            "providers": ["OpenVINO CPU"],
            "inference_precision": self.effective_precision,
            "threads": self.threads or len(os.sched_getaffinity(0)),
            "model_cache": str(self.cache) if self.cache else None,
            "model_cache_dropped": self.cache_dropped,
            "model": str(self.model_path),
        }

    def close(self) -> None:
        self._request = None
        self._compiled = None


_REGISTERED: set[str] = set()


def openvino_ep_devices(onnxruntime: Any) -> list[Any]:
    """This CPU as ONNX Runtime's OpenVINO execution provider offers it (the plugin library
    registered once per process); one line saying what is missing where it cannot."""
    try:
        import onnxruntime_ep_openvino
    except ImportError:
        raise BundleError(
            "this bundle runs on ONNX Runtime's OpenVINO execution provider, which is not "
            f"installed ({INSTALL})"
        ) from None
    if not hasattr(onnxruntime, "register_execution_provider_library"):
        raise BundleError(
            f"ONNX Runtime {onnxruntime.__version__} cannot load execution provider plugins; "
            f"the OpenVINO provider needs onnxruntime>=1.23 ({INSTALL})"
        )
    if EP_NAME not in _REGISTERED:
        try:
            onnxruntime.register_execution_provider_library(
                EP_NAME, onnxruntime_ep_openvino.get_library_path()
            )
        except Exception as error:  # noqa: BLE001 - ORT's pybind errors share no base
            if "already" not in str(error).lower():
                raise BundleError(
                    f"ONNX Runtime cannot load the OpenVINO provider ({first_line(error)})"
                ) from None
        _REGISTERED.add(EP_NAME)
    cpu = onnxruntime.OrtHardwareDeviceType.CPU
    devices = [
        device
        for device in onnxruntime.get_ep_devices()
        if device.ep_name == EP_NAME and device.device.type == cpu
    ]
    if not devices:
        vendors = {d.device.vendor for d in onnxruntime.get_ep_devices() if d.device.type == cpu}
        raise BundleError(
            f"ONNX Runtime's OpenVINO provider offers no device on this CPU "
            f"({', '.join(sorted(vendors)) or 'unknown vendor'}): it runs on Intel CPUs only; "
            f"compile the bundle with --target cpu on this machine"
        )
    return devices


def openvino_ep_options(
    settings: dict[str, Any], threads: int | None, model_path: str | os.PathLike
) -> tuple[dict[str, str], Path | None]:
    """The provider's options for this bundle (CPU threads, precision, model cache) and the
    model cache's folder (this model's, checked as `OpenVinoRunner`'s is; seal it with
    `seal_cache` once the session is made; None where the cache is off). The plugin provider
    (1.8) takes them all as OpenVINO properties in `load_config`: its classic `num_of_threads`
    and `cache_dir` options are ignored with a warning (so a bundle's threads and cache were
    silently lost, seen on an AMX Xeon), and the device comes from the `OrtEpDevice` the
    session is given, not from `device_type`."""
    import json

    import onnxruntime

    cpu: dict[str, str] = {
        "INFERENCE_PRECISION_HINT": inference_precision(settings),
        "PERFORMANCE_HINT": "LATENCY",
    }
    if threads:
        cpu["INFERENCE_NUM_THREADS"] = str(threads)
    version = f"ep-{onnxruntime.__version__}-{_ep_version()}"
    cache, _ = _cache_settings(settings, version, Path(model_path), json.dumps(cpu, sort_keys=True))
    if cache is not None:
        cpu["CACHE_DIR"] = str(cache)
    return {"load_config": json.dumps({"CPU": cpu})}, cache


def _ep_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-ep-openvino")
    except PackageNotFoundError:
        return "unknown"

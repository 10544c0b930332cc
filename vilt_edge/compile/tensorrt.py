"""Build a TensorRT engine from an ONNX model with TensorRT's Python API (TensorRT 8.5 on
JetPack 5.1, 10.3 on JetPack 6, 10.13 on JetPack 7 for Thor, 11.x).

    from vilt_edge.compile.tensorrt import EngineSpec, build_engine, tensorrt_status

    version, reason = tensorrt_status()          # (None, "tensorrt is not installed") elsewhere
    spec = EngineSpec(
        precision="fp16",
        input_shapes={"input_ids": ((1, 40), (1, 40), (4, 40)), ...},
        workspace_bytes=1 << 30,
    )
    record = build_engine(Path("model.onnx"), Path("model.plan"), spec, log=print)
    print(trtexec_command("model.onnx", "model.plan", spec, "10.3"))  # the same with trtexec

Precision, per version (`vilt_edge.compile.tensorrt_versions.build_plan`): TensorRT 10 and later
build strongly typed networks (the bundle's own types: an FP16 bundle builds FP16, an INT8 one
INT8 products from its explicit Q/DQ nodes); on 8.x "fp16" sets BuilderFlag.FP16 and "int8"
sets INT8 and FP16 (weak typing: the layers that are not quantized may run in FP16).
One optimization profile covers `input_shapes` (min, opt, max per input). With `dla_core` the
engine targets that DLA core with GPU fallback for layers the DLA cannot run. A `timing_cache`
file is loaded when it exists and written back after the build, which makes rebuilds on the
same device much faster.

`tensorrt` and `cuda` are imported inside functions, so this module imports without them.
"""

from __future__ import annotations

import math
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilt_edge.compile.tensorrt_versions import build_plan
from vilt_edge.errors import BundleError, InputError, first_line
from vilt_edge.outputs import write_file_atomically
from vilt_edge.records import PRECISIONS
from vilt_edge.runtimes.tensorrt import (
    cuda_device_count,
    cudart_module,
    gpu_identity,
    make_logger,
)

__all__ = [
    "PRECISIONS",
    "EngineSpec",
    "build_engine",
    "gpu_identity",
    "tensorrt_status",
    "trtexec_command",
]

MIB = 1 << 20

Shape = tuple[int, ...]


@dataclass(frozen=True)
class EngineSpec:
    """What to build: precision, one optimization profile, workspace, DLA core, timing cache."""

    precision: str  # "fp32" | "fp16" | "int8" (int8: the ONNX model has explicit Q/DQ nodes)
    input_shapes: dict[str, tuple[Shape, Shape, Shape]]  # input name -> (min, opt, max)
    workspace_bytes: int
    dla_core: int | None = None
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise InputError(
                f"unknown TensorRT precision {self.precision!r}; choose {', '.join(PRECISIONS)}"
            )
        if not isinstance(self.workspace_bytes, int) or self.workspace_bytes <= 0:
            raise InputError(f"the TensorRT workspace must be positive, not {self.workspace_bytes}")
        if self.dla_core is not None:
            if not isinstance(self.dla_core, int) or self.dla_core < 0:
                raise InputError(f"the DLA core must be 0 or more, not {self.dla_core!r}")
            if self.precision == "fp32":
                raise InputError("the DLA runs FP16 or INT8 only; compile an FP16 or INT8 engine")
        for name, shapes in self.input_shapes.items():
            if len(shapes) != 3:
                raise InputError(f"input {name}: give three shapes (min, opt, max)")
            low, opt, high = (tuple(int(d) for d in shape) for shape in shapes)
            if not len(low) == len(opt) == len(high):
                raise InputError(
                    f"input {name}: min {_show(low)}, opt {_show(opt)} and max {_show(high)} "
                    f"differ in rank"
                )
            ordered = all(a <= b <= c for a, b, c in zip(low, opt, high, strict=True))
            if not ordered or any(d < 1 for d in low):
                raise InputError(
                    f"input {name}: need 1 <= min <= opt <= max in every dimension; got min "
                    f"{_show(low)}, opt {_show(opt)}, max {_show(high)}"
                )

    def shapes_as_lists(self) -> dict[str, list[list[int]]]:
        return {
            name: [[int(d) for d in shape] for shape in shapes]
            for name, shapes in self.input_shapes.items()
        }

    def max_shapes(self) -> dict[str, list[int]]:
        """Input name -> its largest shape: what the runner allocates (`runtime_settings`)."""
        return {name: [int(d) for d in shapes[2]] for name, shapes in self.input_shapes.items()}


def _show(shape: Any) -> str:
    shape = tuple(shape)
    return "x".join(str(d) for d in shape) if shape else "scalar"


def tensorrt_status() -> tuple[str | None, str]:
    """`("10.3.0.30", "")` where TensorRT and a CUDA GPU are present, else `(None, reason)` with
    a one-line reason: "tensorrt is not installed", "no CUDA GPU visible", ..."""
    try:
        import tensorrt as trt
    except ImportError:
        return None, "tensorrt is not installed"
    except OSError as error:  # the bindings are there, a TensorRT library is not
        return None, f"tensorrt is installed but cannot load ({first_line(error)})"
    try:
        cudart = cudart_module()
    except ImportError:
        return None, "cuda-python is not installed (pip install cuda-python)"
    if cuda_device_count(cudart) < 1:
        return None, "no CUDA GPU visible"
    return str(trt.__version__), ""


def _parser_failure(parser: Any) -> str:
    count = parser.num_errors
    if count < 1:
        return "the parser reported no details"
    parser_error = parser.get_error(0)
    text = first_line(parser_error.desc(), "") or "unknown parser error"
    return text if count == 1 else f"{text} (and {count - 1} more)"


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    spec: EngineSpec,
    log: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Parse `onnx_path`, build a serialized engine per `spec`, write it to `engine_path`
    (atomically) and return the build record for the manifest.

    The ONNX parser's first error, or TensorRT's first logged error when the build fails,
    becomes a one-line `BundleError`.
    """
    say = log or (lambda message: None)
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    available, reason = tensorrt_status()
    if available is None:
        raise BundleError(f"cannot build a TensorRT engine here: {reason}")
    import tensorrt as trt

    if not onnx_path.is_file():
        raise BundleError(f"{onnx_path}: ONNX model not found")
    version = str(trt.__version__)
    messages: list[str] = []
    logger = make_logger(trt, messages, forward=log)

    plan = build_plan(version, spec.precision, dla=spec.dla_core is not None)
    builder = trt.Builder(logger)
    flags = 0
    for name in plan.network_flags:
        flags |= 1 << int(getattr(trt.NetworkDefinitionCreationFlag, name))
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    say(f"parsing {onnx_path.name} with TensorRT {version}")
    if not parser.parse_from_file(str(onnx_path)):
        raise BundleError(f"TensorRT cannot parse {onnx_path.name}: {_parser_failure(parser)}")
    _check_inputs(network, spec, onnx_path.name)

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, spec.workspace_bytes)
    for name in plan.builder_flags:
        config.set_flag(getattr(trt.BuilderFlag, name))
    if spec.dla_core is not None:
        available = builder.num_DLA_cores
        if spec.dla_core >= available:
            raise InputError(
                f"DLA core {spec.dla_core} was asked for, but this device has {available} "
                f"DLA core(s)"
            )
        config.default_device_type = trt.DeviceType.DLA
        config.DLA_core = spec.dla_core
    if spec.input_shapes:
        profile = builder.create_optimization_profile()
        for name, (low, opt, high) in spec.input_shapes.items():
            profile.set_shape(name, tuple(low), tuple(opt), tuple(high))
        config.add_optimization_profile(profile)

    cache_path = Path(spec.timing_cache) if spec.timing_cache is not None else None
    cache_loaded = False
    if cache_path is not None:
        previous = cache_path.read_bytes() if cache_path.is_file() else b""
        timing_cache = config.create_timing_cache(previous)
        accepted = bool(config.set_timing_cache(timing_cache, False))
        cache_loaded = bool(previous) and accepted
        if previous and not accepted:  # written by another TensorRT version or GPU
            say(f"{cache_path.name} does not match this TensorRT and GPU; starting a new one")
            timing_cache = config.create_timing_cache(b"")
            config.set_timing_cache(timing_cache, False)

    say(
        f"building the {spec.precision.upper()} engine"
        + (f" for DLA core {spec.dla_core}" if spec.dla_core is not None else "")
        + " (TensorRT tunes kernels on this GPU; this takes minutes)"
    )
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    seconds = time.perf_counter() - started
    if serialized is None:
        reason = f": {messages[0]}" if messages else ""
        raise BundleError(f"TensorRT could not build an engine from {onnx_path.name}{reason}")
    engine_bytes = write_file_atomically(engine_path, memoryview(serialized))
    if cache_path is not None:
        timing_cache = config.get_timing_cache()
        write_file_atomically(cache_path, memoryview(timing_cache.serialize()))
    say(f"wrote {engine_path.name} ({engine_bytes / MIB:.1f} MiB) in {seconds:.0f} s")

    return {
        "tensorrt_version": version,
        **gpu_identity(),
        "precision": spec.precision,
        "flags": list(plan.builder_flags),
        "network_flags": list(plan.network_flags),
        "strongly_typed": plan.strongly_typed,
        "plan": plan.describe(),
        "workspace_bytes": spec.workspace_bytes,
        "dla_core": spec.dla_core,
        "input_shapes": spec.shapes_as_lists(),
        "build_seconds": round(seconds, 3),
        "engine_bytes": engine_bytes,
        "timing_cache": cache_path is not None,
        "timing_cache_reused": cache_loaded,
    }


def _check_inputs(network: Any, spec: EngineSpec, model_name: str) -> None:
    """Every profile names a real input with its rank; every dynamic input has a profile."""
    declared: dict[str, tuple[int, ...]] = {}
    for index in range(network.num_inputs):
        tensor = network.get_input(index)
        declared[tensor.name] = tuple(int(d) for d in tensor.shape)
    unknown = sorted(set(spec.input_shapes) - set(declared))
    if unknown:
        raise InputError(
            f"{model_name} has no input(s) {', '.join(unknown)}; its inputs are "
            f"{', '.join(declared) or 'none'}"
        )
    for name, shape in declared.items():
        if name not in spec.input_shapes:
            if any(d < 0 for d in shape):
                raise InputError(
                    f"{model_name}: input {name} has dynamic shape {_dynamic(shape)}; give its "
                    f"min, opt and max shapes"
                )
            continue
        for which, given in zip(("min", "opt", "max"), spec.input_shapes[name], strict=True):
            given = tuple(int(d) for d in given)
            fits = len(given) == len(shape) and all(
                d < 0 or d == g for d, g in zip(shape, given, strict=True)
            )
            if not fits:
                raise InputError(
                    f"{model_name}: input {name} has shape {_dynamic(shape)}; the {which} "
                    f"shape {_show(given)} does not fit it"
                )


def _dynamic(shape: tuple[int, ...]) -> str:
    return "x".join("?" if d < 0 else str(d) for d in shape) if shape else "scalar"


def trtexec_command(onnx_name: str, engine_name: str, spec: EngineSpec, version: str) -> str:
    """The trtexec line that builds the same engine with TensorRT `version`, for the bundle's
    build step (`--fp16`/`--int8` on 8.x, `--stronglyTyped` on 10.x, neither on 11.x):

    trtexec --onnx=model.onnx --saveEngine=model.plan --stronglyTyped --minShapes=input_ids:1x40,...
        --optShapes=... --maxShapes=... --memPoolSize=workspace:1024 --timingCacheFile=timing.cache

    The workspace is in MiB without a suffix, which trtexec reads as MiB in both 8.5 (whose
    pool spec is `pool:sizeInMiB`) and 10.x (no suffix defaults to MiB).
    """
    parts = ["trtexec", f"--onnx={onnx_name}", f"--saveEngine={engine_name}"]
    parts += build_plan(version, spec.precision, dla=spec.dla_core is not None).trtexec_flags
    if spec.input_shapes:
        for index, option in enumerate(("--minShapes", "--optShapes", "--maxShapes")):
            shapes = ",".join(
                f"{name}:{_show(shapes[index])}" for name, shapes in spec.input_shapes.items()
            )
            parts.append(f"{option}={shapes}")
    parts.append(f"--memPoolSize=workspace:{max(1, math.ceil(spec.workspace_bytes / MIB))}")
    cache_name = Path(spec.timing_cache).name if spec.timing_cache is not None else "timing.cache"
    parts.append(f"--timingCacheFile={cache_name}")
    if spec.dla_core is not None:
        parts += [f"--useDLACore={spec.dla_core}", "--allowGPUFallback"]
    return " ".join(shlex.quote(part) for part in parts)

"""In-process fakes of `tensorrt` and cuda-python's runtime API (`cuda.bindings.runtime`), for
testing vilt_edge's TensorRT builder and runner on machines without TensorRT or a GPU.

    from trt_stub import trt_stub_fixture  # noqa: F401  (registers the `trt_stub` fixture)

    def test_something(trt_stub):
        stub = trt_stub(version="8.5.2.2", gpu="Xavier", cc=(7, 2))
        ...
        assert ("config.set_flag", "FP16") in stub.calls

The fake `tensorrt` exposes exactly the names of the real TensorRT version it stands for: the
surface `scripts/trt_surface.py` read from that version's bindings wheel
(vilt_edge/compile/tensorrt_surfaces/trt-<version>.json; module attributes, enum members and the
attributes of every class; anything else raises AttributeError), so code that uses a name a
version lacks (TensorRT 11 has no BuilderFlag.FP16) or a misspelled one fails that version's
tests. A stub version picks the surface of its major.minor, or the nearest of its major (8.5
-> 8.6.1: no 8.5 bindings wheel exists). The cuda-python fake exposes the names of the real
`cuda.bindings.runtime` of cuda-python 12.9 (cudart-12.9.10.json, read by
scripts/cudart_surface.py). Both record every call in `stub.calls` as
`(what, *arguments)` tuples.

The fake "ONNX" file is JSON (`write_fake_onnx`); the fake builder serializes what it was given
(inputs, profile, flags) into the engine bytes, and the fake engine's `execute_async_v3` writes
`expected_logits(...)` (a fixed function of the inputs) into the output buffer, so the runner's
host <-> device copies, dtypes and shapes are really exercised. Fake device memory is real host
memory (numpy buffers keyed by their address); copies and kernel launches queue on their stream
and happen at `cudaStreamSynchronize`, like the asynchronous real thing.
"""

from __future__ import annotations

import ctypes
import enum
import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from vilt_edge.compile.tensorrt_versions import SURFACES, load_surface

API_PATH = Path(__file__).resolve().parents[1] / "vilt_edge" / "compile" / "tensorrt_api.json"
API = json.loads(API_PATH.read_text())


def surface_allowed(surface: dict[str, Any]) -> dict[str, set[str]]:
    """{"trt": module names, "trt.<Enum>": members, "<Class>": attributes} of a surface."""
    allowed = {"trt": set(surface["module"]) | {"__version__"}}
    for name, members in surface["enums"].items():
        allowed[f"trt.{name}"] = set(members)
    for name, members in surface["nested"].items():
        allowed[f"trt.{name}"] = set(members)
    for name, attributes in surface["classes"].items():
        allowed[name] = set(attributes)
    return allowed


ENGINE_MAGIC = b"FAKE-TRT-ENGINE\n"
CACHE_MAGIC = b"FAKE-TIMING-CACHE\n"


def _allowed(section: str) -> dict[str, set[str]]:
    """ "Class.member" keys -> {class: {members}}; "trt.A.B" -> {"trt": {"A"}, "trt.A": {"B"}}."""
    allowed: dict[str, set[str]] = {}
    for key in API[section]:
        parts = key.split(".")
        for depth in range(1, len(parts)):
            allowed.setdefault(".".join(parts[:depth]), set()).add(parts[depth])
    return allowed


CUDA_PYTHON = "12.9.10"  # the cuda-python release whose real runtime names the fake exposes


def cudart_allowed(version: str = CUDA_PYTHON) -> dict[str, set[str]]:
    """{"cudart": module names, "cudart.<Enum>": members, "<class>": attributes} of the real
    `cuda.bindings.runtime` of cuda-python `version` (scripts/cudart_surface.py)."""
    surface = json.loads((SURFACES / f"cudart-{version}.json").read_text())
    allowed = {"cudart": set(surface["module"])}
    for name, members in surface["enums"].items():
        allowed[f"cudart.{name}"] = set(members)
    for name, attributes in surface["classes"].items():
        allowed[name] = set(attributes)
    return allowed


CUDART_ALLOWED = cudart_allowed()


class _Strict:
    """Members outside the API list raise AttributeError, as a misspelled name would."""

    _api = ""
    _allowed: dict[str, set[str]] = {}

    def __getattribute__(self, name: str) -> Any:
        if not name.startswith("_"):
            cls = type(self)
            if name not in cls._allowed.get(cls._api, ()):
                raise AttributeError(f"{cls._api}.{name} is not in this version's API")
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if not name.startswith("_"):
            cls = type(self)
            if name not in cls._allowed.get(cls._api, ()):
                raise AttributeError(f"{cls._api}.{name} is not in this version's API")
        object.__setattr__(self, name, value)


def _enum(path: str, values: dict[str, int], allowed: dict[str, set[str]]) -> type[enum.IntEnum]:
    """An IntEnum holding the members of `values` that the real API has (the rest of the real
    members are not used by vilt-edge; a used one missing here fails as it would for real)."""
    listed = allowed.get(path, set())
    return enum.IntEnum(path.split(".")[-1], {k: v for k, v in values.items() if k in listed})


class _DataType(enum.IntEnum):  # not exposed: the code only passes it on to trt.nptype
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    INT64 = 9


NUMPY_OF = {
    _DataType.FLOAT: np.float32,
    _DataType.HALF: np.float16,
    _DataType.INT8: np.int8,
    _DataType.INT32: np.int32,
    _DataType.BOOL: np.bool_,
    _DataType.INT64: np.int64,
}
DATATYPE_OF = {
    "float32": _DataType.FLOAT,
    "float16": _DataType.HALF,
    "int32": _DataType.INT32,
    "int64": _DataType.INT64,
}


class _CudaError(enum.IntEnum):  # failure codes; cudart.cudaError_t exposes only cudaSuccess
    cudaErrorInvalidValue = 1
    cudaErrorMemoryAllocation = 2
    cudaErrorNoDevice = 100


class _HostMemory(bytes):
    """IHostMemory: the code only reads it through the buffer protocol."""


def expected_logits(feeds: dict[str, np.ndarray], labels: int) -> np.ndarray:
    """What the fake engine computes: logits[b, j] = sum(ids[b] * mask[b]) * (j + 1) + the sum
    of every floating-point input of example b."""
    ids = np.asarray(feeds["input_ids"]).astype(np.float64)
    batch = ids.shape[0]
    mask = feeds.get("attention_mask")
    mask = np.ones_like(ids) if mask is None else np.asarray(mask).astype(np.float64)
    total = (ids * mask).reshape(batch, -1).sum(axis=1)
    extra = np.zeros(batch)
    for name, value in feeds.items():
        value = np.asarray(value)
        if name not in ("input_ids", "attention_mask") and value.dtype.kind == "f":
            extra += value.astype(np.float64).reshape(batch, -1).sum(axis=1)
    return total[:, None] * np.arange(1, labels + 1)[None, :] + extra[:, None]


def write_fake_onnx(
    path: Path,
    inputs: dict[str, tuple[str, list[int]]] | None = None,
    labels: int = 7,
    output: str = "logits",
    output_dtype: str = "float32",
    error: str | None = None,
) -> Path:
    """A JSON stand-in for an ONNX model that the fake OnnxParser reads; `error` makes it fail."""
    inputs = inputs or {
        "input_ids": ("int64", [-1, 40]),
        "attention_mask": ("int64", [-1, 40]),
        "token_type_ids": ("int64", [-1, 40]),
        "pixel_values": ("float32", [-1, 3, -1, -1]),
    }
    model = {
        "inputs": {
            name: {"dtype": dtype, "shape": shape} for name, (dtype, shape) in inputs.items()
        },
        "outputs": {output: {"dtype": output_dtype, "labels": labels}},
    }
    if error is not None:
        model["error"] = error
    path.write_text(json.dumps(model))
    return path


def _read_model(path: Path) -> dict[str, Any]:
    """The fake parser's view of a model: a `write_fake_onnx` stand-in, or a real ONNX file
    (its inputs, and the label count of its output), so compile's whole flow can use it."""
    raw = path.read_bytes()
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError):
        import onnx

        model = onnx.load_from_string(raw)
        names = {1: "float32", 7: "int64", 6: "int32", 10: "float16"}

        def dims(value) -> list[int]:
            return [d.dim_value if d.HasField("dim_value") else -1
                    for d in value.type.tensor_type.shape.dim]  # fmt: skip

        inputs = {
            v.name: {"dtype": names[v.type.tensor_type.elem_type], "shape": dims(v)}
            for v in model.graph.input
        }
        output = model.graph.output[0]
        outputs = {output.name: {"dtype": "float32", "labels": dims(output)[-1]}}
        return {"inputs": inputs, "outputs": outputs}


class TrtStub:
    """The fake `tensorrt` and `cuda.bindings.runtime` modules and what was done with them."""

    def __init__(
        self,
        version: str = "10.3.0.30",
        gpu: str = "Orin",
        cc: tuple[int, int] = (8, 7),
        device_count: int = 1,
        dla_cores: int = 2,
        fail_build: str | None = None,
    ) -> None:
        self.version = version
        self.gpu = gpu
        self.cc = cc
        self.device_count = device_count
        self.dla_cores = dla_cores
        self.fail_build = fail_build  # an error message: build_serialized_network returns None
        self.calls: list[tuple[Any, ...]] = []
        self.allocations: dict[int, np.ndarray] = {}  # device pointer -> its bytes
        self.freed: list[int] = []
        self.streams: dict[int, list[tuple[Any, ...]]] = {}  # stream -> queued work
        self.destroyed_streams: list[int] = []
        self.major = int(version.split(".")[0])
        self.surface = load_surface(version)
        self.trt = _build_trt(self)
        self.cudart = _build_cudart(self)

    def named(self, what: str) -> list[tuple[Any, ...]]:
        """The arguments of every recorded call named `what`."""
        return [call[1:] for call in self.calls if call[0] == what]

    def live_allocations(self) -> int:
        return len(self.allocations)

    # fake device memory -------------------------------------------------------------------
    def _region(self, pointer: int, count: int) -> np.ndarray | None:
        for base, buffer in self.allocations.items():
            if base <= pointer and pointer + count <= base + buffer.nbytes:
                return buffer[pointer - base : pointer - base + count]
        return None

    def _read(self, pointer: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        count = int(np.prod(shape)) * np.dtype(dtype).itemsize
        region = self._region(pointer, count)
        if region is None:
            raise AssertionError(f"read of {count} bytes at {pointer:#x}: not in device memory")
        return region.view(dtype).reshape(shape)

    def _write(self, pointer: int, array: np.ndarray) -> None:
        region = self._region(pointer, array.nbytes)
        if region is None:
            raise AssertionError(f"write of {array.nbytes} bytes at {pointer:#x}: not allocated")
        region[:] = np.frombuffer(np.ascontiguousarray(array).tobytes(), dtype=np.uint8)


def _version_engine_dtype(stub: TrtStub, dtype: str) -> str:
    # TensorRT 8.5 has no INT64 tensors: the ONNX parser casts int64 inputs to int32.
    return "int32" if dtype == "int64" and stub.major < 10 else dtype


def _build_trt(stub: TrtStub) -> types.ModuleType:
    allowed = surface_allowed(stub.surface)

    class _Real(_Strict):  # the classes below expose exactly this version's attribute names
        _allowed = allowed

    class ILogger:
        Severity = _enum(
            "trt.ILogger.Severity",
            {"INTERNAL_ERROR": 0, "ERROR": 1, "WARNING": 2, "INFO": 3, "VERBOSE": 4},
            allowed,
        )

        def __init__(self) -> None:
            self._initialized = True

        def log(self, severity: Any, msg: str) -> None:
            pass

    def _logger_ok(logger: Any) -> None:
        if not isinstance(logger, ILogger) or not getattr(logger, "_initialized", False):
            raise TypeError("a logger must be a trt.ILogger that called trt.ILogger.__init__")

    flag_enum = _enum(
        "trt.NetworkDefinitionCreationFlag", {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1}, allowed
    )
    builder_flag = _enum(
        "trt.BuilderFlag", {"FP16": 0, "INT8": 1, "DEBUG": 2, "GPU_FALLBACK": 3}, allowed
    )
    pool_type = _enum("trt.MemoryPoolType", {"WORKSPACE": 0, "DLA_MANAGED_SRAM": 1}, allowed)
    device_type = _enum("trt.DeviceType", {"GPU": 0, "DLA": 1}, allowed)
    io_mode = _enum("trt.TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2}, allowed)

    class ITensor(_Real):
        _api = "ITensor"

        def __init__(self, name: str, shape: list[int]) -> None:
            self._name, self._shape = name, tuple(shape)

        @property
        def name(self) -> str:
            return self._name

        @property
        def shape(self) -> tuple[int, ...]:
            return self._shape

    class INetworkDefinition(_Real):
        _api = "INetworkDefinition"

        def __init__(self, flags: int) -> None:
            self._flags = flags
            self._inputs: dict[str, dict[str, Any]] = {}
            self._outputs: dict[str, dict[str, Any]] = {}

        @property
        def num_inputs(self) -> int:
            return len(self._inputs)

        def get_input(self, index: int) -> ITensor:
            name = list(self._inputs)[index]
            return ITensor(name, self._inputs[name]["shape"])

    class IParserError(_Real):
        _api = "ParserError"

        def __init__(self, text: str) -> None:
            self._text = text

        def desc(self) -> str:
            return self._text

    class OnnxParser(_Real):
        _api = "OnnxParser"

        def __init__(self, network: INetworkDefinition, logger: Any) -> None:
            _logger_ok(logger)
            self._network, self._errors = network, []
            stub.calls.append(("OnnxParser", network))

        @property
        def num_errors(self) -> int:
            return len(self._errors)

        def get_error(self, index: int) -> IParserError:
            return IParserError(self._errors[index])

        def parse_from_file(self, model: str) -> bool:
            stub.calls.append(("parser.parse_from_file", model))
            data = _read_model(Path(model))
            if "error" in data:
                self._errors += [data["error"], "a second, later error"]
                return False
            explicit = stub.major >= 10 or self._network._flags & (
                1 << int(flag_enum.EXPLICIT_BATCH)
            )
            if not explicit:
                self._errors.append("Network must have explicit batch dimension (8.x)")
                return False
            for name, spec in data["inputs"].items():
                self._network._inputs[name] = {
                    "dtype": _version_engine_dtype(stub, spec["dtype"]),
                    "shape": spec["shape"],
                }
            self._network._outputs = data["outputs"]
            return True

    class IOptimizationProfile(_Real):
        _api = "IOptimizationProfile"

        def __init__(self) -> None:
            self._shapes: dict[str, tuple[tuple[int, ...], ...]] = {}

        def set_shape(self, input: str, min: Any, opt: Any, max: Any) -> None:
            shapes = tuple(tuple(int(d) for d in s) for s in (min, opt, max))
            stub.calls.append(("profile.set_shape", input, *shapes))
            self._shapes[input] = shapes

    class ITimingCache(_Real):
        _api = "ITimingCache"

        def __init__(self, data: bytes) -> None:
            self._data = data or CACHE_MAGIC

        def serialize(self) -> _HostMemory:
            stub.calls.append(("timing_cache.serialize",))
            return _HostMemory(self._data)

    class IBuilderConfig(_Real):
        _api = "IBuilderConfig"

        def __init__(self) -> None:
            self._flags: set[Any] = set()
            self._pools: dict[Any, int] = {}
            self._profiles: list[IOptimizationProfile] = []
            self._device: Any = None  # GPU, TensorRT's default
            self._dla_core = -1
            self._cache: ITimingCache | None = None

        def set_memory_pool_limit(self, pool: Any, pool_size: int) -> None:
            stub.calls.append(("config.set_memory_pool_limit", pool.name, pool_size))
            self._pools[pool] = pool_size

        def set_flag(self, flag: Any) -> None:
            stub.calls.append(("config.set_flag", flag.name))
            self._flags.add(flag)

        @property
        def default_device_type(self) -> Any:
            return self._device

        @default_device_type.setter
        def default_device_type(self, value: Any) -> None:
            stub.calls.append(("config.default_device_type", value.name))
            self._device = value

        @property
        def DLA_core(self) -> int:
            return self._dla_core

        @DLA_core.setter
        def DLA_core(self, value: int) -> None:
            stub.calls.append(("config.DLA_core", value))
            self._dla_core = value

        def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
            stub.calls.append(("config.add_optimization_profile", dict(profile._shapes)))
            self._profiles.append(profile)
            return len(self._profiles) - 1

        def create_timing_cache(self, serialized_timing_cache: Any) -> ITimingCache:
            data = bytes(memoryview(serialized_timing_cache))
            stub.calls.append(("config.create_timing_cache", data))
            return ITimingCache(data)

        def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
            stub.calls.append(("config.set_timing_cache", cache._data, ignore_mismatch))
            if not cache._data.startswith(CACHE_MAGIC) and not ignore_mismatch:
                return False
            self._cache = cache
            return True

        def get_timing_cache(self) -> ITimingCache | None:
            return self._cache

    class Builder(_Real):
        _api = "Builder"

        def __init__(self, logger: Any) -> None:
            _logger_ok(logger)
            self._logger = logger
            stub.calls.append(("Builder",))

        @property
        def num_DLA_cores(self) -> int:
            return stub.dla_cores

        def create_network(self, flags: int = 0) -> INetworkDefinition:
            stub.calls.append(("builder.create_network", flags))
            return INetworkDefinition(flags)

        def create_builder_config(self) -> IBuilderConfig:
            return IBuilderConfig()

        def create_optimization_profile(self) -> IOptimizationProfile:
            return IOptimizationProfile()

        def build_serialized_network(
            self, network: INetworkDefinition, config: IBuilderConfig
        ) -> _HostMemory | None:
            stub.calls.append(("builder.build_serialized_network",))
            error = ILogger.Severity.ERROR
            if stub.fail_build:
                self._logger.log(error, stub.fail_build)
                return None
            typed = "STRONGLY_TYPED" in flag_enum.__members__ and network._flags & (
                1 << int(flag_enum.STRONGLY_TYPED)
            )
            typed = typed or stub.major >= 11  # 11 builds nothing else
            precision_flags = {f.name for f in config._flags} & {"FP16", "INT8"}
            if typed and precision_flags:  # as TensorRT 10 refuses them on such a network
                self._logger.log(
                    error, f"{sorted(precision_flags)} set on a strongly typed network"
                )
                return None
            shapes = config._profiles[0]._shapes if config._profiles else {}
            inputs = {}
            for name, spec in network._inputs.items():
                dynamic = any(d < 0 for d in spec["shape"])
                if dynamic and name not in shapes:
                    self._logger.log(error, f"input {name} is dynamic and has no profile")
                    return None
                low, _, high = shapes.get(name, (spec["shape"],) * 3)
                inputs[name] = {**spec, "min": list(low), "max": list(high)}
            if config._cache is not None:
                config._cache._data += f"tactics {stub.version} {stub.gpu}\n".encode()
            engine = {
                "version": stub.version,
                "inputs": inputs,
                "outputs": {
                    name: {**spec, "dtype": _version_engine_dtype(stub, spec["dtype"])}
                    for name, spec in network._outputs.items()
                },
                "flags": sorted(flag.name for flag in config._flags),
                "strongly_typed": bool(typed),
                "device": config._device.name if config._device is not None else "GPU",
                "dla_core": config._dla_core,
                "workspace": {pool.name: size for pool, size in config._pools.items()},
            }
            return _HostMemory(ENGINE_MAGIC + json.dumps(engine).encode())

    class IExecutionContext(_Real):
        _api = "IExecutionContext"

        def __init__(self, engine: ICudaEngine) -> None:
            self._engine = engine
            self._shapes: dict[str, tuple[int, ...]] = {}
            self._addresses: dict[str, int] = {}

        def set_input_shape(self, name: str, shape: Any) -> bool:
            shape = tuple(int(d) for d in shape)
            stub.calls.append(("context.set_input_shape", name, shape))
            spec = self._engine._spec["inputs"].get(name)
            if spec is None or len(shape) != len(spec["shape"]):
                return False
            bounds = zip(shape, spec["min"], spec["max"], strict=True)
            if not all(lo <= d <= hi for d, lo, hi in bounds):
                return False
            self._shapes[name] = shape
            return True

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            spec = self._engine._spec
            if name in spec["inputs"]:
                return self._shapes.get(name, tuple(spec["inputs"][name]["shape"]))
            ids = self._shapes.get("input_ids")
            return (ids[0] if ids else -1, spec["outputs"][name]["labels"])

        def set_tensor_address(self, name: str, memory: int) -> bool:
            if not isinstance(memory, int):
                raise TypeError(f"set_tensor_address wants an int pointer, got {type(memory)}")
            stub.calls.append(("context.set_tensor_address", name, memory))
            self._addresses[name] = memory
            return True

        def execute_async_v3(self, stream_handle: int) -> bool:
            if not isinstance(stream_handle, int) or stream_handle not in stub.streams:
                raise TypeError(f"execute_async_v3 wants a live int stream, not {stream_handle!r}")
            stub.calls.append(("context.execute_async_v3", stream_handle))
            engine = self._engine
            names = list(engine._spec["inputs"]) + list(engine._spec["outputs"])
            if set(self._addresses) != set(names) or set(self._shapes) != set(
                engine._spec["inputs"]
            ):
                return False
            shapes = {name: self.get_tensor_shape(name) for name in names}
            for name in names:  # every buffer must hold its tensor at the current shape
                nbytes = int(np.prod(shapes[name])) * engine._numpy(name).itemsize
                if stub._region(self._addresses[name], nbytes) is None:
                    return False
            addresses = dict(self._addresses)

            def kernel() -> None:
                feeds = {
                    name: stub._read(addresses[name], engine._numpy(name), shapes[name])
                    for name in engine._spec["inputs"]
                }
                for name, spec in engine._spec["outputs"].items():
                    logits = expected_logits(feeds, spec["labels"]).astype(engine._numpy(name))
                    stub._write(addresses[name], logits)

            stub.streams[stream_handle].append(("kernel", kernel))
            return True

    class ICudaEngine(_Real):
        _api = "ICudaEngine"

        def __init__(self, spec: dict[str, Any]) -> None:
            self._spec = spec
            self._names = list(spec["inputs"]) + list(spec["outputs"])

        def _numpy(self, name: str) -> np.dtype:
            return np.dtype(NUMPY_OF[self.get_tensor_dtype(name)])

        @property
        def num_io_tensors(self) -> int:
            return len(self._names)

        def get_tensor_name(self, index: int) -> str:
            return self._names[index]

        def get_tensor_mode(self, name: str) -> Any:
            return io_mode.INPUT if name in self._spec["inputs"] else io_mode.OUTPUT

        def get_tensor_dtype(self, name: str) -> _DataType:
            spec = self._spec["inputs"].get(name) or self._spec["outputs"][name]
            return DATATYPE_OF[spec["dtype"]]

        def get_tensor_shape(self, name: str) -> tuple[int, ...]:
            if name in self._spec["inputs"]:
                return tuple(self._spec["inputs"][name]["shape"])
            return (-1, self._spec["outputs"][name]["labels"])

        def create_execution_context(self) -> IExecutionContext:
            stub.calls.append(("engine.create_execution_context",))
            return IExecutionContext(self)

    class Runtime(_Real):
        _api = "Runtime"

        def __init__(self, logger: Any) -> None:
            _logger_ok(logger)
            self._logger = logger
            stub.calls.append(("Runtime",))

        def deserialize_cuda_engine(self, serialized_engine: Any) -> ICudaEngine | None:
            data = bytes(serialized_engine)
            stub.calls.append(("runtime.deserialize_cuda_engine", len(data)))
            if not data.startswith(ENGINE_MAGIC):
                self._logger.log(ILogger.Severity.ERROR, "Serialization assertion failed (magic)")
                return None
            spec = json.loads(data[len(ENGINE_MAGIC) :])
            if spec["version"] != stub.version:
                self._logger.log(ILogger.Severity.ERROR, "engine plan version mismatch")
                return None
            return ICudaEngine(spec)

    def nptype(trt_type: Any) -> type:
        return NUMPY_OF[trt_type]

    implementations: dict[str, Any] = {
        "__version__": stub.version,
        "ILogger": ILogger,
        "Builder": Builder,
        "NetworkDefinitionCreationFlag": flag_enum,
        "OnnxParser": OnnxParser,
        "BuilderFlag": builder_flag,
        "MemoryPoolType": pool_type,
        "DeviceType": device_type,
        "Runtime": Runtime,
        "TensorIOMode": io_mode,
        "nptype": nptype,
    }
    module = types.ModuleType("tensorrt")
    for name, implementation in implementations.items():
        if name in allowed["trt"]:  # what this version lacks is missing, as for real
            setattr(module, name, implementation)
    module._classes = [  # for the test that the stub defines no undocumented member
        ITensor,
        INetworkDefinition,
        IParserError,
        OnnxParser,
        IOptimizationProfile,
        ITimingCache,
        IBuilderConfig,
        Builder,
        IExecutionContext,
        ICudaEngine,
        Runtime,
    ]
    return module


class _Stream:
    """cudaStream_t: an opaque handle that `int()` turns into its address."""

    def __init__(self, handle: int) -> None:
        self._handle = handle

    def __int__(self) -> int:
        return self._handle


def _build_cudart(stub: TrtStub) -> types.ModuleType:
    allowed = CUDART_ALLOWED
    success = _enum("cudart.cudaError_t", {"cudaSuccess": 0}, allowed)
    kinds = _enum(
        "cudart.cudaMemcpyKind",
        {"cudaMemcpyHostToHost": 0, "cudaMemcpyHostToDevice": 1, "cudaMemcpyDeviceToHost": 2},
        allowed,
    )
    ok = success.cudaSuccess

    class cudaDeviceProp(_Strict):
        _api = "cudaDeviceProp"
        _allowed = CUDART_ALLOWED

        def __init__(self) -> None:
            object.__setattr__(self, "name", stub.gpu.encode())
            object.__setattr__(self, "major", stub.cc[0])
            object.__setattr__(self, "minor", stub.cc[1])

    def _stream_id(stream: Any) -> int:
        handle = int(stream)
        if handle not in stub.streams:
            raise AssertionError(f"stream {handle:#x} is not a live stream")
        return handle

    def cudaGetDeviceCount() -> tuple[Any, int]:
        if stub.device_count < 1:
            return _CudaError.cudaErrorNoDevice, 0
        return ok, stub.device_count

    def cudaGetDeviceProperties(device: int) -> tuple[Any, Any]:
        if device >= stub.device_count:
            return _CudaError.cudaErrorInvalidValue, None
        return ok, cudaDeviceProp()

    def cudaMalloc(size: int) -> tuple[Any, int]:
        if not isinstance(size, int) or size < 1:
            return _CudaError.cudaErrorInvalidValue, 0
        buffer = np.zeros(size, dtype=np.uint8)
        pointer = buffer.ctypes.data
        stub.allocations[pointer] = buffer
        stub.calls.append(("cudaMalloc", size))
        return ok, pointer

    def cudaFree(pointer: int) -> tuple[Any]:
        stub.calls.append(("cudaFree", pointer))
        if stub.allocations.pop(int(pointer), None) is None:
            return (_CudaError.cudaErrorInvalidValue,)
        stub.freed.append(int(pointer))
        return (ok,)

    def cudaStreamCreate() -> tuple[Any, _Stream]:
        handle = 0x5000 + len(stub.streams) + len(stub.destroyed_streams) + 1
        stub.streams[handle] = []
        stub.calls.append(("cudaStreamCreate", handle))
        return ok, _Stream(handle)

    def cudaStreamDestroy(stream: Any) -> tuple[Any]:
        handle = _stream_id(stream)
        del stub.streams[handle]
        stub.destroyed_streams.append(handle)
        return (ok,)

    def cudaMemcpyAsync(dst: int, src: int, count: int, kind: Any, stream: Any) -> tuple[Any]:
        handle = _stream_id(stream)
        stub.calls.append(("cudaMemcpyAsync", kind.name, count))
        if not (isinstance(dst, int) and isinstance(src, int)):
            return (_CudaError.cudaErrorInvalidValue,)
        if kind == kinds.cudaMemcpyHostToDevice:
            if stub._region(dst, count) is None or stub._region(src, 1) is not None:
                return (_CudaError.cudaErrorInvalidValue,)
            data = ctypes.string_at(src, count)  # pageable memory: the source is read now
            stub.streams[handle].append(("to_device", dst, data))
        elif kind == kinds.cudaMemcpyDeviceToHost:
            if stub._region(src, count) is None or stub._region(dst, 1) is not None:
                return (_CudaError.cudaErrorInvalidValue,)
            stub.streams[handle].append(("to_host", dst, src, count))
        else:
            return (_CudaError.cudaErrorInvalidValue,)
        return (ok,)

    def cudaStreamSynchronize(stream: Any) -> tuple[Any]:
        handle = _stream_id(stream)
        stub.calls.append(("cudaStreamSynchronize", handle))
        work, stub.streams[handle] = stub.streams[handle], []
        for item in work:
            if item[0] == "to_device":
                stub._write(item[1], np.frombuffer(item[2], dtype=np.uint8))
            elif item[0] == "to_host":
                ctypes.memmove(item[1], item[2], item[3])
            else:
                item[1]()
        return (ok,)

    implementations = {
        "cudaError_t": success,
        "cudaMemcpyKind": kinds,
        "cudaGetDeviceCount": cudaGetDeviceCount,
        "cudaGetDeviceProperties": cudaGetDeviceProperties,
        "cudaMalloc": cudaMalloc,
        "cudaFree": cudaFree,
        "cudaStreamCreate": cudaStreamCreate,
        "cudaStreamDestroy": cudaStreamDestroy,
        "cudaMemcpyAsync": cudaMemcpyAsync,
        "cudaStreamSynchronize": cudaStreamSynchronize,
    }
    module = types.ModuleType("cuda.bindings.runtime")
    for name, implementation in implementations.items():
        if name in allowed["cudart"]:  # a name the real release lacks is missing here too
            setattr(module, name, implementation)
    module._classes = [cudaDeviceProp]
    return module


def install_stub(
    monkeypatch: pytest.MonkeyPatch,
    version: str = "10.3.0.30",
    gpu: str = "Orin",
    cc: tuple[int, int] = (8, 7),
    legacy_cuda: bool = False,
    **options: Any,
) -> TrtStub:
    """Put the fakes in `sys.modules` (undone after the test). `legacy_cuda` installs cudart as
    `cuda.cudart` (cuda-python before 12.6) with no `cuda.bindings`."""
    stub = TrtStub(version=version, gpu=gpu, cc=cc, **options)
    cuda = types.ModuleType("cuda")
    cuda.__path__ = []  # a package
    monkeypatch.setitem(sys.modules, "tensorrt", stub.trt)
    monkeypatch.setitem(sys.modules, "cuda", cuda)
    if legacy_cuda:
        cuda.cudart = stub.cudart
        monkeypatch.setitem(sys.modules, "cuda.cudart", stub.cudart)
        monkeypatch.setitem(sys.modules, "cuda.bindings", None)  # import raises ImportError
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", None)
    else:
        bindings = types.ModuleType("cuda.bindings")
        bindings.__path__ = []
        bindings.runtime = stub.cudart
        cuda.bindings = bindings
        monkeypatch.setitem(sys.modules, "cuda.bindings", bindings)
        monkeypatch.setitem(sys.modules, "cuda.bindings.runtime", stub.cudart)
    return stub


@pytest.fixture(name="trt_stub")
def trt_stub_fixture(monkeypatch: pytest.MonkeyPatch):
    """The `trt_stub` fixture: `trt_stub(version="10.3.0.30", gpu="Orin", cc=(8, 7), **options)`
    installs the fakes and returns the `TrtStub`; call it again to replace them. Use it with
    `from trt_stub import trt_stub_fixture  # noqa: F401` (importing it registers `trt_stub`)."""

    def install(
        version: str = "10.3.0.30", gpu: str = "Orin", cc: tuple[int, int] = (8, 7), **options: Any
    ) -> TrtStub:
        return install_stub(monkeypatch, version=version, gpu=gpu, cc=cc, **options)

    return install

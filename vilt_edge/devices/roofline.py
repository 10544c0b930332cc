"""Roofline floor: what a bundle's graph costs at its input shape, and how fast a device can go.

    from vilt_edge.devices.roofline import count_graph, predict_floor
    cost = count_graph("bundle/model.onnx", image_size=(384, 512), text_length=40)
    print(cost.gops, predict_floor(cost, get_profile("jetson-orin-nano")).floor_ms)

`count_graph` fixes the graph's dynamic inputs (batch, height, width), infers every tensor's shape
with onnxruntime's symbolic shape inference (which knows ONNX Runtime's contrib ops), and counts
multiply-accumulates of the ops that do the arithmetic: MatMul and Gemm and their quantized forms,
Conv and its quantized forms, and attention (ONNX Runtime's MultiHeadAttention / Attention:
Q·K^T and ·V). A product counts as INT8 when it runs on integers (MatMulInteger, QLinearMatMul,
DynamicQuantizeMatMul, ...) or, in an explicit Q/DQ graph, when both of its inputs come from
DequantizeLinear (how TensorRT and ONNX Runtime run it); as FP16 when its input is float16;
as FP32 otherwise. It also adds up the bytes of the weights (initializers) and of every
intermediate activation.

`predict_floor` turns that into a device's latency floor: compute time (MACs x 2 at the device's
dense peak for each precision; FP16 on a device without FP16 arithmetic at its FP32 rate) and
memory time (weights, inputs and outputs read or written once at peak DRAM bandwidth), the
floor being the larger. Activations are not in the memory time: a fused engine keeps many of
them in cache, and a floor must not overstate; `activation_bytes` is reported beside it.
"""

from __future__ import annotations

import functools
import os
import tempfile
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from vilt_edge.errors import BundleError, InputError

INT8_PRODUCTS = {
    "MatMulInteger",
    "QLinearMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
    "QGemm",
    "QLinearConv",
    "ConvInteger",
    "QAttention",
}
MATMULS = {
    "MatMul",
    "FusedMatMul",
    "MatMulInteger",
    "QLinearMatMul",
    "MatMulIntegerToFloat",
    "DynamicQuantizeMatMul",
}
GEMMS = {"Gemm", "QGemm", "FusedGemm"}
CONVS = {"Conv", "QLinearConv", "ConvInteger", "FusedConv"}
ATTENTIONS = {"MultiHeadAttention", "Attention", "QAttention"}
_BYTES = {1: 4, 2: 1, 3: 1, 5: 2, 6: 4, 7: 8, 9: 1, 10: 2, 11: 8, 12: 4, 13: 8, 16: 2}
_FLOAT16 = 10


@dataclass
class GraphCost:
    batch: int
    image_size: tuple[int, int]
    macs: dict[str, int]  # by precision: int8, fp16, fp32
    macs_by_op: dict[str, int]
    weight_bytes: int
    io_bytes: int
    activation_bytes: int
    uncounted: list[str] = field(default_factory=list)  # product nodes whose shapes were unknown

    @property
    def total_macs(self) -> int:
        return sum(self.macs.values())

    @property
    def gops(self) -> float:
        """Operations (2 per multiply-accumulate), in billions."""
        return 2 * self.total_macs / 1e9

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        data["gops"] = round(self.gops, 3)
        return data


@dataclass
class Floor:
    device: str
    compute_ms: float
    memory_ms: float
    floor_ms: float
    bound: str  # compute | memory
    peaks: dict[str, float]  # ops/s used per precision

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@contextmanager
def working_dir(path: str | Path):
    """Run a block in `path` (contextlib.chdir is Python 3.11+; JetPack 6 ships 3.10)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def _fix_inputs(model, batch: int, height: int, width: int, text_length: int | None) -> None:
    for value in model.graph.input:
        dims = value.type.tensor_type.shape.dim
        for index, dim in enumerate(dims):
            if dim.HasField("dim_value"):
                continue
            name = dim.dim_param
            if name == "batch" or index == 0:
                dim.dim_value = batch
            elif name == "height":
                dim.dim_value = height
            elif name == "width":
                dim.dim_value = width
            elif text_length is not None:
                dim.dim_value = text_length
            elif value.name in ("input_ids", "attention_mask"):
                raise InputError(
                    "the graph's text length is dynamic: say how many tokens to count (text_length)"
                )


def _numel(shape: list[int] | None) -> int | None:
    if shape is None or any(not isinstance(d, int) or d < 0 for d in shape):
        return None
    total = 1
    for d in shape:
        total *= d
    return total


def count_graph(
    model: str | Path | Any,
    image_size: tuple[int, int],
    batch: int = 1,
    text_length: int | None = None,
) -> GraphCost:
    """MACs by precision, weight, I/O and activation bytes of `model` (a path or ModelProto) at
    `batch` x 3 x height x width (and `text_length` if the text inputs are dynamic)."""
    import onnx
    from onnxruntime.tools.symbolic_shape_infer import SymbolicShapeInference

    height, width = image_size
    if height < 1 or width < 1 or batch < 1:
        raise InputError(f"image size and batch must be positive; got {height}x{width}, {batch}")
    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model))
        except Exception as error:  # noqa: BLE001 - onnx raises several unrelated types
            raise BundleError(f"{model}: not an ONNX model ({type(error).__name__})") from None
    else:
        model = onnx.ModelProto.FromString(model.SerializeToString())  # do not touch the caller's
    _fix_inputs(model, batch, height, width, text_length)
    try:
        # Where inference stays incomplete, onnxruntime saves a debugging copy of the model
        # into the working directory; keep that out of the user's folder.
        with tempfile.TemporaryDirectory(prefix="vilt-edge-shapes-") as temp, working_dir(temp):
            inferred = SymbolicShapeInference.infer_shapes(model, auto_merge=True)
    except Exception as error:  # noqa: BLE001 - inference failures share no base class
        raise BundleError(
            f"cannot infer the graph's shapes at {height}x{width}: {type(error).__name__}"
        ) from None

    shapes: dict[str, list[int] | None] = {}
    types: dict[str, int] = {}
    for value in (
        list(inferred.graph.input) + list(inferred.graph.value_info) + list(inferred.graph.output)
    ):
        tensor = value.type.tensor_type
        types[value.name] = tensor.elem_type
        dims = tensor.shape.dim
        shapes[value.name] = [d.dim_value if d.HasField("dim_value") else -1 for d in dims]
    weight_bytes = 0
    for init in inferred.graph.initializer:
        shapes[init.name] = list(init.dims)
        types[init.name] = init.data_type
        weight_bytes += (_numel(list(init.dims)) or 0) * _BYTES.get(init.data_type, 4)

    produced_by = {out: node for node in inferred.graph.node for out in node.output}
    initializers = {init.name for init in inferred.graph.initializer}

    def dequantized(name: str) -> bool:
        node = produced_by.get(name)
        return node is not None and node.op_type == "DequantizeLinear"

    macs = {"int8": 0, "fp16": 0, "fp32": 0}
    by_op: dict[str, int] = {}
    uncounted: list[str] = []
    for node in _with_branches(inferred.graph):
        op = node.op_type
        if op not in MATMULS | GEMMS | CONVS | ATTENTIONS:
            continue
        count = _macs(node, shapes)
        if count is None:
            uncounted.append(node.name or op)
            continue
        if op in INT8_PRODUCTS or (
            len(node.input) > 1 and dequantized(node.input[0]) and dequantized(node.input[1])
        ):
            precision = "int8"
        elif types.get(node.input[0]) == _FLOAT16:
            precision = "fp16"
        else:
            precision = "fp32"
        macs[precision] += count
        by_op[op] = by_op.get(op, 0) + count

    graph_io = [v.name for v in list(inferred.graph.input) + list(inferred.graph.output)]
    io_bytes = sum((_numel(shapes.get(n)) or 0) * _BYTES.get(types.get(n, 1), 4) for n in graph_io)
    activation_bytes = 0
    for value in inferred.graph.value_info:
        if value.name in initializers:
            continue
        numel = _numel(shapes.get(value.name))
        if numel:
            activation_bytes += numel * _BYTES.get(types.get(value.name, 1), 4)
    return GraphCost(
        batch=batch,
        image_size=(height, width),
        macs=macs,
        macs_by_op=dict(sorted(by_op.items())),
        weight_bytes=weight_bytes,
        io_bytes=io_bytes,
        activation_bytes=activation_bytes,
        uncounted=uncounted,
    )


def _with_branches(graph):
    """The graph's nodes, with each `If` replaced by its else-branch's nodes (the CPU presets
    branch attention on an unpadded mask: both branches do the same work), whose outputs are
    renamed to the `If`'s so that the shapes inferred for the outer graph apply."""
    import onnx

    for node in graph.node:
        if node.op_type != "If":
            yield node
            continue
        branch = _attr(node, "else_branch")
        renamed = dict(zip([value.name for value in branch.output], node.output, strict=False))
        for inner in branch.node:
            copy = onnx.NodeProto()
            copy.CopyFrom(inner)
            del copy.output[:]
            copy.output.extend(renamed.get(name, name) for name in inner.output)
            yield copy


def _attr(node, name: str, default: Any = None) -> Any:
    for attribute in node.attribute:
        if attribute.name == name:
            import onnx

            return onnx.helper.get_attribute_value(attribute)
    return default


def _macs(node, shapes: dict[str, list[int] | None]) -> int | None:
    op = node.op_type
    out = _numel(shapes.get(node.output[0]))
    if op in MATMULS:
        a = shapes.get(node.input[0])
        if out is None or not a:
            return None
        return out * a[-1]
    if op in GEMMS:
        a = shapes.get(node.input[0])
        if out is None or not a or len(a) != 2:
            return None
        k = a[0] if _attr(node, "transA", 0) else a[1]
        return out * k
    if op in CONVS:
        weight_index = 3 if op == "QLinearConv" else 1
        w = shapes.get(node.input[weight_index])
        if out is None or not w or _numel(w) is None:
            return None
        return out * (_numel(w[1:]) or 0)
    # Attention: Q·K^T and ·V over every head: 2 x batch x queries x keys x hidden.
    q = shapes.get(node.input[0])
    if q is None or len(q) != 3 or _numel(q) is None:
        return None
    batch, queries, hidden_in = q
    if op == "MultiHeadAttention":
        k = shapes.get(node.input[1]) if len(node.input) > 1 else None
        keys = k[1] if k and len(k) >= 3 else queries
        hidden = q[2]
        return 2 * batch * queries * keys * hidden
    # Attention / QAttention: packed input projection [hidden_in, 3 x hidden] plus the core.
    w = shapes.get(node.input[1])
    if not w or len(w) != 2:
        return None
    hidden = w[1] // 3
    return batch * queries * hidden_in * w[1] + 2 * batch * queries * queries * hidden


def predict_floor(cost: GraphCost, profile, peaks: dict[str, float] | None = None) -> Floor:
    """The device's latency floor for `cost`. `peaks` (ops/s per precision) overrides the
    profile's datasheet peaks, e.g. with a measured GEMM ceiling."""
    used = {p: profile.peak_ops_per_s(p) for p in ("int8", "fp16", "fp32")}
    used.update(peaks or {})
    compute = sum(2 * cost.macs[p] / used[p] for p in cost.macs if cost.macs[p])
    memory = (cost.weight_bytes + cost.io_bytes) / (profile.memory_bandwidth_gbs * 1e9)
    floor = max(compute, memory)
    return Floor(
        device=profile.name,
        compute_ms=compute * 1e3,
        memory_ms=memory * 1e3,
        floor_ms=floor * 1e3,
        bound="compute" if compute >= memory else "memory",
        peaks=used,
    )


def measure_ceilings(
    threads: int | None = None,
    size: int = 1024,
    runs: int = 25,
    sources: dict[str, str] | None = None,
) -> dict:
    """This machine's GEMM ceilings (ops/s): the best that any installed CPU runtime reaches on
    a size^3 product, so that the floor means the hardware, not one runtime. ONNX Runtime's
    INT8 MatMulInteger and FP32 MatMul always; with OpenVINO installed also its INT8 (a Q/DQ
    MatMul, which it runs on its own INT8 kernels: VNNI or AMX), FP32 and, on CPUs with
    AMX-BF16 or AVX512-BF16, BF16 products. Best of `runs` after one warm-up (25 spread over
    ~0.3 s, so that a short slow spell of a shared machine does not lower a ceiling).
    `sources`, when given, is filled with the runtime behind each ceiling."""
    ceilings = _onnxruntime_ceilings(threads, size, runs)
    found = {precision: "onnxruntime" for precision in ceilings}
    for precision, value in _openvino_ceilings(threads, size, runs).items():
        if value > ceilings.get(precision, 0.0):
            ceilings[precision] = value
            found[precision] = "openvino"
    ceilings["fp16"] = ceilings["fp32"]  # no FP16 arithmetic in these CPU runtimes
    found["fp16"] = found["fp32"]
    ceilings.setdefault("bf16", ceilings["fp32"])  # no BF16 here: it runs at the FP32 rate
    found.setdefault("bf16", found["fp32"])
    if sources is not None:
        sources.update(found)
    return ceilings


def _best_seconds(call, runs: int) -> float:
    import time

    call()
    best = float("inf")
    for _ in range(runs):
        started = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - started)
    return best


def _gemm_model(size: int, int8: bool, qdq: bool = False):
    """A one-product ONNX model: float MatMul, INT8 MatMulInteger, or (qdq) a float MatMul
    between Q/DQ'd int8 operands, the form OpenVINO runs on its INT8 kernels."""
    import numpy as np
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    nodes, inits = [], []
    if qdq:
        w = rng.integers(-127, 127, (size, size), dtype=np.int8)
        inits = [numpy_helper.from_array(w, "w"),
                 numpy_helper.from_array(np.array(0.01, np.float32), "s"),
                 numpy_helper.from_array(np.array(0, np.int8), "z")]  # fmt: skip
        nodes = [
            helper.make_node("QuantizeLinear", ["a", "s", "z"], ["aq"]),
            helper.make_node("DequantizeLinear", ["aq", "s", "z"], ["ad"]),
            helper.make_node("DequantizeLinear", ["w", "s", "z"], ["wd"]),
            helper.make_node("MatMul", ["ad", "wd"], ["y"]),
        ]
        a_type, out_type = TensorProto.FLOAT, TensorProto.FLOAT
    elif int8:
        w = rng.integers(-127, 127, (size, size), dtype=np.int8)
        inits = [numpy_helper.from_array(w, "w")]
        nodes = [helper.make_node("MatMulInteger", ["a", "w"], ["y"])]
        a_type, out_type = TensorProto.UINT8, TensorProto.INT32
    else:
        inits = [numpy_helper.from_array(rng.standard_normal((size, size), np.float32), "w")]
        nodes = [helper.make_node("MatMul", ["a", "w"], ["y"])]
        a_type, out_type = TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph(
        nodes,
        "gemm",
        [helper.make_tensor_value_info("a", a_type, [size, size])],
        [helper.make_tensor_value_info("y", out_type, [size, size])],
        inits,
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])


def _onnxruntime_ceilings(threads: int | None, size: int, runs: int) -> dict[str, float]:
    import numpy as np
    import onnxruntime

    rng = np.random.default_rng(0)
    ceilings = {}
    for precision in ("int8", "fp32"):
        model = _gemm_model(size, int8=precision == "int8")
        options = onnxruntime.SessionOptions()
        options.log_severity_level = 3
        if threads:
            options.intra_op_num_threads = threads
        session = onnxruntime.InferenceSession(
            model.SerializeToString(), options, providers=["CPUExecutionProvider"]
        )
        a = (
            rng.integers(0, 255, (size, size), dtype=np.uint8)
            if precision == "int8"
            else rng.standard_normal((size, size), np.float32)
        )
        call = functools.partial(session.run, None, {"a": a})
        ceilings[precision] = 2 * size**3 / _best_seconds(call, runs)
    return ceilings


def _openvino_ceilings(threads: int | None, size: int, runs: int) -> dict[str, float]:
    """{} where OpenVINO is not installed (it is the `openvino` extra)."""
    try:
        import openvino
    except ImportError:
        return {}
    import numpy as np

    from vilt_edge.devices.host import usable_cpu_flags
    from vilt_edge.runtimes.openvino import BF16_FLAGS

    core = openvino.Core()
    a = np.random.default_rng(0).standard_normal((size, size), np.float32)
    variants = [("int8", True, "f32"), ("fp32", False, "f32")]
    if set(BF16_FLAGS) & usable_cpu_flags():
        variants.append(("bf16", False, "bf16"))
    ceilings = {}
    for precision, qdq, hint in variants:
        model = core.read_model(_gemm_model(size, int8=False, qdq=qdq).SerializeToString(), b"")
        config: dict = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": hint}
        if threads:
            config["INFERENCE_NUM_THREADS"] = threads
        request = core.compile_model(model, "CPU", config).create_infer_request()
        call = functools.partial(request.infer, {"a": a})
        ceilings[precision] = 2 * size**3 / _best_seconds(call, runs)
    return ceilings


def host_floor(model_path, image_size: tuple[int, int], threads: int | None = None,
               text_length: int | None = None, images: int = 1,
               precision: str = "fp32") -> dict | None:  # fmt: skip
    """The compute floor of an ONNX model on this machine at `image_size`: its operations at
    the GEMM ceilings measured here (`measure_ceilings`), for `images` images per example (an
    NLVR2 encoder runs once per image of the pair). None where it cannot be counted (onnx not
    installed; a model file that is not ONNX, e.g. a TensorRT engine or ORT format)."""
    if not str(model_path).endswith(".onnx"):
        return None
    try:
        import onnx  # noqa: F401 - the counting needs it; the deploy runtime may lack it
    except ImportError:
        return None
    try:
        cost = count_graph(model_path, image_size, batch=images, text_length=text_length)
    except BundleError:  # e.g. ops shape inference does not know; the floor is optional
        return None
    sources: dict[str, str] = {}
    ceilings = measure_ceilings(threads, sources=sources)
    if precision == "bf16":  # a BF16 bundle's graph is FP32, computed at BF16
        ceilings["fp32"] = ceilings["bf16"]
    compute = sum(2 * cost.macs[p] / ceilings[p] for p in cost.macs if cost.macs[p])
    return {
        "floor_ms": round(compute * 1e3, 4),
        "gops": round(cost.gops, 4),
        "image_size": f"{image_size[0]}x{image_size[1]}",
        "ceilings_tops": {p: round(v / 1e12, 4) for p, v in ceilings.items() if p != "fp16"},
        "ceiling_runtimes": {p: v for p, v in sources.items() if p != "fp16"},
        "basis": "compute: the model's operations at the best GEMM ceilings any installed "
        "runtime reaches on this machine",
    }

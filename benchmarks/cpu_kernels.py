"""What ONNX Runtime's CPU kernels cost at ViLT-B/32's shapes: the floor under any INT8 graph.

    python benchmarks/cpu_kernels.py [--threads 2] [--tokens 233] [--runs 200]

Each row times one ONNX Runtime kernel alone (one-node graph, batch 1, `--threads` intra-op
threads, median of `--runs` calls after 10 warm-up calls) at the shape it has inside ViLT-B/32 at
384x512 with 40 text tokens (233 tokens: 40 text + 1 image [CLS] + 12x16 patches). The table
then adds them up per layer and for 12 layers, which is how fast an INT8 ViLT-B/32 graph built
from these kernels can possibly be: the integer GEMMs alone (MatMulInteger, int32 out) and the
GEMMs plus the float work a layer cannot avoid (attention core, GELU, two LayerNorms, residual
adds, quantizing activations). It also measures the INT8 GEMM ceiling (MatMulInteger,
2048x2048x2048) and the alternatives the quantizer chooses between (ConvInteger against float
Conv for the patch projection; ORT's SkipLayerNormalization against Add + LayerNormalization).
Needs onnx and onnxruntime only; nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

HIDDEN, MLP, HEADS, LAYERS = 768, 3072, 12, 12
F32, U8, I8, I32 = TensorProto.FLOAT, TensorProto.UINT8, TensorProto.INT8, TensorProto.INT32


def time_node(node, inputs, output, initializers, threads, runs) -> float:
    """Median ms of one node; `inputs` is [(name, array)], `output` (name, elem type, shape)."""
    graph = helper.make_graph(
        [node],
        "g",
        [
            helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(a.dtype), a.shape)
            for name, a in inputs
        ],
        [helper.make_tensor_value_info(*output)],
        [numpy_helper.from_array(a, name) for name, a in initializers],
    )
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.log_severity_level = 3
    session = ort.InferenceSession(
        model.SerializeToString(), options, providers=["CPUExecutionProvider"]
    )
    feeds = dict(inputs)
    for _ in range(10):
        session.run(None, feeds)
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        session.run(None, feeds)
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=233)
    parser.add_argument("--runs", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    t, th, runs = args.tokens, args.threads, args.runs

    def matmul_integer(m, k, n, r=runs):
        a = rng.integers(0, 255, (1, m, k), dtype=np.uint8)
        w = rng.integers(-127, 127, (k, n), dtype=np.int8)
        node = helper.make_node("MatMulInteger", ["a", "w"], ["y"])
        return time_node(node, [("a", a)], ("y", I32, [1, m, n]), [("w", w)], th, r)

    def unary(op, shape, domain=""):
        x = rng.standard_normal(shape, dtype=np.float32)
        node = helper.make_node(op, ["x"], ["y"], domain=domain)
        return time_node(node, [("x", x)], ("y", F32, list(shape)), [], th, runs)

    x = rng.standard_normal((1, t, HIDDEN), dtype=np.float32)
    gamma, beta = np.ones(HIDDEN, np.float32), np.zeros(HIDDEN, np.float32)
    rows: list[tuple[str, float, int]] = []  # (kernel, ms per call, calls per layer)

    ceiling_ms = matmul_integer(2048, 2048, 2048, r=max(10, runs // 10))
    ceiling = 2 * 2048**3 / ceiling_ms / 1e9  # TOP/s
    gemms = [
        ("MatMulInteger Q/K/V/output projections", (t, HIDDEN, HIDDEN), 4),
        ("MatMulInteger MLP up", (t, HIDDEN, MLP), 1),
        ("MatMulInteger MLP down", (t, MLP, HIDDEN), 1),
    ]
    gemm_layer = 0.0
    gemm_ops = 0
    for name, (m, k, n), calls in gemms:
        ms = matmul_integer(m, k, n)
        rows.append((name, ms, calls))
        gemm_layer += ms * calls
        gemm_ops += 2 * m * k * n * calls

    bias = rng.standard_normal((1, 1, t, t), dtype=np.float32) * 0
    mha = helper.make_node(
        "MultiHeadAttention", ["q", "k", "v", "", "", "bias"], ["y"],
        domain="com.microsoft", num_heads=HEADS,
    )  # fmt: skip
    attention = time_node(
        mha,
        [("q", x), ("k", x.copy()), ("v", x.copy()), ("bias", bias)],
        ("y", F32, [1, t, HIDDEN]),
        [],
        th,
        runs,
    )
    layernorm = time_node(
        helper.make_node("LayerNormalization", ["x", "g", "b"], ["y"], axis=-1),
        [("x", x)], ("y", F32, [1, t, HIDDEN]), [("g", gamma), ("b", beta)], th, runs,
    )  # fmt: skip
    add = time_node(
        helper.make_node("Add", ["x", "z"], ["y"]),
        [("x", x), ("z", x.copy())], ("y", F32, [1, t, HIDDEN]), [], th, runs,
    )  # fmt: skip
    gelu = unary("Gelu", (1, t, MLP), "com.microsoft")
    quantize_hidden = time_node(
        helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"]),
        [("x", x)], ("y", U8, [1, t, HIDDEN]), [], th, runs,
    )  # fmt: skip
    x_mlp = rng.standard_normal((1, t, MLP), dtype=np.float32)
    quantize_mlp = time_node(
        helper.make_node("DynamicQuantizeLinear", ["x"], ["y", "s", "z"]),
        [("x", x_mlp)], ("y", U8, [1, t, MLP]), [], th, runs,
    )  # fmt: skip
    floats = [
        ("MultiHeadAttention (float; Q·K^T, softmax, ·V)", attention, 1),
        ("Gelu", gelu, 1),
        ("LayerNormalization", layernorm, 2),
        ("Add (residual)", add, 2),
        ("DynamicQuantizeLinear, hidden-sized input", quantize_hidden, 3),
        ("DynamicQuantizeLinear, MLP-sized input", quantize_mlp, 1),
    ]
    rows += floats
    float_layer = sum(ms * calls for _, ms, calls in floats)

    grid = (t - 41) if t > 41 else 192
    pixels = rng.standard_normal((1, 3, 384, 512), dtype=np.float32)
    conv_w = rng.standard_normal((HIDDEN, 3, 32, 32), dtype=np.float32) * 0.02
    conv = time_node(
        helper.make_node("Conv", ["x", "w"], ["y"], strides=[32, 32]),
        [("x", pixels)], ("y", F32, [1, HIDDEN, 12, 16]), [("w", conv_w)], th, runs,
    )  # fmt: skip
    conv_integer = time_node(
        helper.make_node("ConvInteger", ["x", "w"], ["y"], strides=[32, 32]),
        [("x", rng.integers(0, 255, (1, 3, 384, 512), dtype=np.uint8))],
        ("y", I32, [1, HIDDEN, 12, 16]),
        [("w", rng.integers(-127, 127, (HIDDEN, 3, 32, 32), dtype=np.int8))],
        th,
        runs,
    )
    skip_layernorm = time_node(
        helper.make_node(
            "SkipLayerNormalization", ["x", "z", "g", "b"], ["y"], domain="com.microsoft"
        ),
        [("x", x), ("z", x.copy())], ("y", F32, [1, t, HIDDEN]), [("g", gamma), ("b", beta)],
        th, runs,
    )  # fmt: skip

    print(f"ONNX Runtime {ort.__version__}, CPU EP, {th} threads, {t} tokens ({grid} patches)\n")
    print(f"INT8 GEMM ceiling (MatMulInteger 2048^3): {ceiling_ms:.2f} ms = {ceiling:.2f} TOP/s\n")
    print(f"| {'kernel':<50} | {'ms/call':>8} | {'calls/layer':>11} | {'ms/layer':>8} |")
    print(f"|{'-' * 52}|{'-' * 10}|{'-' * 13}|{'-' * 10}|")
    for name, ms, calls in rows:
        print(f"| {name:<50} | {ms:8.3f} | {calls:11d} | {ms * calls:8.3f} |")
    total_ops = gemm_ops * LAYERS
    print(
        f"\nINT8 GEMMs of {LAYERS} layers: {total_ops / 1e9:.1f} GOP; "
        f"at the ceiling {total_ops / ceiling / 1e9:.1f} ms; "
        f"as measured at their shapes {gemm_layer * LAYERS:.1f} ms"
    )
    both = (gemm_layer + float_layer) * LAYERS
    print(
        f"GEMMs + unavoidable float work, {LAYERS} layers: {both:.1f}"
        f" ms (float work {float_layer * LAYERS:.1f} ms, of it attention {attention * LAYERS:.1f})"
    )
    print(f"patch projection: float Conv {conv:.2f} ms, ConvInteger {conv_integer:.2f} ms")
    print(
        f"residual + LayerNorm: Add + LayerNormalization {add + layernorm:.3f} ms, "
        f"SkipLayerNormalization {skip_layernorm:.3f} ms"
    )


if __name__ == "__main__":
    main()

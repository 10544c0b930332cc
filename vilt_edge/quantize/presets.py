"""Quantization presets per target family: how INT8 is laid out for the runtime that will run it.

CPU (ONNX Runtime): Q/DQ format, activations uint8 with a zero point and weights int8 symmetric
per output channel (U8S8), which ONNX Runtime's x86 kernels run with VNNI; on x86 without VNNI
weights use 7 bits (`reduce_range`) so the 16-bit intermediate sums of AVX2's vpmaddubsw cannot
saturate; on Arm activations are int8 symmetric too (S8S8), which the Arm kernels prefer. All of
this follows the guidance in `onnxruntime.quantization.quantize_static`'s documentation.

TensorRT (Jetson, CUDA GPUs): explicit quantization as TensorRT's documentation requires: int8
only, symmetric (zero point 0) for activations and weights, weights per channel along the output
axis (axis 1 of a MatMul's [in, out] weight, axis 0 of a Conv's), and Q/DQ only in front of the
ops TensorRT runs in INT8 (MatMul, Gemm, Conv); the rest of the graph stays float, and TensorRT
fuses the Q/DQ pairs into its INT8 kernels. Biases stay float (TensorRT quantizes them itself).

The CPU presets keep onnxruntime's full Q/DQ pattern (DQ -> MatMul -> Q), which its graph
optimizer fuses into QLinearMatMul / QGemm; rewiring float readers around it (as the TensorRT
preset does) was measured to stop that fusion, leaving float MatMuls behind per-call weight
dequantization (13.8 ms instead of 3.6 ms FP32 on the default model).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Preset:
    name: str
    family: str  # cpu | tensorrt
    activation_type: str  # QUInt8 | QInt8
    weight_type: str  # QInt8
    activation_symmetric: bool
    reduce_range: bool
    op_types: tuple[str, ...] | None  # None: every op type ONNX Runtime can quantize
    dynamic_ok: bool
    extra_options: dict[str, Any] = field(default_factory=dict)
    # Q/DQ only on the inputs of the INT8 ops; every other reader sees the float tensor.
    inputs_only: bool = False
    # GELU and attention fused into ONNX Runtime's CPU contrib ops before quantizing (only
    # for graphs that ONNX Runtime's CPU provider runs).
    onnxruntime_fusions: bool = False
    # A layout for OpenVINO's INT8 kernels (standard Q/DQ only): bundles of it run on OpenVINO,
    # computing their float parts in this precision ("f32" | "bf16"); "" for ONNX Runtime.
    openvino_precision: str = ""
    # MatMuls of two activations (attention's Q·K^T and P·V) stay float, so OpenVINO can fuse
    # them into its float attention kernel; only MatMuls with a weight are INT8.
    float_attention: bool = False

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["op_types"] = list(self.op_types) if self.op_types else None
        return data


_TENSORRT = dict(
    family="tensorrt",
    activation_type="QInt8",
    weight_type="QInt8",
    activation_symmetric=True,
    reduce_range=False,
    op_types=("MatMul", "Gemm", "Conv"),
    dynamic_ok=False,
    extra_options={
        "ActivationSymmetric": True,
        "WeightSymmetric": True,
        "QuantizeBias": False,
        # A MatMul's weight is [in, out]: its output channels are axis 1.
        "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        # No Q/DQ on the outputs: the bias Add, GELU, residual and LayerNorm run in float.
        "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv"],
    },
    inputs_only=True,
)

_CPU = dict(
    family="cpu",
    weight_type="QInt8",
    # Gather: the word-embedding table is stored in int8 too (ViLT-B/32's is 94 MB in FP32, a
    # fifth of the model); ONNX Runtime gathers the int8 rows and dequantizes only those.
    op_types=("MatMul", "Gemm", "Conv", "Gather"),
    dynamic_ok=True,
    onnxruntime_fusions=True,
)

# Static Q/DQ on x86: no Q/DQ pair on a MatMul's output. ONNX Runtime then fuses each
# DQ -> MatMul into MatMulIntegerToFloat (int8 product, float out) instead of QLinearMatMul, whose
# uint8 output every reader (bias Add, GELU, residual) dequantizes again: one requantization less
# per linear layer. ViLT-B/32, side by side: 68.5 -> 64.4 ms (NOTES-cpu-speed.md, step 16).
_X86_STATIC = {
    "WeightSymmetric": True,
    "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
    "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm"],
}

PRESETS: dict[str, Preset] = {
    "x86-avx512-vnni": Preset(
        name="x86-avx512-vnni",
        activation_type="QUInt8",
        activation_symmetric=False,
        reduce_range=False,
        extra_options=dict(_X86_STATIC),
        **_CPU,
    ),
    "x86-avx2": Preset(
        name="x86-avx2",
        activation_type="QUInt8",
        activation_symmetric=False,
        reduce_range=True,
        extra_options=dict(_X86_STATIC),
        **_CPU,
    ),
    "arm64": Preset(
        name="arm64",
        activation_type="QInt8",
        activation_symmetric=True,
        reduce_range=False,
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QDQOpTypePerChannelSupportToAxis": {"MatMul": 1},
        },
        **_CPU,
    ),
    "tensorrt": Preset(name="tensorrt", **_TENSORRT),
    # AMX hosts run INT8 through OpenVINO (ONNX Runtime's OpenVINO execution provider), whose
    # INT8 kernels want TensorRT's layout: symmetric int8 on the MatMul inputs only, weights per
    # output channel, the rest float (OpenVINO then runs it in BF16 on AMX). On an AMX Xeon it
    # ran ViLT-B/32 in 24.3 ms against 32.2 ms for the asymmetric x86 layout in the same
    # runtime (issue 18's table). Calibrated (static) only: dynamic INT8's ops are ONNX Runtime
    # contrib ops that OpenVINO does not run.
    "x86-amx": Preset(
        name="x86-amx",
        **{**_TENSORRT, "family": "cpu", "op_types": ("MatMul", "Gemm")},
        openvino_precision="bf16",
    ),
    # x86-amx with attention's two activation products in float, for an AMX host to measure
    # against x86-amx (benchmarks/cpu_openvino_ep.py runs both): on the first AMX host, one noisy
    # interleaved run had it 1.16x NNCF's INT8 against 1.06x for x86-amx; on a Zen 4 EPYC it
    # gained nothing on OpenVINO (32.0-32.3 against 31.1-32.6 ms). A device profile may name it.
    "x86-amx-float-attention": Preset(
        name="x86-amx-float-attention",
        **{**_TENSORRT, "family": "cpu", "op_types": ("MatMul", "Gemm")},
        openvino_precision="bf16",
        float_attention=True,
    ),
    # AVX-512 VNNI hosts with OpenVINO installed: the same symmetric MatMul-input layout, run by
    # OpenVINO directly (its ONNX Runtime provider lists no device on AMD CPUs), float parts in
    # FP32 (BF16 measured no faster there), and the embedding tables stored in int8 (Gather
    # reads them through a DequantizeLinear, which OpenVINO runs as a compressed Gather): same
    # speed, ViLT-B/32's file 118 MB instead of 189 MB, peak RSS 366 MB instead of 434 MB. On a
    # 2-core Zen 4 EPYC, ViLT-B/32 side by side: 31.7 ms against 35.1 ms for the x86-avx512-vnni
    # layout in ONNX Runtime (README, "ViLT-B/32 on this CPU"). Static only, like x86-amx.
    "x86-openvino": Preset(
        name="x86-openvino",
        **{
            **_TENSORRT,
            "family": "cpu",
            "op_types": ("MatMul", "Gemm", "Gather"),
            "extra_options": {
                **_TENSORRT["extra_options"],
                "OpTypesToExcludeOutputQuantization": ["MatMul", "Gemm", "Conv", "Gather"],
            },
        },
        openvino_precision="f32",
    ),
}

"""Will TensorRT build this? A check that runs anywhere (no TensorRT, no GPU), before every build.

    from vilt_edge.compile.readiness import check_model, first_failure
    checks = check_model(onnx_model, profile, "10.3", shapes, workspace_bytes)

Four checks, each against data shipped in `vilt_edge/devices/`:

- operators: every node is a default-domain ONNX operator that the target's TensorRT version
  supports, per the onnx-tensorrt operator table for that version (`tensorrt_ops/*.json`, with
  its source). ONNX Runtime's contrib ops (com.microsoft: the CPU preset's fused attention and
  GELU, QLinear ops) are not TensorRT operators.
- Q/DQ: TensorRT's explicit-quantization rules: scales are constant initializers and positive;
  zero points are constant and 0 (symmetric) and int8; activations are quantized per tensor;
  per-channel weights are quantized along the output-channel axis (axis 0 of a Conv weight and
  of a transposed Gemm weight, the last axis of a MatMul weight).
- shapes: the engine's optimization profile (batch and image sizes) is ordered (min <= opt <=
  max), has the text length the bundle was exported with, and image sides that are multiples
  of the patch size.
- memory: weights plus the builder workspace fit the device's memory, and the workspace is
  within the profile's share of it (memory on a Jetson is shared with the OS and the app).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np

from vilt_edge.compile.tensorrt_versions import version_tuple
from vilt_edge.errors import InputError

TABLE_DIR = Path(__file__).resolve().parents[1] / "devices" / "tensorrt_ops"
ONNX_DOMAINS = ("", "ai.onnx")
QDQ = ("QuantizeLinear", "DequantizeLinear")


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail}


def available_tables() -> list[str]:
    return sorted(
        (p.stem.removeprefix("tensorrt-") for p in TABLE_DIR.glob("tensorrt-*.json")),
        key=version_tuple,
    )


@cache
def operator_table(version: str) -> dict[str, Any]:
    """The onnx-tensorrt operator table for TensorRT `version` ("10.3", or "10.3.0.26": only
    major.minor counts). Where none ships for that minor release, the newest earlier table of
    the same major stands for it (its "table" key says which): a minor release adds operators,
    so the earlier table can only under-state what the version runs."""
    key = ".".join(version.split(".")[:2])
    path = TABLE_DIR / f"tensorrt-{key}.json"
    if path.is_file():
        return {**json.loads(path.read_text(encoding="utf-8")), "table": key}
    wanted = version_tuple(key)
    earlier = [v for v in available_tables() if version_tuple(v)[:1] == wanted[:1]]
    earlier = [v for v in earlier if version_tuple(v) < wanted]
    if not wanted or not earlier:
        raise InputError(
            f"no operator table for TensorRT {version} (tables: {', '.join(available_tables())})"
        )
    stand_in = earlier[-1]
    table = json.loads((TABLE_DIR / f"tensorrt-{stand_in}.json").read_text(encoding="utf-8"))
    return {**table, "table": stand_in}


def _initializers(model) -> dict[str, np.ndarray]:
    from onnx import numpy_helper

    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def _all_nodes(graph):
    """Every node of the graph and of its subgraphs (If branches, loop bodies), depth first."""
    from onnx import AttributeProto

    for node in graph.node:
        yield node
        for attribute in node.attribute:
            if attribute.type == AttributeProto.GRAPH:
                yield from _all_nodes(attribute.g)
            elif attribute.type == AttributeProto.GRAPHS:
                for subgraph in attribute.graphs:
                    yield from _all_nodes(subgraph)


def _check_operators(model, version: str) -> Check:
    found = operator_table(version)
    table = found["operators"]
    if found["table"] != ".".join(version.split(".")[:2]):
        version = f"{version} (by the {found['table']} table: none ships for {version})"
    unsupported: dict[str, int] = {}
    for node in _all_nodes(model.graph):
        if node.domain not in ONNX_DOMAINS:
            key = f"{node.op_type} ({node.domain})"
        elif node.op_type not in table or not table[node.op_type]["supported"]:
            key = node.op_type
        else:
            continue
        unsupported[key] = unsupported.get(key, 0) + 1
    if unsupported:
        listed = ", ".join(f"{op} x{count}" for op, count in sorted(unsupported.items()))
        return Check("operators", False, f"not supported by TensorRT {version}: {listed}")
    ops = len({n.op_type for n in _all_nodes(model.graph)})
    return Check("operators", True, f"{ops} operator types, all supported by TensorRT {version}")


def _check_qdq(model) -> Check:
    weights = _initializers(model)
    consumers: dict[str, list] = {}
    for node in model.graph.node:
        for name in node.input:
            consumers.setdefault(name, []).append(node)
    count = 0
    for node in model.graph.node:
        if node.op_type not in QDQ:
            continue
        count += 1
        label = node.name or node.output[0]
        scale = weights.get(node.input[1])
        if scale is None:
            return Check("qdq", False, f"{label}: scale is computed at run time (TensorRT needs "
                         "a constant)")  # fmt: skip
        if np.any(scale <= 0):
            return Check("qdq", False, f"{label}: scale must be positive")
        zero_point = weights.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        if len(node.input) > 2 and node.input[2] and zero_point is None:
            return Check("qdq", False, f"{label}: zero point is not a constant")
        if zero_point is not None:
            if zero_point.dtype != np.int8:
                return Check("qdq", False, f"{label}: zero point is {zero_point.dtype}; TensorRT "
                             "quantizes to int8 (quantize with a TensorRT --target)")  # fmt: skip
            if np.any(zero_point != 0):
                return Check("qdq", False, f"{label}: asymmetric quantization (zero point not 0); "
                             "TensorRT needs symmetric Q/DQ")  # fmt: skip
        if scale.size > 1:
            source = node.input[0]
            if source not in weights:
                return Check("qdq", False, f"{label}: activation quantized per channel; TensorRT "
                             "quantizes activations per tensor")  # fmt: skip
            axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
            rank = weights[source].ndim
            axis = axis % rank
            for reader in consumers.get(node.output[0], []):
                trans_b = next((a.i for a in reader.attribute if a.name == "transB"), 0)
                # Conv [out, in, kh, kw]; MatMul [..., in, out]; Gemm [in, out], or [out, in]
                # with transB.
                wanted = 0 if reader.op_type == "Conv" or trans_b else rank - 1
                if reader.op_type in ("Conv", "MatMul", "Gemm") and axis != wanted:
                    return Check("qdq", False, f"{label}: per-channel axis {axis}, but "
                                 f"{reader.op_type} weights need axis {wanted} (output "
                                 "channels)")  # fmt: skip
    if count == 0:
        return Check("qdq", True, "no Q/DQ (a float engine)")
    return Check("qdq", True, f"{count} Q/DQ nodes: constant, symmetric int8, valid axes")


def _check_shapes(shapes: dict[str, tuple], text_length: int, patch: int) -> Check:
    for name, (low, opt, high) in shapes.items():
        if not (len(low) == len(opt) == len(high)):
            return Check("shapes", False, f"{name}: min/opt/max ranks differ")
        if any(not (a <= b <= c) for a, b, c in zip(low, opt, high, strict=True)):
            return Check("shapes", False, f"{name}: profile not ordered min <= opt <= max")
        if min(low) < 1:
            return Check("shapes", False, f"{name}: dimensions must be at least 1")
        if name in ("input_ids", "attention_mask") and not low[1] == high[1] == text_length:
            return Check("shapes", False, f"{name}: the bundle takes {text_length} tokens")
        if name == "pixel_values":
            for dims in (low, opt, high):
                if dims[-1] % patch or dims[-2] % patch:
                    return Check("shapes", False, f"pixel_values {dims}: image sides must be "
                                 f"multiples of the patch size {patch}")  # fmt: skip
    pixels = shapes.get("pixel_values")
    where = f"; images {pixels[0][-2]}x{pixels[0][-1]} to {pixels[2][-2]}x{pixels[2][-1]}"
    batch = pixels[2][0] if pixels else 1
    return Check("shapes", True, f"batch 1 to {batch}{where if pixels else ''}")


def _check_memory(model, profile, workspace_bytes: int) -> Check:
    memory = profile.memory_gb * 1e9
    weights = sum(
        int(np.prod(init.dims)) * _itemsize(init.data_type) for init in model.graph.initializer
    )
    share = profile.max_workspace_fraction
    if workspace_bytes > memory:
        return Check("memory", False, f"workspace {workspace_bytes / 1e9:.1f} GB is larger than "
                     f"{profile.name}'s {profile.memory_gb:g} GB")  # fmt: skip
    if share and workspace_bytes > share * memory:
        return Check("memory", False, f"workspace {workspace_bytes / 1e9:.1f} GB is more than "
                     f"{share:.0%} of {profile.name}'s {profile.memory_gb:g} GB (shared with "
                     "the system)")  # fmt: skip
    if weights + workspace_bytes > memory:
        return Check("memory", False, f"weights {weights / 1e9:.2f} GB + workspace "
                     f"{workspace_bytes / 1e9:.2f} GB exceed {profile.memory_gb:g} GB")  # fmt: skip
    return Check("memory", True, f"weights {weights / 1e6:.0f} MB + workspace "
                 f"{workspace_bytes / 1e6:.0f} MB of {profile.memory_gb:g} GB")  # fmt: skip


def _itemsize(data_type: int) -> int:
    from onnx import helper

    return int(np.dtype(helper.tensor_dtype_to_np_dtype(data_type)).itemsize)


def check_model(
    model,
    profile,
    tensorrt_version: str,
    shapes: dict[str, tuple],
    workspace_bytes: int,
    text_length: int,
    patch: int,
) -> list[Check]:
    """Every readiness check of `model` (an onnx ModelProto) for `profile`."""
    return [
        _check_operators(model, tensorrt_version),
        _check_qdq(model),
        _check_shapes(shapes, text_length, patch),
        _check_memory(model, profile, workspace_bytes),
    ]


def first_failure(checks: list[Check]) -> Check | None:
    return next((c for c in checks if not c.ok), None)

"""Which nodes of an exported ViLT graph belong to which layer, for sensitivity and fallback.

The exported graph keeps transformers' parameter names on the LayerNormalization weights
(`...encoder.layer.N.layernorm_before.weight`), while the MatMul weights are anonymous transposed
constants. Walking the nodes in graph (topological) order, each `layernorm_before` opens layer N
and the final `vilt.layernorm` opens the head (pooler and classifier); everything before the
first layer is the embeddings (patch projection, text embeddings, position interpolation).
"""

from __future__ import annotations

import re

import onnx

_LAYER = re.compile(r"encoder\.layer\.(\d+)\.layernorm_before\.weight$")
_FINAL = re.compile(r"vilt\.layernorm\.weight$")


def layer_groups(model: onnx.ModelProto) -> dict[str, list[str]]:
    """{"embeddings": [...], "layer.0": [...], ..., "head": [...]}: node names per group, in
    graph order. Raises ValueError for a graph without the ViLT LayerNorm names."""
    groups: dict[str, list[str]] = {"embeddings": []}
    current = "embeddings"
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"
        if node.op_type == "LayerNormalization" and len(node.input) > 1:
            layer = _LAYER.search(node.input[1])
            if layer:
                current = f"layer.{int(layer.group(1))}"
            elif _FINAL.search(node.input[1]):
                current = "head"
        groups.setdefault(current, []).append(node.name)
    if len(groups) < 3 or "head" not in groups:
        raise ValueError("graph has no ViLT layer structure (LayerNorm weights not named)")
    return groups


def name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """Quantization refers to nodes by name; give every node one (as `layer_groups` does)."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"

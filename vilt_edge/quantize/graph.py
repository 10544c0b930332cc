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


def activation_matmuls(model: onnx.ModelProto) -> list[str]:
    """Names of the MatMul nodes that multiply two activations (attention's Q·K^T and P·V):
    neither input is a weight, i.e. an initializer or computed from initializers alone."""
    constant = {init.name for init in model.graph.initializer}
    found = []
    for node in model.graph.node:  # topological order: a node's inputs are settled before it
        inputs = [name for name in node.input if name]
        if all(name in constant for name in inputs):
            constant.update(node.output)
        elif node.op_type == "MatMul" and not any(name in constant for name in inputs):
            found.append(node.name)
    return found


def name_unnamed_nodes(model: onnx.ModelProto) -> None:
    """Quantization refers to nodes by name; give every node one (as `layer_groups` does)."""
    for index, node in enumerate(model.graph.node):
        if not node.name:
            node.name = f"{node.op_type}_{index}"


def fuse_for_onnxruntime_cpu(source, destination) -> dict[str, int]:
    """Fuse the exported graph's GELU and attention into ONNX Runtime's CPU contrib ops.

    Uses onnxscript's ONNX Runtime rewriter (written for graphs from torch's dynamo exporter):
    the erf form of GELU becomes one `com.microsoft.Gelu` (one pass over the MLP activation
    instead of five), and scaled-dot-product attention becomes `com.microsoft.MultiHeadAttention`
    (no per-head transposes; Q·K^T, softmax and ·V in one kernel). Only these two fusions are
    applied: onnxscript's SkipLayerNormalization and BiasGelu fusions were measured slower in
    onnxruntime 1.32 on x86 than the ops they replace (0.54 ms against 0.08 ms for Add +
    LayerNorm on 233x768; see benchmarks/NOTES-cpu-speed.md). Returns the fusion counts.
    """
    import onnx_ir as ir
    import onnx_ir.passes.common as common_passes
    from onnxscript.optimizer import optimize
    from onnxscript.rewriter.ort_fusions import erfgelu, mha, sdpa, shape_optimization

    model = ir.load(str(source))
    common_passes.ShapeInferencePass()(model)
    optimize(model)
    shape_optimization.rules.apply_to_model(model)
    optimize(model)
    counts = {"gelu": erfgelu.fuse_erfgelu(model)}
    counts["sdpa"] = sdpa.fuse_sdpa(model, apply_shape_inference=True)
    counts["multi_head_attention"] = mha.fuse_mha1(model) + mha.fuse_mha2(model)
    optimize(model)
    proto = ir.to_proto(model)
    counts["unmasked_attention_branches"] = branch_unmasked_attention(proto)
    onnx.save(proto, str(destination))
    return counts


def branch_unmasked_attention(model: onnx.ModelProto) -> int:
    """Give every masked `MultiHeadAttention` an unmasked twin, taken when no token is padding.

    ONNX Runtime's CPU MultiHeadAttention runs a faster kernel when it gets no mask (at ViLT-B/32's
    233 tokens: 0.90 ms against 1.27 ms with the additive attention bias; see
    benchmarks/NOTES-cpu-speed.md). Each masked attention becomes an `If` on "every
    attention_mask value is 1": the then-branch is the same attention without its mask, the
    else-branch the attention as it was. Both branches compute the same values when the mask is
    all ones, which is what the runtime feeds a single question once it has cut the padding
    (`vilt_edge.runtime.trim_padding`). Returns how many attentions were branched.
    """
    from onnx import TensorProto, helper

    graph = model.graph
    if "attention_mask" not in {value.name for value in graph.input}:
        return 0
    condition = "vilt_edge_text_unpadded"
    nodes, count = [], 0
    for node in graph.node:
        inputs = list(node.input)
        masked = len(inputs) > 4 and any(inputs[4:6]) and not any(inputs[6:])
        masked = masked and not any(node.output[1:])  # no present key/value outputs
        if not (node.op_type == "MultiHeadAttention" and node.domain == "com.microsoft" and masked):
            nodes.append(node)
            continue
        unmasked = inputs[:4]
        while unmasked and not unmasked[-1]:
            unmasked.pop()
        branches = {}
        for kind, branch_inputs in (("unmasked", unmasked), ("masked", inputs)):
            name = f"{node.name or 'attention'}_{count}_{kind}"
            attention = helper.make_node(
                "MultiHeadAttention", branch_inputs, [f"{name}_out"], name=name, domain=node.domain
            )
            attention.attribute.extend(node.attribute)
            out = helper.make_tensor_value_info(f"{name}_out", TensorProto.FLOAT, None)
            branches[kind] = helper.make_graph([attention], name, [], [out])
        nodes.append(
            helper.make_node(
                "If",
                [condition],
                list(node.output[:1]),
                name=f"{node.name or 'attention'}_{count}_if_unpadded",
                then_branch=branches["unmasked"],
                else_branch=branches["masked"],
            )
        )
        count += 1
    if count:
        one = helper.make_tensor("vilt_edge_one", TensorProto.INT64, [], [1])
        head = [
            helper.make_node("ReduceMin", ["attention_mask"], ["vilt_edge_mask_min"], keepdims=0),
            helper.make_node("Constant", [], ["vilt_edge_one"], value=one),
            helper.make_node("Equal", ["vilt_edge_mask_min", "vilt_edge_one"], [condition]),
        ]
        del graph.node[:]
        graph.node.extend(head + nodes)
    return count


def keep_float_consumers(model, op_types: set[str]) -> int:
    """Rewire ops that do not run in INT8 to read the float tensor, not its Q/DQ round trip.

    onnxruntime's Q/DQ quantizer gives a tensor read by one quantized op a single Q/DQ pair and
    points *every* reader at the dequantized copy, so a residual Add or a LayerNorm beside the
    quantized MatMul would also see quantization error (and TensorRT would see Q/DQ where it does
    not run INT8). Returns how many inputs were rewired.
    """
    produced_by = {out: node for node in model.graph.node for out in node.output}
    rewired = 0
    for node in model.graph.node:
        if node.op_type in op_types or node.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        for index, name in enumerate(node.input):
            dequantize = produced_by.get(name)
            if dequantize is None or dequantize.op_type != "DequantizeLinear":
                continue
            quantize = produced_by.get(dequantize.input[0])
            if quantize is None or quantize.op_type != "QuantizeLinear":
                continue  # a weight's DQ (initializer input): nothing float to read instead
            node.input[index] = quantize.input[0]
            rewired += 1
    return rewired


def remove_dangling_qdq(model) -> int:
    """Drop Q/DQ nodes whose outputs nobody reads any more (after `keep_float_consumers`)."""
    outputs = {o.name for o in model.graph.output}
    removed = 0
    while True:
        read = {name for node in model.graph.node for name in node.input} | outputs
        dead = [
            node
            for node in model.graph.node
            if node.op_type in ("QuantizeLinear", "DequantizeLinear")
            and not any(out in read for out in node.output)
        ]
        if not dead:
            return removed
        for node in dead:
            model.graph.node.remove(node)
        removed += len(dead)

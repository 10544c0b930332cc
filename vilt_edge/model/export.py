"""Export a ViLT to a bundle: ONNX with dynamic batch and image size, plus what an app needs.

    vilt-edge export MODEL -o BUNDLE [--opset 17]
    from vilt_edge.model.export import export_bundle; export_bundle("path/to/hf-vilt-dir", "bundle")

The graph takes `input_ids` and `attention_mask` (int64, batch x text: any length from 2 up to
the model's text length; the runtime pads questions on the right and cuts a batch's columns past
its longest question) and `pixel_values` (float32, batch x 3 x H x W; H and W any multiples of
the patch size). A VQA graph returns `logits`.

NLVR2 bundles hold two graphs, as transformers computes NLVR2: `model.onnx` encodes one image
per row (`image_token_type_ids`, int64 per row: 1 for a pair's left image, 2 for its right,
selects the modality-type embedding) and returns its `pooled` [CLS] vector; `head.onnx` maps
the two pooled vectors side by side (`pooled`, batch x 2*hidden) to `logits`. Each image is
encoded at its own preprocessed size, so a pair of different sizes is exact.
Opset >= 17 so LayerNormalization is one native op (TensorRT's FP16 path needs that).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from vilt_edge import __version__
from vilt_edge.bundle import Bundle, check_output, save_model, write_bundle
from vilt_edge.errors import InputError
from vilt_edge.model.loading import LoadedModel, load_model

MIN_OPSET = 17
MODEL_FILE = "model.onnx"
HEAD_FILE = "head.onnx"  # NLVR2: the pair head over both images' pooled vectors
EXPORTERS = ("dynamo", "torchscript")


def _example_inputs(loaded: LoadedModel, batch: int = 2):
    import torch

    grid = max(2, loaded.config.image_size // loaded.patch_size)
    # Non-square example so height and width stay distinct symbols in the traced graph.
    height, width = grid * loaded.patch_size, (grid + 1) * loaded.patch_size
    # One token short of the maximum, so no exporter mistakes the text axis for a constant.
    length = max(2, loaded.text_length - 1)
    input_ids = torch.ones(batch, length, dtype=torch.long)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[:, length // 2 :] = 0
    inputs = (input_ids, attention_mask, torch.zeros(batch, 3, height, width))
    if loaded.num_images == 2:  # one left and one right image: the type is per row
        inputs += (torch.arange(1, batch + 1, dtype=torch.long) % 2 + 1,)
    return inputs


@contextmanager
def _quiet_loggers(*names: str):
    """The exporters log notes (opset conversion, missing torchvision ops) that are not
    actionable for a user; keep stderr for what is."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(loaded: LoadedModel, path: Path, opset: int = MIN_OPSET, exporter: str = "dynamo"):
    """Write the exact model's ONNX graph to `path` (one file, weights inside): the whole VQA
    model, or the NLVR2 encoder of one image (its pair head: `export_head`)."""
    import torch

    from vilt_edge.model.modeling import ExportWrapper, PooledEncoderWrapper

    if opset < MIN_OPSET:
        raise InputError(f"--opset must be at least {MIN_OPSET} (native LayerNormalization)")
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r} (choose from {', '.join(EXPORTERS)})")
    model = loaded.model.eval()
    pair = loaded.num_images == 2
    wrapper = PooledEncoderWrapper(model) if pair else ExportWrapper(model)
    inputs = _example_inputs(loaded)
    input_names = ["input_ids", "attention_mask", "pixel_values"]
    input_names += ["image_token_type_ids"] if pair else []
    output = "pooled" if pair else "logits"
    names = dict(input_names=input_names, output_names=[output])
    with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("torch", "onnxscript"):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            text = torch.export.Dim("text", min=2, max=loaded.text_length)
            grid_h = torch.export.Dim("grid_h", min=1, max=1024)
            grid_w = torch.export.Dim("grid_w", min=1, max=1024)
            patch = loaded.patch_size
            dynamic_shapes = {
                "input_ids": {0: batch, 1: text},
                "attention_mask": {0: batch, 1: text},
                "pixel_values": {0: batch, 2: patch * grid_h, 3: patch * grid_w},
            }
            if pair:
                dynamic_shapes["image_token_type_ids"] = {0: batch}
            program = torch.onnx.export(
                wrapper,
                inputs,
                dynamo=True,
                opset_version=opset,
                dynamic_shapes=dynamic_shapes,
                verbose=False,
                **names,
            )
            program.save(str(path), external_data=False)
        else:
            dynamic_axes = {
                "input_ids": {0: "batch", 1: "text"},
                "attention_mask": {0: "batch", 1: "text"},
                "pixel_values": {0: "batch", 2: "height", 3: "width"},
                output: {0: "batch"},
            }
            if pair:
                dynamic_axes["image_token_type_ids"] = {0: "batch"}
            torch.onnx.export(
                wrapper,
                inputs,
                str(path),
                dynamo=False,
                opset_version=opset,
                dynamic_axes=dynamic_axes,
                **names,
            )
    _name_dynamic_axes(path)


def export_head(loaded: LoadedModel, path: Path, opset: int = MIN_OPSET) -> None:
    """Write the NLVR2 pair head (`classifier`: Linear, LayerNorm, GELU, Linear over the two
    pooled vectors side by side) as its own small graph: `pooled` -> `logits`.

    The torchscript exporter: the head is four static ops, nothing the dynamo exporter adds."""
    import torch

    head = loaded.model.eval().classifier
    width = head[0].in_features
    with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("torch", "onnxscript"):
        warnings.simplefilter("ignore")
        torch.onnx.export(
            head,
            (torch.zeros(2, width),),
            str(path),
            dynamo=False,
            opset_version=opset,
            input_names=["pooled"],
            output_names=["logits"],
            dynamic_axes={"pooled": {0: "batch"}, "logits": {0: "batch"}},
        )
    _name_dynamic_axes(path)


def _name_dynamic_axes(path: Path) -> None:
    """Give the graph's dynamic dimensions stable names (batch, text, height, width) for
    readers such as TensorRT profiles and Netron."""
    import onnx

    model = onnx.load(str(path))
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
        if value.name in ("input_ids", "attention_mask") and not dims[1].HasField("dim_value"):
            dims[1].dim_param = "text"
        if value.name == "pixel_values":
            dims[2].dim_param = "height"
            dims[3].dim_param = "width"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def input_spec(loaded: LoadedModel) -> dict:
    """The model file's inputs and output (and, for NLVR2, the head's), as in the manifest."""
    text = {"dtype": "int64", "shape": ["batch", "text"], "max": loaded.text_length}
    spec = {
        "input_ids": dict(text),
        "attention_mask": dict(text),
        "pixel_values": {
            "dtype": "float32",
            "shape": ["batch", 3, "height", "width"],
            "multiple_of": loaded.patch_size,
        },
    }
    if loaded.num_images == 1:
        spec["logits"] = {"dtype": "float32", "shape": ["batch", len(loaded.labels)]}
        return spec
    hidden = int(loaded.config.hidden_size)
    spec["image_token_type_ids"] = {"dtype": "int64", "shape": ["batch"], "values": [1, 2]}
    spec["pooled"] = {"dtype": "float32", "shape": ["batch", hidden]}
    spec["head"] = {
        "pooled": {"dtype": "float32", "shape": ["batch", loaded.num_images * hidden]},
        "logits": {"dtype": "float32", "shape": ["batch", len(loaded.labels)]},
    }
    return spec


def export_bundle(
    source: str | Path | LoadedModel,
    out: str | Path,
    opset: int = MIN_OPSET,
    exporter: str = "dynamo",
    overwrite: bool = False,
) -> Bundle:
    """Load `source` (unless already loaded), export it and write the bundle atomically."""
    out = Path(out)
    inputs = () if isinstance(source, LoadedModel) or str(source) == "default" else (source,)
    check_output(out, overwrite, inputs)  # fail before the slow load and export
    loaded = source if isinstance(source, LoadedModel) else load_model(source)

    def write_files(staging: Path) -> None:
        export_onnx(loaded, staging / MODEL_FILE, opset=opset, exporter=exporter)
        save_model(staging / MODEL_FILE, staging / MODEL_FILE)  # weights beside it when large
        if loaded.num_images == 2:
            export_head(loaded, staging / HEAD_FILE, opset=opset)
        (staging / "tokenizer.json").write_text(loaded.tokenizer_json, encoding="utf-8")
        (staging / "preprocessor.json").write_text(
            json.dumps(loaded.preprocessing.to_json(), indent=2) + "\n"
        )
        (staging / "labels.json").write_text(json.dumps(loaded.labels, indent=1) + "\n")

    manifest_fields = dict(
        task=loaded.task,
        model_file=MODEL_FILE,
        head_file=HEAD_FILE if loaded.num_images == 2 else None,
        precision="fp32",
        runtime="onnxruntime",
        text_length=loaded.text_length,
        num_images=loaded.num_images,
        patch_size=loaded.patch_size,
        source=dict(loaded.source),
        inputs=input_spec(loaded),
        vilt_edge_version=__version__,
        extra={"export": {"opset": opset, "exporter": exporter}},
    )
    return write_bundle(out, manifest_fields, write_files, overwrite=overwrite, inputs=inputs)

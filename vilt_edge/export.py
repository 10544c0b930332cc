"""Export a ViLT to a bundle: ONNX with dynamic batch and image size, plus what an app needs.

    vilt-edge export MODEL -o BUNDLE [--opset 17]
    from vilt_edge.export import export_bundle; export_bundle("path/to/hf-vilt-dir", "bundle")

The graph takes `input_ids` and `attention_mask` (int64, batch x text: any length from 2 up to
the model's text length; the runtime pads questions on the right and cuts a batch's columns past
its longest question) and `pixel_values` (float32, batch x 3 x H x W, or
batch x 2 x 3 x H x W for NLVR2; H and W any multiples of the patch size) and returns `logits`.
Opset >= 17 so LayerNormalization is one native op (TensorRT's FP16 path needs that).
"""

from __future__ import annotations

import json
import logging
import warnings
from contextlib import contextmanager
from pathlib import Path

from vilt_edge import __version__
from vilt_edge.bundle import Bundle, save_model, write_bundle
from vilt_edge.errors import BundleError, InputError
from vilt_edge.loading import LoadedModel, load_model

MIN_OPSET = 17
MODEL_FILE = "model.onnx"
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
    image_shape = (batch, 3, height, width)
    if loaded.num_images == 2:
        image_shape = (batch, 2, 3, height, width)
    return input_ids, attention_mask, torch.zeros(image_shape)


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
    """Write the exact model's ONNX graph to `path` (one file, weights inside)."""
    import torch

    from vilt_edge.modeling import ExportWrapper

    if opset < MIN_OPSET:
        raise InputError(f"--opset must be at least {MIN_OPSET} (native LayerNormalization)")
    if exporter not in EXPORTERS:
        raise InputError(f"unknown exporter {exporter!r} (choose from {', '.join(EXPORTERS)})")
    wrapper = ExportWrapper(loaded.model.eval())
    inputs = _example_inputs(loaded)
    image_axis = 3 if loaded.num_images == 2 else 2
    names = dict(
        input_names=["input_ids", "attention_mask", "pixel_values"], output_names=["logits"]
    )
    with warnings.catch_warnings(), torch.no_grad(), _quiet_loggers("torch", "onnxscript"):
        warnings.simplefilter("ignore")
        if exporter == "dynamo":
            batch = torch.export.Dim("batch", min=1, max=4096)
            text = torch.export.Dim("text", min=2, max=loaded.text_length)
            grid_h = torch.export.Dim("grid_h", min=1, max=1024)
            grid_w = torch.export.Dim("grid_w", min=1, max=1024)
            patch = loaded.patch_size
            program = torch.onnx.export(
                wrapper,
                inputs,
                dynamo=True,
                opset_version=opset,
                dynamic_shapes={
                    "input_ids": {0: batch, 1: text},
                    "attention_mask": {0: batch, 1: text},
                    "pixel_values": {
                        0: batch,
                        image_axis: patch * grid_h,
                        image_axis + 1: patch * grid_w,
                    },
                },
                verbose=False,
                **names,
            )
            program.save(str(path), external_data=False)
        else:
            torch.onnx.export(
                wrapper,
                inputs,
                str(path),
                dynamo=False,
                opset_version=opset,
                dynamic_axes={
                    "input_ids": {0: "batch", 1: "text"},
                    "attention_mask": {0: "batch", 1: "text"},
                    "pixel_values": {0: "batch", image_axis: "height", image_axis + 1: "width"},
                    "logits": {0: "batch"},
                },
                **names,
            )
    _name_dynamic_axes(path, loaded)


def _name_dynamic_axes(path: Path, loaded: LoadedModel) -> None:
    """Give the graph's dynamic dimensions stable names (batch, text, height, width) for
    readers such as TensorRT profiles and Netron."""
    import onnx

    model = onnx.load(str(path))
    image_axes = (3, 4) if loaded.num_images == 2 else (2, 3)
    for value in list(model.graph.input) + list(model.graph.output):
        dims = value.type.tensor_type.shape.dim
        if dims and not dims[0].HasField("dim_value"):
            dims[0].dim_param = "batch"
        if value.name in ("input_ids", "attention_mask") and not dims[1].HasField("dim_value"):
            dims[1].dim_param = "text"
        if value.name == "pixel_values":
            dims[image_axes[0]].dim_param = "height"
            dims[image_axes[1]].dim_param = "width"
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def input_spec(loaded: LoadedModel) -> dict:
    image = ["batch", 3, "height", "width"]
    if loaded.num_images == 2:
        image = ["batch", 2, 3, "height", "width"]
    return {
        "input_ids": {"dtype": "int64", "shape": ["batch", "text"], "max": loaded.text_length},
        "attention_mask": {"dtype": "int64", "shape": ["batch", "text"], "max": loaded.text_length},
        "pixel_values": {"dtype": "float32", "shape": image, "multiple_of": loaded.patch_size},
        "logits": {"dtype": "float32", "shape": ["batch", len(loaded.labels)]},
    }


def export_bundle(
    source: str | Path | LoadedModel,
    out: str | Path,
    opset: int = MIN_OPSET,
    exporter: str = "dynamo",
    overwrite: bool = False,
) -> Bundle:
    """Load `source` (unless already loaded), export it and write the bundle atomically."""
    out = Path(out)
    if out.exists() and not overwrite:  # fail before the slow load and export
        raise BundleError(f"output exists: {out} (choose another path or pass --overwrite)")
    loaded = source if isinstance(source, LoadedModel) else load_model(source)

    def write_files(staging: Path) -> None:
        export_onnx(loaded, staging / MODEL_FILE, opset=opset, exporter=exporter)
        save_model(staging / MODEL_FILE, staging / MODEL_FILE)  # weights beside it when large
        (staging / "tokenizer.json").write_text(loaded.tokenizer_json, encoding="utf-8")
        (staging / "preprocessor.json").write_text(
            json.dumps(loaded.preprocessing.to_json(), indent=2) + "\n"
        )
        (staging / "labels.json").write_text(json.dumps(loaded.labels, indent=1) + "\n")

    manifest_fields = dict(
        task=loaded.task,
        model_file=MODEL_FILE,
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
    return write_bundle(Path(out), manifest_fields, write_files, overwrite=overwrite)

"""Parity of the exact ViLT (torch) and its ONNX export against transformers' own model.

Both heads (VQA, NLVR2), image sizes 384x384, 384x512, 512x384, 384x576, batch 1 and 4, on
random weights of a small config and of the real ViLT-B/32 config. Limits: torch 1e-5,
ONNX Runtime 1e-4 (max-abs over logits).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tokenizer, random_transformers_model, tiny_config

from vilt_edge.bundle import Preprocessing
from vilt_edge.model.loading import LoadedModel
from vilt_edge.model.modeling import EXACT_CLASS_FOR_TASK

SIZES = [(384, 384), (384, 512), (512, 384), (384, 576)]
BATCHES = [1, 4]
TORCH_LIMIT = 1e-5
ONNX_LIMIT = 1e-4


def b32_config(task: str):
    from transformers import ViltConfig

    # ViltConfig's defaults are ViLT-B/32: hidden 768, 12 layers, 12 heads, 32x32 patches.
    if task == "vqa":
        return ViltConfig(num_labels=3129)
    return ViltConfig(num_labels=2, num_images=2, modality_type_vocab_size=3)


CONFIGS = {"small": tiny_config, "vilt-b32": b32_config}


class Case:
    """One (config, task): transformers' model, the exact model, its ONNX session."""

    def __init__(self, config_name: str, task: str, tmp_path):
        self.task = task
        self.reference = random_transformers_model(task, CONFIGS[config_name](task))
        self.exact = EXACT_CLASS_FOR_TASK[task](self.reference.config).eval()
        self.exact.load_state_dict(self.reference.state_dict())
        self.tmp_path = tmp_path
        self._session = None
        self._head = None
        self._reference_logits = {}

    def inputs(self, height: int, width: int, batch: int):
        generator = torch.Generator().manual_seed(height * 7 + width * 3 + batch)
        config = self.reference.config
        input_ids = torch.randint(5, config.vocab_size, (batch, 40), generator=generator)
        attention_mask = torch.zeros(batch, 40, dtype=torch.long)
        for row in range(batch):
            attention_mask[row, : 6 + 7 * row] = 1  # different question lengths per row
        images = 2 if self.task == "nlvr2" else 1
        shape = (batch, images, 3, height, width) if images == 2 else (batch, 3, height, width)
        pixel_values = torch.randn(shape, generator=generator)
        return input_ids, attention_mask, pixel_values

    def reference_logits(self, height, width, batch) -> np.ndarray:
        key = (height, width, batch)
        if key not in self._reference_logits:
            input_ids, attention_mask, pixel_values = self.inputs(height, width, batch)
            pixel_mask = torch.ones(
                pixel_values.shape[:-3] + pixel_values.shape[-2:], dtype=torch.long
            )
            with torch.no_grad():
                logits = self.reference(
                    input_ids=input_ids,
                    attention_mask=attention_mask,
                    pixel_values=pixel_values,
                    pixel_mask=pixel_mask,
                ).logits
            self._reference_logits[key] = logits.numpy()
        return self._reference_logits[key]

    def exact_logits(self, height, width, batch) -> np.ndarray:
        input_ids, attention_mask, pixel_values = self.inputs(height, width, batch)
        with torch.no_grad():
            return self.exact(
                input_ids=input_ids, attention_mask=attention_mask, pixel_values=pixel_values
            ).logits.numpy()

    def onnx_logits(self, height, width, batch) -> np.ndarray:
        """The exported graph's logits; for NLVR2 the encoder once per image (its type id per
        row) and the pair head over both pooled vectors, as the runtime runs them."""
        import onnxruntime

        from vilt_edge.model.export import export_head, export_onnx

        if self._session is None:
            config = self.exact.config
            loaded = LoadedModel(
                task=self.task,
                model=self.exact,
                tokenizer_json=build_tokenizer().to_str(),
                preprocessing=Preprocessing.for_shortest_edge(384, 32),
                labels=[config.id2label[i] for i in range(config.num_labels)],
                source={"model": "random", "kind": "test", "sha256": ""},
            )
            path = self.tmp_path / "model.onnx"
            export_onnx(loaded, path)
            self._session = onnxruntime.InferenceSession(
                str(path), providers=["CPUExecutionProvider"]
            )
            if self.task == "nlvr2":
                export_head(loaded, self.tmp_path / "head.onnx")
                self._head = onnxruntime.InferenceSession(
                    str(self.tmp_path / "head.onnx"), providers=["CPUExecutionProvider"]
                )
        input_ids, attention_mask, pixel_values = self.inputs(height, width, batch)
        feeds = {"input_ids": input_ids.numpy(), "attention_mask": attention_mask.numpy()}
        if self.task == "vqa":
            return self._session.run(["logits"], {**feeds, "pixel_values": pixel_values.numpy()})[0]
        pooled = [
            self._session.run(
                ["pooled"],
                {
                    **feeds,
                    "pixel_values": pixel_values[:, index].numpy(),
                    "image_token_type_ids": np.full(batch, index + 1, dtype=np.int64),
                },
            )[0]
            for index in range(pixel_values.shape[1])
        ]
        return self._head.run(["logits"], {"pooled": np.concatenate(pooled, axis=1)})[0]


# Module scope: pytest groups the tests by case, so each B/32 model is built (and exported)
# once and released before the next.
@pytest.fixture(
    scope="module",
    params=[(c, t) for c in CONFIGS for t in ("vqa", "nlvr2")],
    ids=lambda p: "-".join(p),
)
def case(request, tmp_path_factory):
    return Case(*request.param, tmp_path_factory.mktemp("parity"))


@pytest.mark.parametrize("height,width", SIZES)
def test_exact_model_matches_transformers(case, height, width):
    for batch in BATCHES:
        reference = case.reference_logits(height, width, batch)
        exact = case.exact_logits(height, width, batch)
        assert exact.shape == reference.shape
        difference = float(np.abs(exact - reference).max())
        print(f"torch {case.task} {height}x{width} b{batch}: max-abs {difference:.2e}")
        assert difference <= TORCH_LIMIT


@pytest.mark.parametrize("height,width", SIZES)
def test_onnx_export_matches_transformers(case, height, width):
    for batch in BATCHES:
        reference = case.reference_logits(height, width, batch)
        exported = case.onnx_logits(height, width, batch)
        assert exported.shape == reference.shape
        difference = float(np.abs(exported - reference).max())
        print(f"onnx {case.task} {height}x{width} b{batch}: max-abs {difference:.2e}")
        assert difference <= ONNX_LIMIT


def test_logits_are_not_trivially_equal(case):
    """Guards the parity tests: different images must give different logits."""
    first = case.exact_logits(384, 384, 1)
    second = case.exact_logits(384, 512, 1)
    assert np.abs(first - second).max() > 1e-4


def test_export_wrapper_runs_the_last_layer_for_cls_only(case):
    """The exported forward (`ExportWrapper`) computes the last layer's MLP for the [CLS] row
    alone, gives transformers' logits, and leaves the model's own forward as it was."""
    from vilt_edge.model.modeling import ExportWrapper

    rows = []
    dense = case.exact.vilt.encoder.layer[-1].intermediate.dense
    hook = dense.register_forward_hook(lambda module, args, out: rows.append(args[0].shape[-2]))
    try:
        input_ids, attention_mask, pixel_values = case.inputs(384, 512, 4)
        with torch.no_grad():
            wrapped = ExportWrapper(case.exact)(input_ids, attention_mask, pixel_values).numpy()
    finally:
        hook.remove()
    assert rows and set(rows) == {1}
    assert not case.exact.vilt.pooled_only
    assert float(np.abs(wrapped - case.reference_logits(384, 512, 4)).max()) <= TORCH_LIMIT


@pytest.mark.parametrize("height,width", [(64, 96), (70, 101)])
def test_patch_tokens_are_the_patch_conv(height, width):
    """The export's patch projection (Reshape, Transpose, MatMul) equals transformers' Conv2d
    in raster order, also for an image whose sides are not multiples of the patch (the Conv
    drops the rest; so does the MatMul form)."""
    from vilt_edge.model.modeling import ExactViltEmbeddings

    torch.manual_seed(0)
    embeddings = ExactViltEmbeddings(tiny_config("vqa")).eval()
    pixels = torch.randn(2, 3, height, width)
    with torch.no_grad():
        tokens, grid_h, grid_w = embeddings.patch_tokens(pixels)
        conv = embeddings.patch_embeddings.projection(pixels)
    assert (grid_h, grid_w) == conv.shape[2:] == (height // 32, width // 32)
    expected = conv.flatten(2).transpose(1, 2)
    assert tokens.shape == expected.shape
    assert float((tokens - expected).abs().max()) < 1e-5
    assert float(expected.abs().max()) > 0.1  # not trivially zero

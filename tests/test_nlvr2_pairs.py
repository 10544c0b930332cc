"""NLVR2 on real pairs: `vilt-edge ask` gives transformers' P(True) within 1e-4 on all 16 pairs
of ../shared/data/nlvr2-mini, most of whose left and right images differ in aspect ratio.

transformers' processor pads both images of a pair to one size under a pixel mask, and
`ViltForImagesAndTextClassification` encodes each image in its own pass (the mask limits its
patches and position grid to its own area); an NLVR2 bundle encodes each image at its own
preprocessed size and runs the pair head on both pooled vectors. Random weights of a small
config and of the ViLT-B/32 NLVR2 config; the reference runs on the runtime's own token ids.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import random_transformers_model, tiny_config, write_hf_directory
from PIL import Image
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.data import load_nlvr2
from vilt_edge.preprocess import output_size
from vilt_edge.runtime import ViltRuntime

LIMIT = 1e-4


def b32_nlvr2_config():
    from transformers import ViltConfig

    # ViltConfig's defaults are ViLT-B/32: hidden 768, 12 layers, 12 heads, 32x32 patches.
    return ViltConfig(
        num_labels=2,
        num_images=2,
        modality_type_vocab_size=3,
        id2label={0: "False", 1: "True"},
        label2id={"False": 0, "True": 1},
        vocab_size=tiny_config("nlvr2").vocab_size,
    )


# (config, scale of the last layer's weights): with random weights the small config puts every
# pair's P(True) within 2e-4 of the others, and a steeper last layer spreads them (to 3e-3),
# so that a 1e-4 limit tells exact from merely close; ViLT-B/32's spread is wide as it is.
CONFIGS = {"small": (lambda: tiny_config("nlvr2"), 40.0), "vilt-b32": (b32_nlvr2_config, 1.0)}


@pytest.fixture(scope="module", params=list(CONFIGS))
def case(request, tmp_path_factory):
    """(transformers' model, its HF directory, the exported bundle) for one config."""
    from vilt_edge.model.export import export_bundle

    config, scale = CONFIGS[request.param]
    model = random_transformers_model("nlvr2", config(), seed=3)
    with torch.no_grad():
        model.classifier[-1].weight.mul_(scale)
    directory = write_hf_directory(model, tmp_path_factory.mktemp(f"nlvr2-{request.param}"))
    bundle = export_bundle(directory, tmp_path_factory.mktemp("bundle") / request.param).path
    return request.param, model, bundle


def reference_p_true(model, runtime: ViltRuntime, left, right, sentence: str) -> float:
    """transformers' P(True): its processor pads the pair to one size under a pixel mask."""
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    settings = runtime.bundle.preprocessing
    processor = ViltImageProcessorPil(
        size={"shortest_edge": settings.shortest_edge}, size_divisor=settings.size_divisor
    )
    images = [Image.open(path).convert("RGB") for path in (left, right)]
    processed = processor(images, return_tensors="pt")
    input_ids, mask = runtime.tokenizer.encode([sentence])
    with torch.no_grad():
        logits = model(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(mask),
            pixel_values=processed["pixel_values"][None],
            pixel_mask=processed["pixel_mask"][None],
        ).logits[0]
    return float(torch.softmax(logits, -1)[model.config.label2id["True"]])


def test_ask_equals_transformers_on_all_real_pairs(case, shared_data):
    name, model, bundle = case
    examples = load_nlvr2(shared_data / "nlvr2-mini")
    assert len(examples) == 16
    runner = CliRunner()
    differences, p_true = [], []
    with ViltRuntime.load(bundle, threads=2) as runtime:
        settings = runtime.bundle.preprocessing
        sizes = []
        for example in examples:
            pair = []
            for path in (example.left_image, example.right_image):
                with Image.open(path) as image:
                    pair.append(output_size(image.height, image.width, settings))
            sizes.append(pair)
        # The data set's point: most pairs' images preprocess to different sizes.
        assert sum(left != right for left, right in sizes) >= 14, sizes
        for example in examples:
            result = runner.invoke(
                app,
                ["ask", str(bundle), "--image", str(example.left_image), "--image",
                 str(example.right_image), "-q", example.sentence, "--json"],
            )  # fmt: skip
            assert result.exit_code == 0, result.output
            answers = json.loads(result.stdout)["answers"]
            asked = next(a["score"] for a in answers if a["answer"] == "True")
            expected = reference_p_true(
                model, runtime, example.left_image, example.right_image, example.sentence
            )
            differences.append(abs(asked - expected))
            p_true.append(expected)
        batched = runtime.logits_batch(
            [(e.left_image, e.right_image) for e in examples],
            [e.sentence for e in examples],
            batch_size=8,
        )
    batch_true = np.exp(batched[:, 1]) / np.exp(batched).sum(axis=1)
    worst = max(differences)
    print(f"{name}: max |P(True) - transformers| over 16 pairs: ask {worst:.2e}, batch "
          f"{np.abs(batch_true - np.array(p_true)).max():.2e}; P(True) from {min(p_true):.4f} "
          f"to {max(p_true):.4f}")  # fmt: skip
    assert worst <= LIMIT
    assert np.abs(batch_true - np.array(p_true)).max() <= LIMIT
    # Guards the comparison: the pairs' probabilities differ by far more than the limit.
    assert max(p_true) - min(p_true) > 10 * LIMIT

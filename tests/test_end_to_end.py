"""The torch-free runtime against transformers' whole pipeline on real COCO images and questions.

transformers side: ViltImageProcessorPil + the tokenizer with padding to max length +
ViltForQuestionAnswering (sampling visual embedding). vilt-edge side: `ViltRuntime.ask` on the
exported bundle. Same top answers, scores within 1e-3; also the CLI's --json shape.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.runtime import ViltRuntime


def vqav2_mini_examples(shared_data):
    root = shared_data / "vqav2-mini"
    examples = []
    for split in ("val2014", "train2014"):
        questions = json.loads(
            (root / f"v2_OpenEnded_mscoco_{split}_questions.mini.json").read_text()
        )["questions"]
        for q in questions:
            image = root / "images" / split / f"COCO_{split}_{q['image_id']:012d}.jpg"
            examples.append((image, q["question"]))
    return examples


def transformers_scores(model_dir, image_path, question):
    from transformers import PreTrainedTokenizerFast, ViltForQuestionAnswering
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    # torchvision (which transformers' default ViltImageProcessor needs) does not install
    # beside the CPU torch wheel here; the PIL processor implements the same semantics.
    processor = ViltImageProcessorPil(size={"shortest_edge": 384}, size_divisor=32)
    tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / "tokenizer.json"))
    tokenizer.pad_token = "[PAD]"
    model = ViltForQuestionAnswering.from_pretrained(model_dir).eval()
    pixels = processor(Image.open(image_path).convert("RGB"), return_tensors="pt")
    text = tokenizer(
        question, padding="max_length", max_length=40, truncation=True, return_tensors="pt"
    )
    with torch.no_grad():
        logits = model(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            pixel_values=pixels["pixel_values"],
            pixel_mask=pixels["pixel_mask"],
        ).logits[0]
    return torch.sigmoid(logits).numpy()


def test_runtime_matches_transformers_pipeline_on_coco(shared_data, tiny_vqa_dir, tiny_vqa_bundle):
    runtime = ViltRuntime.load(tiny_vqa_bundle)
    labels = list(runtime.labels)
    worst = 0.0
    examples = vqav2_mini_examples(shared_data)
    assert len(examples) == 13
    for image, question in examples:
        reference = transformers_scores(tiny_vqa_dir, image, question)
        answers = runtime.ask(str(image), question, top_k=5)
        expected = [labels[i] for i in np.argsort(-reference)[:5]]
        assert [a.answer for a in answers] == expected, question
        for answer in answers:
            worst = max(worst, abs(answer.score - reference[labels.index(answer.answer)]))
    print(f"max-abs score difference over {len(examples)} COCO questions: {worst:.2e}")
    assert worst <= 1e-3


def test_batch_answers_equal_single_answers(shared_data, tiny_vqa_bundle):
    runtime = ViltRuntime.load(tiny_vqa_bundle)
    examples = vqav2_mini_examples(shared_data)
    batch = runtime.ask_batch([str(i) for i, _ in examples], [q for _, q in examples], top_k=3)
    for (image, question), answers in zip(examples, batch, strict=True):
        single = runtime.ask(str(image), question, top_k=3)
        assert [a.answer for a in answers] == [a.answer for a in single]
        assert np.allclose([a.score for a in answers], [a.score for a in single], atol=1e-5)


def test_nlvr2_bundle_on_real_pairs(shared_data, tiny_nlvr2_bundle):
    runtime = ViltRuntime.load(tiny_nlvr2_bundle)
    root = shared_data / "nlvr2-mini"
    lines = (root / "examples.jsonl").read_text().splitlines()
    for line in lines[:4]:
        example = json.loads(line)
        pair = (root / example["left_image"], root / example["right_image"])
        answers = runtime.ask(pair, example["sentence"], top_k=2)
        assert sorted(a.answer for a in answers) == ["False", "True"]
        assert abs(sum(a.score for a in answers) - 1.0) < 1e-5


def test_ask_cli_json(shared_data, tiny_vqa_bundle):
    image, question = vqav2_mini_examples(shared_data)[0]
    result = CliRunner().invoke(
        app, ["ask", str(tiny_vqa_bundle), "--image", str(image), "-q", question, "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert len(payload["answers"]) == 5
    assert all(set(a) == {"answer", "score"} for a in payload["answers"])
    assert set(payload["latency_ms"]) == {"preprocess", "model", "total"}
    assert payload["latency_ms"]["total"] >= payload["latency_ms"]["model"] > 0


@pytest.mark.parametrize(
    "make_args, expected",
    [
        (
            lambda b, img: ["ask", b, "--image", "/nonexistent.jpg", "-q", "what?"],
            "nonexistent.jpg",
        ),
        (lambda b, img: ["ask", b, "--image", img, "-q", "   "], "empty"),
        (lambda b, img: ["ask", "/nonexistent-bundle", "--image", img, "-q", "what?"], "not found"),
    ],
)
def test_ask_cli_bad_input_is_one_line(tiny_vqa_bundle, tmp_path, make_args, expected):
    image = tmp_path / "image.png"
    Image.new("RGB", (400, 300), "blue").save(image)
    result = CliRunner().invoke(app, make_args(str(tiny_vqa_bundle), str(image)))
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert "Traceback" not in result.output


def test_ask_cli_nlvr2_needs_two_images(tiny_nlvr2_bundle, tmp_path):
    image = tmp_path / "image.png"
    Image.new("RGB", (400, 300), "blue").save(image)
    result = CliRunner().invoke(
        app, ["ask", str(tiny_nlvr2_bundle), "--image", str(image), "-q", "x"]
    )
    assert result.exit_code != 0
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "two images" in lines[0]

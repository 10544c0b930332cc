"""The embedded default: shipped inside the package, exported on first use, >= 95% on the full
easy-VQA test split through the torch-free runtime."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from vilt_edge.cli import app
from vilt_edge.data import load_data
from vilt_edge.default_bundle import default_bundle as load_default_bundle
from vilt_edge.model.loading import load_model
from vilt_edge.paths import DEFAULT_WEIGHTS_DIR
from vilt_edge.runtime import ViltRuntime
from vilt_edge.validate import validate


@pytest.fixture(scope="module")
def default_bundle(tmp_path_factory):
    cache = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VILT_EDGE_CACHE", str(cache))
        path = load_default_bundle().path
        assert path.parent == cache
        assert load_default_bundle().path == path  # the second call reuses the cached export
        yield path


def test_default_ships_small_and_loads():
    shipped = sum(p.stat().st_size for p in DEFAULT_WEIGHTS_DIR.iterdir() if p.is_file())
    assert shipped <= 15_000_000, f"default model is {shipped / 1e6:.1f} MB"
    loaded = load_model("default")
    config = loaded.config
    assert loaded.task == "vqa" and config.num_hidden_layers == 6 and config.hidden_size >= 192
    assert loaded.source["kind"] == "default"
    assert len(loaded.labels) == 13


def test_default_reaches_95_percent_on_full_easy_vqa_test(default_bundle):
    data = load_data("easy-vqa:test")
    assert len(data) == 9673
    result = validate(ViltRuntime.load(default_bundle), data, batch_size=64, warmup=0)
    print(json.dumps({"accuracy": result.accuracy, "by_type": result.accuracy_by_type}))
    assert result.n == 9673
    assert result.accuracy >= 0.95


def test_ask_default_from_the_cli(default_bundle, monkeypatch):
    monkeypatch.setenv("VILT_EDGE_CACHE", str(default_bundle.parent))
    examples = load_data("easy-vqa:test").examples
    example = next(e for e in examples if e.answer_type == "color")
    result = CliRunner().invoke(
        app, ["ask", "default", "--image", example.image_path, "-q", example.question, "--json"]
    )
    assert result.exit_code == 0, result.output
    answers = json.loads(result.stdout)["answers"]
    assert answers[0]["answer"] == example.answers[0]


def test_default_directory_is_a_plain_transformers_vilt():
    """The shipped directory loads with transformers alone, tokenizer included."""
    import torch
    from transformers import AutoTokenizer, ViltForQuestionAnswering

    model = ViltForQuestionAnswering.from_pretrained(DEFAULT_WEIGHTS_DIR).eval()
    tokenizer = AutoTokenizer.from_pretrained(DEFAULT_WEIGHTS_DIR)
    text = tokenizer(["what color is the shape?"], padding="max_length", return_tensors="pt")
    assert text["input_ids"].shape == (1, model.config.max_position_embeddings)
    pixel_values = torch.zeros(1, 3, 64, 64)
    exact = load_model("default").model
    with torch.no_grad():
        expected = model(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            pixel_values=pixel_values,
            pixel_mask=torch.ones(1, 64, 64, dtype=torch.long),
        ).logits
        actual = exact(
            input_ids=text["input_ids"],
            attention_mask=text["attention_mask"],
            pixel_values=pixel_values,
        ).logits
    assert float((actual - expected).abs().max()) <= 1e-5

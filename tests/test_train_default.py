"""The default model's training command: seeded, reproducible, writes a loadable HF directory.

A few steps of a small recipe on the real easy-VQA data; the full recipe's figures are in the
README (it takes ~48 min, so it never runs in tests).
"""

from __future__ import annotations

import json

import pytest
from safetensors.numpy import load_file

from vilt_edge.model.loading import load_model
from vilt_edge.model.train_default import DefaultRecipe, train_default

SMALL = DefaultRecipe(hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, batch_size=8)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("train")
    first = train_default(base / "a", SMALL, max_steps=3, progress=False)
    second = train_default(base / "b", SMALL, max_steps=3, progress=False)
    return base, first, second


def test_training_is_seeded_and_reproducible(two_runs):
    base, first, second = two_runs
    a = load_file(base / "a" / "model.safetensors")
    b = load_file(base / "b" / "model.safetensors")
    assert a.keys() == b.keys()
    assert all((a[k] == b[k]).all() for k in a)
    assert first["test_accuracy"] == second["test_accuracy"] and first["steps"] == 3
    other = train_default(base / "c", DefaultRecipe(**{**SMALL.__dict__, "seed": 1}), max_steps=3,
                          progress=False)  # fmt: skip
    c = load_file(base / "c" / "model.safetensors")
    assert any((a[k] != c[k]).any() for k in a)
    assert other["steps"] == 3


def test_training_writes_a_loadable_directory(two_runs):
    base, first, _ = two_runs
    out = base / "a"
    summary = json.loads((out / "training_summary.json").read_text())
    assert summary["test_questions"] == 9673 and 0 <= summary["test_accuracy"] <= 1
    assert json.loads((out / "training_recipe.json").read_text())["image_size"] == 56
    assert json.loads((out / "preprocessor_config.json").read_text())["size"] == {
        "shortest_edge": 56
    }
    loaded = load_model(out)
    assert loaded.task == "vqa" and loaded.config.intermediate_size == 64
    assert len(loaded.labels) == 13

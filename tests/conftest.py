"""Shared fixtures: tiny ViLTs built from configs (no downloads), their HF directories and
exported bundles, and the real-data minis in ../shared/data."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from vilt_edge.model.synthetic import WORDS, build_tokenizer  # noqa: F401 - tests import them from here

SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def tiny_config(task: str, **overrides):
    from transformers import ViltConfig

    labels = (
        ["no", "yes", "red", "blue", "circle", "two", "3"] if task == "vqa" else ["False", "True"]
    )
    fields = dict(
        vocab_size=build_tokenizer().get_vocab_size(),
        hidden_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=96,
        image_size=384,
        patch_size=32,
        max_position_embeddings=40,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
        pad_token_id=0,
    )
    if task == "nlvr2":
        fields.update(num_images=2, modality_type_vocab_size=3)
    fields.update(overrides)
    return ViltConfig(**fields)


def random_transformers_model(task: str, config=None, seed: int = 0):
    """transformers' own ViLT class with random weights (the parity reference)."""
    import torch
    from transformers import ViltForImagesAndTextClassification, ViltForQuestionAnswering

    torch.manual_seed(seed)
    config = config or tiny_config(task)
    cls = ViltForQuestionAnswering if task == "vqa" else ViltForImagesAndTextClassification
    model = cls(config).eval()
    # transformers initialises LayerNorms to identity and biases to zero; perturb them so
    # parity covers every parameter, not just the matrices.
    with torch.no_grad():
        for param in model.parameters():
            if param.ndim == 1:
                param.add_(0.05 * torch.randn_like(param))
    return model


def write_hf_directory(model, directory: Path, shortest_edge: int = 384) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(directory)
    build_tokenizer().save(str(directory / "tokenizer.json"))
    (directory / "preprocessor_config.json").write_text(
        json.dumps(
            {
                "image_processor_type": "ViltImageProcessor",
                "size": {"shortest_edge": shortest_edge},
                "size_divisor": model.config.patch_size,
                "resample": 3,
                "rescale_factor": 1 / 255,
                "image_mean": [0.5, 0.5, 0.5],
                "image_std": [0.5, 0.5, 0.5],
            }
        )
    )
    return directory


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "real_amx_grant: the test reads this host's real AMX tile grant"
    )


@pytest.fixture(scope="session", autouse=True)
def host_without_amx_tiles():
    """The suite means the same on every host: `--target cpu` on an AMX Xeon would otherwise be
    x86-amx (static INT8 in OpenVINO's layout on OpenVINO's provider), elsewhere an ONNX Runtime
    family. So, for fixtures of every scope, the kernel's AMX grant reads as refused and an AMX
    host detects as x86-avx512-vnni (what it is without the grant). The x86-amx path is tested
    by naming it or by patching the flags (tests/test_openvino.py); the real grant by the tests
    marked `real_amx_grant`; the real provider plugin, on Intel hosts, by
    `test_openvino_provider_runs_here_or_says_why_not`. Yields the real `amx_tiles_granted`."""
    from vilt_edge.devices import host

    real = host.amx_tiles_granted
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(host, "amx_tiles_granted", lambda: False)
        yield real


@pytest.fixture(autouse=True)
def real_amx_grant_where_marked(request, monkeypatch, host_without_amx_tiles):
    if request.node.get_closest_marker("real_amx_grant") is not None:
        from vilt_edge.devices import host

        monkeypatch.setattr(host, "amx_tiles_granted", host_without_amx_tiles)


@pytest.fixture(scope="session")
def tiny_vqa_dir(tmp_path_factory) -> Path:
    return write_hf_directory(random_transformers_model("vqa"), tmp_path_factory.mktemp("vqa_hf"))


@pytest.fixture(scope="session")
def tiny_nlvr2_dir(tmp_path_factory) -> Path:
    return write_hf_directory(
        random_transformers_model("nlvr2"), tmp_path_factory.mktemp("nlvr2_hf")
    )


@pytest.fixture(scope="session")
def tiny_vqa_bundle(tiny_vqa_dir, tmp_path_factory) -> Path:
    from vilt_edge.model.export import export_bundle

    return export_bundle(tiny_vqa_dir, tmp_path_factory.mktemp("bundles") / "vqa").path


@pytest.fixture(scope="session")
def tiny_nlvr2_bundle(tiny_nlvr2_dir, tmp_path_factory) -> Path:
    from vilt_edge.model.export import export_bundle

    return export_bundle(tiny_nlvr2_dir, tmp_path_factory.mktemp("bundles") / "nlvr2").path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"real-data minis not found at {SHARED_DATA} (a checkout without ../shared)")
    return SHARED_DATA


@contextlib.contextmanager
def onnxruntime_layouts_only():
    """As on a machine without OpenVINO: every CPU family takes its ONNX Runtime INT8 layout
    (x86-avx512-vnni's static INT8 otherwise takes OpenVINO's)."""
    from vilt_edge.devices import target

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(target, "openvino_installed", lambda: False)
        yield


def one_line_error(result, code: int, *fragments: str) -> None:
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: "), lines[0]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert "Traceback" not in result.output

"""The torch-free runtime.

Most tests run on hand-made bundles: a few-node ONNX graph written with `onnx.helper`, whose
logits are a known function of the inputs (mean pixel, token count, id sum), so the runtime is
checked independently of the exporter. The exported tiny ViLTs from conftest then check the
runtime end to end against transformers.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tokenizer
from PIL import Image

from vilt_edge.bundle import MANIFEST, Preprocessing, write_bundle
from vilt_edge.errors import BundleError, InputError
from vilt_edge.preprocess import output_size, preprocess_image
from vilt_edge.runtime import Answer, ViltRuntime
from vilt_edge.runtimes import RUNTIMES, get_runner
from vilt_edge.runtimes.onnxruntime import OnnxRuntimeRunner
from vilt_edge.text import QuestionTokenizer, QuestionTruncatedWarning

TEXT_LENGTH = 16
SETTINGS = Preprocessing.for_shortest_edge(64, 32)  # small images keep the tests fast
VQA_LABELS = ["no", "yes", "red", "blue", "circle", "two", "3"]


def handmade_weights(num_labels: int) -> tuple[np.ndarray, np.ndarray]:
    """Features (mean pixel, token count, id sum) -> logits; distinct slopes spread the labels."""
    weight = np.stack(
        [
            np.linspace(-4.0, 4.0, num_labels),
            np.linspace(0.3, -0.3, num_labels),
            np.linspace(-0.01, 0.01, num_labels),
        ]
    ).astype(np.float32)
    bias = np.linspace(-1.0, 1.0, num_labels).astype(np.float32)
    return weight, bias


def handmade_logits(pixel_values: np.ndarray, input_ids: np.ndarray, mask: np.ndarray, labels: int):
    """What the hand-made graph computes, in numpy."""
    weight, bias = handmade_weights(labels)
    axes = tuple(range(1, pixel_values.ndim))
    features = np.stack(
        [pixel_values.mean(axis=axes), mask.sum(axis=1), input_ids.sum(axis=1)], axis=1
    ).astype(np.float32)
    return features @ weight + bias


def build_handmade_onnx(path: Path, num_labels: int, pooled: bool = False) -> None:
    """The hand-made model: features (mean pixel, token count, id sum) -> logits; or, for the
    NLVR2 encoder (`pooled`), the features and the image's type id as its pooled vector."""
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = handmade_weights(num_labels)
    nodes = [
        helper.make_node("ReduceMean", ["pixel_values"], ["pixel_mean"], axes=[1, 2, 3]),
        helper.make_node("Flatten", ["pixel_mean"], ["pixel_feature"], axis=1),
        helper.make_node("ReduceSum", ["attention_mask", "text_axis"], ["token_count"]),
        helper.make_node("Cast", ["token_count"], ["token_feature"], to=TensorProto.FLOAT),
        helper.make_node("ReduceSum", ["input_ids", "text_axis"], ["id_sum"]),
        helper.make_node("Cast", ["id_sum"], ["id_feature"], to=TensorProto.FLOAT),
        helper.make_node(
            "Concat", ["pixel_feature", "token_feature", "id_feature"], ["features"], axis=1
        ),
    ]
    inputs = [
        helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["batch", TEXT_LENGTH]),
        helper.make_tensor_value_info("attention_mask", TensorProto.INT64, ["batch", TEXT_LENGTH]),
        helper.make_tensor_value_info(
            "pixel_values", TensorProto.FLOAT, ["batch", 3, "height", "width"]
        ),
    ]
    initializers = [numpy_helper.from_array(np.array([1], dtype=np.int64), "text_axis")]
    if pooled:
        inputs.append(
            helper.make_tensor_value_info("image_token_type_ids", TensorProto.INT64, ["batch"])
        )
        nodes += [
            helper.make_node("Unsqueeze", ["image_token_type_ids", "text_axis"], ["type_column"]),
            helper.make_node("Cast", ["type_column"], ["type_feature"], to=TensorProto.FLOAT),
            helper.make_node("Concat", ["features", "type_feature"], ["pooled"], axis=1),
        ]
        outputs = [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 4])]
    else:
        nodes += [
            helper.make_node("MatMul", ["features", "weight"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
        ]
        initializers += [
            numpy_helper.from_array(weight, "weight"),
            numpy_helper.from_array(bias, "bias"),
        ]
        outputs = [
            helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", num_labels])
        ]
    graph = helper.make_graph(nodes, "handmade_vilt", inputs, outputs, initializers)
    save_handmade(graph, path)


def handmade_pair_weights() -> tuple[np.ndarray, np.ndarray]:
    """The hand-made pair head: both images' pooled vectors (4 each) -> 2 logits."""
    weight = np.linspace(-1.0, 1.0, 16, dtype=np.float32).reshape(8, 2)
    return weight, np.array([0.1, -0.1], dtype=np.float32)


def build_handmade_head(path: Path) -> None:
    from onnx import TensorProto, helper, numpy_helper

    weight, bias = handmade_pair_weights()
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["pooled", "weight"], ["scores"]),
            helper.make_node("Add", ["scores", "bias"], ["logits"]),
        ],
        "handmade_pair_head",
        [helper.make_tensor_value_info("pooled", TensorProto.FLOAT, ["batch", 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 2])],
        [numpy_helper.from_array(weight, "weight"), numpy_helper.from_array(bias, "bias")],
    )
    save_handmade(graph, path)


def save_handmade(graph, path: Path) -> None:
    import onnx
    from onnx import helper

    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8  # readable by every onnxruntime from 1.15 on
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def handmade_pair_logits(left: np.ndarray, right: np.ndarray, input_ids, mask) -> np.ndarray:
    """What the hand-made NLVR2 bundle computes for one pair, each image at its own size."""
    pooled = [
        [float(image.mean()), float(mask.sum()), float(input_ids.sum()), float(index)]
        for index, image in ((1, left), (2, right))
    ]
    weight, bias = handmade_pair_weights()
    return np.array(pooled[0] + pooled[1], dtype=np.float32) @ weight + bias


def write_handmade_bundle(out: Path, task: str) -> Path:
    num_images = 2 if task == "nlvr2" else 1
    labels = ["False", "True"] if task == "nlvr2" else VQA_LABELS

    def write_files(staging: Path) -> None:
        build_handmade_onnx(staging / "model.onnx", len(labels), pooled=num_images == 2)
        if num_images == 2:
            build_handmade_head(staging / "head.onnx")
        build_tokenizer().save(str(staging / "tokenizer.json"))
        (staging / "preprocessor.json").write_text(json.dumps(SETTINGS.to_json()))
        (staging / "labels.json").write_text(json.dumps(labels))

    fields = dict(
        task=task,
        model_file="model.onnx",
        head_file="head.onnx" if num_images == 2 else None,
        precision="fp32",
        runtime="onnxruntime",
        text_length=TEXT_LENGTH,
        num_images=num_images,
        patch_size=SETTINGS.size_divisor,
        source={"model": "handmade", "kind": "test", "sha256": "-"},
        inputs={
            "input_ids": {"dtype": "int64", "shape": ["batch", TEXT_LENGTH]},
            "attention_mask": {"dtype": "int64", "shape": ["batch", TEXT_LENGTH]},
            "pixel_values": {"dtype": "float32", "shape": ["batch", 3, "height", "width"]},
        },
        vilt_edge_version="test",
    )
    return write_bundle(out, fields, write_files).path


@pytest.fixture(scope="module")
def handmade_vqa_bundle(tmp_path_factory) -> Path:
    return write_handmade_bundle(tmp_path_factory.mktemp("handmade") / "vqa", "vqa")


@pytest.fixture(scope="module")
def handmade_nlvr2_bundle(tmp_path_factory) -> Path:
    return write_handmade_bundle(tmp_path_factory.mktemp("handmade") / "nlvr2", "nlvr2")


@pytest.fixture(scope="module")
def vqa(handmade_vqa_bundle: Path):
    with ViltRuntime.load(handmade_vqa_bundle, threads=1) as runtime:
        yield runtime


@pytest.fixture(scope="module")
def nlvr2(handmade_nlvr2_bundle: Path):
    with ViltRuntime.load(handmade_nlvr2_bundle, threads=1) as runtime:
        yield runtime


def picture(width: int, height: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8))


def expected_vqa_scores(image, question: str) -> np.ndarray:
    tokenizer = QuestionTokenizer(build_tokenizer(), TEXT_LENGTH)
    input_ids, mask = tokenizer.encode([question])
    pixels = preprocess_image(image, SETTINGS)[None]
    return 1 / (
        1 + np.exp(-handmade_logits(pixels, input_ids, mask, len(VQA_LABELS))[0].astype(np.float64))
    )


def test_ask_returns_top_k_sigmoid_scores_best_first(vqa: ViltRuntime):
    image = picture(80, 60, seed=0)
    answers = vqa.ask(image, "what is the color of the circle?", top_k=3)
    assert len(answers) == 3 and all(isinstance(a, Answer) for a in answers)
    scores = [a.score for a in answers]
    assert scores == sorted(scores, reverse=True)
    assert all(0.0 < s < 1.0 for s in scores)
    expected = expected_vqa_scores(image, "what is the color of the circle?")
    best = np.argsort(-expected)[:3]
    assert [a.answer for a in answers] == [VQA_LABELS[i] for i in best]
    np.testing.assert_allclose(scores, expected[best], rtol=1e-5)


def test_top_k_bounds(vqa: ViltRuntime):
    image = picture(64, 64, seed=1)
    assert len(vqa.ask(image, "red?", top_k=100)) == len(VQA_LABELS)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(InputError, match="top_k"):
            vqa.ask(image, "red?", top_k=bad)


def test_ask_batch_mixed_sizes_keeps_order_and_matches_single_asks(vqa: ViltRuntime, monkeypatch):
    images = [picture(64, 64, 2), picture(128, 64, 3), picture(64, 64, 4), picture(70, 200, 5)]
    questions = ["red?", "how many dogs", "is it a circle", "two cats on a table"]
    singles = [vqa.ask(image, question) for image, question in zip(images, questions, strict=True)]

    shapes = []
    run = vqa.runner.run

    def spy(feeds):
        shapes.append(feeds["pixel_values"].shape)
        return run(feeds)

    monkeypatch.setattr(vqa.runner, "run", spy)
    batched = vqa.ask_batch(images, questions)
    assert batched == singles
    # One ONNX call per distinct preprocessed size, each with same-size images only.
    tall = output_size(200, 70, SETTINGS)
    assert sorted(shapes) == sorted([(2, 3, 64, 64), (1, 3, 32, 96), (1, 3, *tall)])

    shapes.clear()
    assert vqa.ask_batch(images, questions, batch_size=1) == singles
    assert len(shapes) == len(images)


def test_ask_batch_input_checks(vqa: ViltRuntime):
    image = picture(64, 64, 6)
    with pytest.raises(InputError, match="2 images and 1 questions"):
        vqa.ask_batch([image, image], ["red?"])
    with pytest.raises(InputError, match="list of questions"):
        vqa.ask_batch([image], "red?")
    with pytest.raises(InputError, match="question is empty"):
        vqa.ask(image, "   ")
    with pytest.raises(InputError, match="VQA bundle takes one image"):
        vqa.ask((image, image), "red?")
    assert vqa.ask_batch([], []) == []


def test_long_question_warns(vqa: ViltRuntime):
    with pytest.warns(QuestionTruncatedWarning, match="dropped"):
        answers = vqa.ask(picture(64, 64, 7), " ".join(["red"] * 40))
    assert answers


def test_bad_image_error_names_the_file(vqa: ViltRuntime, tmp_path: Path):
    with pytest.raises(InputError, match="missing.jpg"):
        vqa.ask(tmp_path / "missing.jpg", "red?")


def test_latency_and_describe(vqa: ViltRuntime):
    vqa.ask(picture(64, 64, 8), "red?")
    latency = vqa.last_latency_ms
    assert set(latency) == {"preprocess", "model", "total"}
    assert all(value >= 0 for value in latency.values())
    assert latency["total"] >= latency["model"]
    assert vqa.task == "vqa" and vqa.labels == tuple(VQA_LABELS)
    assert vqa.manifest.text_length == TEXT_LENGTH
    description = vqa.describe()
    assert description["task"] == "vqa"
    assert description["runner"]["runtime"] == "onnxruntime"
    assert description["runner"]["threads"] == 1


def test_answer_is_frozen_and_serializes():
    answer = Answer("yes", 0.75)
    assert answer.to_json() == {"answer": "yes", "score": 0.75}
    json.dumps(answer.to_json())
    with pytest.raises(AttributeError):
        answer.score = 1.0  # type: ignore[misc]


def test_nlvr2_pair(nlvr2: ViltRuntime):
    left, right = picture(64, 64, 9), picture(64, 64, 10)
    answers = nlvr2.ask((left, right), "there are two dogs")
    assert {a.answer for a in answers} == {"True", "False"}
    assert answers[0].score >= answers[1].score
    assert answers[0].score + answers[1].score == pytest.approx(1.0)
    tokenizer = QuestionTokenizer(build_tokenizer(), TEXT_LENGTH)
    input_ids, mask = tokenizer.encode(["there are two dogs"])
    logits = handmade_pair_logits(
        preprocess_image(left, SETTINGS), preprocess_image(right, SETTINGS), input_ids, mask
    ).astype(np.float64)
    true = np.exp(logits[1]) / np.exp(logits).sum()
    assert dict((a.answer, a.score) for a in answers)["True"] == pytest.approx(true, rel=1e-5)
    assert len(nlvr2.ask([left, right], "there are two dogs", top_k=1)) == 1


def test_nlvr2_needs_two_images(nlvr2: ViltRuntime, tmp_path: Path):
    image = picture(64, 64, 11)
    message = "this NLVR2 bundle needs two images (left and right); got 1"
    for single in (image, np.asarray(image), tmp_path / "a.jpg", str(tmp_path / "a.jpg")):
        with pytest.raises(InputError) as error:
            nlvr2.ask(single, "two dogs")
        assert str(error.value) == message
    with pytest.raises(InputError, match="got 3"):
        nlvr2.ask((image, image, image), "two dogs")


def test_nlvr2_pair_images_run_at_their_own_sizes(nlvr2: ViltRuntime, monkeypatch):
    """Each image of a pair is encoded at its own preprocessed size (as transformers' pixel
    mask limits it to its own area), same-size images of a batch share one call whichever side
    they are on, and each row carries its image's type id."""
    calls = []
    run = nlvr2.runner.run
    monkeypatch.setattr(
        nlvr2.runner,
        "run",
        lambda f: (
            calls.append((f["pixel_values"].shape, f["image_token_type_ids"].tolist())) or run(f)
        ),
    )
    pairs = [
        (picture(128, 64, 12), picture(64, 64, 13)),
        (picture(64, 64, 14), picture(64, 128, 15)),
    ]
    statements = ["two dogs", "a cat"]
    logits = nlvr2.logits_batch(pairs, statements)
    # 128x64 preprocesses to 32x96 (the 106-pixel cap, floored to patches); 64x128 to 96x32.
    assert sorted(calls) == [
        ((1, 3, 32, 96), [1]),
        ((1, 3, 96, 32), [2]),
        ((2, 3, 64, 64), [2, 1]),
    ]
    tokenizer = QuestionTokenizer(build_tokenizer(), TEXT_LENGTH)
    for row, ((left, right), statement) in enumerate(zip(pairs, statements, strict=True)):
        input_ids, mask = tokenizer.encode([statement])
        expected = handmade_pair_logits(
            preprocess_image(left, SETTINGS), preprocess_image(right, SETTINGS), input_ids, mask
        )
        assert np.allclose(logits[row], expected, atol=1e-5)
        assert np.allclose(nlvr2.logits_batch([(left, right)], [statement])[0], expected, atol=1e-5)


def test_old_nlvr2_bundle_fails_with_one_line_to_re_export(handmade_nlvr2_bundle, tmp_path):
    """An NLVR2 bundle from before export revision 5 (one graph over both images, no pair
    head) is refused with one line that says to re-export."""
    old = Path(shutil.copytree(handmade_nlvr2_bundle, tmp_path / "old"))
    manifest = json.loads((old / MANIFEST).read_text())
    manifest.pop("head_file")
    (old / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(BundleError, match="re-export it") as error:
        ViltRuntime.load(old)
    assert "\n" not in str(error.value)


def test_load_default_uses_default_bundle_path(handmade_vqa_bundle: Path, monkeypatch):
    import vilt_edge.default_bundle

    monkeypatch.setattr(
        vilt_edge.default_bundle, "default_bundle_path", lambda: handmade_vqa_bundle
    )
    with ViltRuntime.load("default") as runtime:
        assert runtime.bundle.path == handmade_vqa_bundle


@pytest.fixture
def bundle_copy(handmade_vqa_bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(handmade_vqa_bundle, tmp_path / "copy"))


def rewrite_manifest(bundle: Path, **changes) -> None:
    manifest = json.loads((bundle / MANIFEST).read_text())
    manifest.update(changes)
    (bundle / MANIFEST).write_text(json.dumps(manifest))


def test_altered_model_file(bundle_copy: Path):
    with open(bundle_copy / "model.onnx", "ab") as handle:
        handle.write(b"\0")
    with pytest.raises(BundleError, match="model.onnx: altered") as error:
        ViltRuntime.load(bundle_copy)
    assert "\n" not in str(error.value)


def test_missing_labels_file(bundle_copy: Path):
    (bundle_copy / "labels.json").unlink()
    with pytest.raises(BundleError, match="labels.json: missing"):
        ViltRuntime.load(bundle_copy)


def test_model_onnxruntime_cannot_load(bundle_copy: Path):
    from vilt_edge.bundle import sha256_file

    (bundle_copy / "model.onnx").write_bytes(b"not a model")
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    rewrite_manifest(
        bundle_copy,
        files={**manifest["files"], "model.onnx": sha256_file(bundle_copy / "model.onnx")},
    )
    with pytest.raises(BundleError, match="model.onnx: onnxruntime cannot load") as error:
        ViltRuntime.load(bundle_copy)
    assert "\n" not in str(error.value)


def test_unknown_runtime(bundle_copy: Path):
    rewrite_manifest(bundle_copy, runtime="tflite")
    with pytest.raises(
        BundleError, match="unknown runtime 'tflite'.*openvino, tensorrt, torch-cuda"
    ):
        ViltRuntime.load(bundle_copy)


def test_label_count_mismatch(bundle_copy: Path):
    from vilt_edge.bundle import sha256_file

    (bundle_copy / "labels.json").write_text(json.dumps(VQA_LABELS[:3]))
    manifest = json.loads((bundle_copy / MANIFEST).read_text())
    files = {**manifest["files"], "labels.json": sha256_file(bundle_copy / "labels.json")}
    rewrite_manifest(bundle_copy, files=files)
    with ViltRuntime.load(bundle_copy) as runtime, pytest.raises(BundleError, match="labels.json"):
        runtime.ask(picture(64, 64, 16), "red?")


def test_runner_registry_and_runner(handmade_vqa_bundle: Path):
    assert RUNTIMES["onnxruntime"] is OnnxRuntimeRunner
    assert get_runner("onnxruntime") is OnnxRuntimeRunner
    with pytest.raises(BundleError, match="unknown runtime"):
        get_runner("nope")
    with pytest.raises(InputError, match="threads"):
        OnnxRuntimeRunner(handmade_vqa_bundle / "model.onnx", threads=0)
    with OnnxRuntimeRunner.load(handmade_vqa_bundle / "model.onnx", threads=1) as runner:
        assert runner.last_inference_time_ms is None
        feeds = {
            "input_ids": np.ones((2, TEXT_LENGTH), np.int64),
            "attention_mask": np.ones((2, TEXT_LENGTH), np.int64),
            "pixel_values": np.zeros((2, 3, 64, 64), np.float32),
            "pixel_mask": np.ones((2, 64, 64), np.int64),  # not declared by the model: dropped
        }
        assert runner.run(feeds).shape == (2, len(VQA_LABELS))
        assert runner.last_inference_time_ms > 0
        description = runner.describe()
        assert description["runtime"] == "onnxruntime"
        assert "CPUExecutionProvider" in description["providers"]
        assert description["threads"] == 1 and description["version"]
        with pytest.raises(BundleError, match="pixel_values"):
            runner.run({k: v for k, v in feeds.items() if k != "pixel_values"})
    with pytest.raises(RuntimeError, match="closed"):
        runner.run(feeds)
    # No activation memory pattern unless a compiled bundle's settings ask for one.
    for settings, pattern in [(None, False), ({"enable_mem_pattern": True}, True)]:
        with OnnxRuntimeRunner.load(handmade_vqa_bundle / "model.onnx", settings=settings) as r:
            assert r._session.get_session_options().enable_mem_pattern is pattern
            assert r.run(feeds).shape == (2, len(VQA_LABELS))


def test_runtime_never_imports_torch(handmade_vqa_bundle: Path, tmp_path: Path):
    """The deploy side stays torch-free: importing the runtime and every runner module (the
    TensorRT one included), asking a bundle, and loading "default" from a warm cache (only a
    cold cache exports, which is model-side work)."""
    cache = tmp_path / "cache"
    cache.mkdir()
    script = textwrap.dedent(
        f"""
        import shutil, sys
        import vilt_edge.runtime
        import vilt_edge.runtimes.onnxruntime, vilt_edge.runtimes.tensorrt
        import vilt_edge.runtimes.torch_cuda
        import vilt_edge.devices, vilt_edge.default_bundle
        heavy = [m for m in ("torch", "transformers", "onnx") if m in sys.modules]
        assert not heavy, f"importing the deploy side loaded {{heavy}}"
        from PIL import Image
        runtime = vilt_edge.runtime.ViltRuntime.load({str(handmade_vqa_bundle)!r}, threads=1)
        runtime.ask(Image.new("RGB", (64, 64), "red"), "what color?")
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        assert not heavy, f"asking loaded {{heavy}}"
        warm = vilt_edge.default_bundle.default_bundle_path()
        shutil.copytree({str(handmade_vqa_bundle)!r}, warm)  # the cache holds the default's
        default = vilt_edge.runtime.ViltRuntime.load("default", threads=1)
        assert default.bundle.path == warm
        default.ask(Image.new("RGB", (64, 64), "red"), "what color?")
        heavy = [m for m in ("torch", "transformers") if m in sys.modules]
        assert not heavy, f"loading the default from a warm cache loaded {{heavy}}"
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
        env={**os.environ, "VILT_EDGE_CACHE": str(cache)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


def reference_processor(runtime: ViltRuntime):
    from transformers.models.vilt.image_processing_pil_vilt import ViltImageProcessorPil

    settings = runtime.bundle.preprocessing
    return ViltImageProcessorPil(
        size={"shortest_edge": settings.shortest_edge}, size_divisor=settings.size_divisor
    )


def reference_logits(model, input_ids, mask, pixel_values, pixel_mask):
    """transformers' logits for the runtime's own token ids and the reference pixels."""
    import torch

    with torch.no_grad():
        return model(
            input_ids=torch.from_numpy(input_ids),
            attention_mask=torch.from_numpy(mask),
            pixel_values=pixel_values,
            pixel_mask=pixel_mask,
        ).logits[0]


def test_exported_tiny_vqa_matches_transformers(tiny_vqa_bundle: Path, tiny_vqa_dir: Path):
    """End to end: image + question -> the same sigmoid scores as transformers' ViLT."""
    import torch
    from transformers import ViltForQuestionAnswering

    image = picture(300, 200, 17)
    question = "what is the color of the circle?"
    with ViltRuntime.load(tiny_vqa_bundle, threads=1) as runtime:
        answers = runtime.ask(image, question, top_k=len(runtime.labels))
        pixels = reference_processor(runtime)(image, return_tensors="pt")
        input_ids, mask = runtime.tokenizer.encode([question])
    model = ViltForQuestionAnswering.from_pretrained(tiny_vqa_dir).eval()
    logits = reference_logits(model, input_ids, mask, pixels["pixel_values"], pixels["pixel_mask"])
    labels = [model.config.id2label[i] for i in range(len(logits))]
    expected = dict(zip(labels, torch.sigmoid(logits).tolist(), strict=True))
    assert len(answers) == len(labels)
    for answer in answers:
        assert answer.score == pytest.approx(expected[answer.answer], abs=1e-4)


def test_exported_tiny_nlvr2_matches_transformers(tiny_nlvr2_bundle: Path, tiny_nlvr2_dir: Path):
    """A pair of different sizes -> transformers' P(True) (its processor pads both images to
    one size under a pixel mask)."""
    import torch
    from transformers import ViltForImagesAndTextClassification

    left, right = picture(96, 64, 19), picture(64, 128, 20)
    statement = "there are two dogs"
    with ViltRuntime.load(tiny_nlvr2_bundle, threads=1) as runtime:
        with pytest.raises(InputError, match="got 1"):
            runtime.ask(left, statement)
        answers = runtime.ask((left, right), statement)
        processed = reference_processor(runtime)([left, right], return_tensors="pt")
        input_ids, mask = runtime.tokenizer.encode([statement])
    model = ViltForImagesAndTextClassification.from_pretrained(tiny_nlvr2_dir).eval()
    logits = reference_logits(
        model, input_ids, mask, processed["pixel_values"][None], processed["pixel_mask"][None]
    )
    true = torch.softmax(logits, -1)[model.config.label2id["True"]].item()
    assert [a.answer for a in answers] == (["True", "False"] if true >= 0.5 else ["False", "True"])
    assert dict((a.answer, a.score) for a in answers)["True"] == pytest.approx(true, abs=1e-4)


def test_trim_padding_cuts_columns_past_the_longest_question():
    from vilt_edge.runtime import trim_padding

    ids = np.arange(20, dtype=np.int64).reshape(2, 10)
    mask = np.zeros((2, 10), dtype=np.int64)
    mask[0, :3], mask[1, :6] = 1, 1
    cut_ids, cut_mask = trim_padding(ids, mask)
    assert cut_ids.shape == cut_mask.shape == (2, 6)
    assert np.array_equal(cut_ids, ids[:, :6]) and np.array_equal(cut_mask, mask[:, :6])
    mask[:] = 0
    mask[:, 0] = 1  # never fewer than 2 columns ([CLS] and [SEP])
    assert trim_padding(ids, mask)[0].shape == (2, 2)
    full = np.ones((2, 10), dtype=np.int64)
    assert trim_padding(ids, full)[0].shape == (2, 10)


def test_runtime_feeds_an_exported_bundle_only_the_question_s_tokens(tiny_vqa_bundle: Path):
    """Exported graphs take any text length up to the bundle's; the runtime cuts the padding,
    and the logits are those of the padded input."""
    question = "what is the color of the circle?"
    image = picture(300, 200, 5)
    with ViltRuntime.load(tiny_vqa_bundle, threads=1) as runtime:
        assert runtime.runner.dynamic_text
        seen = []
        run = runtime.runner.run
        runtime.runner.run = lambda feeds: seen.append(feeds["input_ids"].shape) or run(feeds)
        logits = runtime.logits_batch([image], [question])
        input_ids, mask = runtime.tokenizer.encode([question])
        assert seen == [(1, int(mask.sum()))] and int(mask.sum()) < input_ids.shape[1]
        padded = run(
            {
                "input_ids": input_ids,
                "attention_mask": mask,
                "pixel_values": runtime.feeds([image], [question])[0]["pixel_values"],
            }
        )
    assert np.abs(logits - padded).max() <= 1e-5

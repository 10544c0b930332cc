"""Original ViLT Lightning checkpoints -> transformers' ViLT (vilt_edge.model.checkpoint).

A random transformers ViLT of a tiny config is written in the original dandelin/ViLT layout by
an inverse mapping kept independent of the module under test (q, k, v fused with torch.cat),
then read back: the config must match, every tensor must come back bit for bit, and the logits
of the model built from the checkpoint must match transformers' within 1e-6. Bad files must
each give a one-line ModelError.
"""

from __future__ import annotations

import json

import pytest
import torch
from conftest import build_tokenizer, random_transformers_model, tiny_config

from vilt_edge.errors import ModelError
from vilt_edge.model.checkpoint import build_model_from_lightning, load_lightning_checkpoint
from vilt_edge.model.modeling import EXACT_CLASS_FOR_TASK

LOGIT_LIMIT = 1e-6
TEXT_NAMES = [
    "word_embeddings.weight",
    "position_embeddings.weight",
    "token_type_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
]
BLOCK_NAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}


def small_config(task: str, **overrides):
    fields = dict(image_size=64, patch_size=16)
    fields.update(overrides)
    return tiny_config(task, **fields)


def to_original(model, task: str) -> dict[str, torch.Tensor]:
    """transformers' ViLT state dict in dandelin/ViLT's naming, plus keys a reader must skip."""
    hf = {key: value.clone() for key, value in model.state_dict().items()}
    config = model.config
    sd = {f"text_embeddings.{n}": hf[f"vilt.embeddings.text_embeddings.{n}"] for n in TEXT_NAMES}
    sd["text_embeddings.position_ids"] = torch.arange(config.max_position_embeddings)[None]
    sd["token_type_embeddings.weight"] = hf["vilt.embeddings.token_type_embeddings.weight"]
    sd["transformer.cls_token"] = hf["vilt.embeddings.cls_token"]
    sd["transformer.pos_embed"] = hf["vilt.embeddings.position_embeddings"]
    for kind in ("weight", "bias"):
        sd[f"transformer.patch_embed.proj.{kind}"] = hf[
            f"vilt.embeddings.patch_embeddings.projection.{kind}"
        ]
        for i in range(config.num_hidden_layers):
            layer = f"vilt.encoder.layer.{i}."
            sd[f"transformer.blocks.{i}.attn.qkv.{kind}"] = torch.cat(
                [hf[f"{layer}attention.attention.{p}.{kind}"] for p in ("query", "key", "value")]
            )
            for original, target in BLOCK_NAMES.items():
                sd[f"transformer.blocks.{i}.{original}.{kind}"] = hf[f"{layer}{target}.{kind}"]
        sd[f"transformer.norm.{kind}"] = hf[f"vilt.layernorm.{kind}"]
        sd[f"pooler.dense.{kind}"] = hf[f"vilt.pooler.dense.{kind}"]
        for index in (0, 1, 3):
            sd[f"{task}_classifier.{index}.{kind}"] = hf[f"classifier.{index}.{kind}"]
    hidden = config.hidden_size
    # Pretraining heads, timm's unused head and a Lightning metric state: all to be skipped.
    sd["mlm_score.decoder.weight"] = torch.randn(config.vocab_size, hidden)
    sd["mlm_score.bias"] = torch.randn(config.vocab_size)
    sd["itm_score.fc.weight"] = torch.randn(2, hidden)
    sd["mpp_score.decoder.weight"] = torch.randn(3, hidden)
    sd["transformer.head.weight"] = torch.randn(10, hidden)
    sd[f"train_{task}_score.total"] = torch.tensor(3.0)
    return sd


def save_checkpoint(path, state_dict, **extra):
    torch.save({"state_dict": state_dict, "epoch": 9, "global_step": 100, **extra}, path)
    return path


def inputs(config, task: str, batch: int = 2):
    generator = torch.Generator().manual_seed(1)
    input_ids = torch.randint(5, config.vocab_size, (batch, 12), generator=generator)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[0, 7:] = 0
    size = config.image_size
    if task == "nlvr2":
        pixel_values = torch.randn(batch, 2, 3, size, size, generator=generator)
        pixel_mask = torch.ones(batch, 2, size, size, dtype=torch.long)
    else:
        pixel_values = torch.randn(batch, 3, size, size, generator=generator)
        pixel_mask = torch.ones(batch, size, size, dtype=torch.long)
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        pixel_values=pixel_values,
        pixel_mask=pixel_mask,
    )


def max_logit_difference(reference, model, task: str) -> float:
    feed = inputs(reference.config, task)
    with torch.no_grad():
        expected = reference(**feed).logits
        actual = model(**feed).logits
    assert actual.shape == expected.shape
    return float((actual - expected).abs().max())


@pytest.fixture(scope="module")
def references():
    return {task: random_transformers_model(task, small_config(task)) for task in ("vqa", "nlvr2")}


@pytest.mark.parametrize("task", ["vqa", "nlvr2"])
def test_lightning_checkpoint_round_trip(task, references, tmp_path):
    reference = references[task]
    original = to_original(reference, task)
    path = save_checkpoint(
        tmp_path / f"vilt_{task}.ckpt",
        original,
        hyper_parameters={"config": {"num_heads": 4, "hidden_size": 48, "max_text_len": 40}},
    )
    labels = list(reference.config.id2label.values())
    if task == "vqa":
        (tmp_path / "id2label.json").write_text(json.dumps(dict(enumerate(labels))))

    loaded_task, config, state_dict = load_lightning_checkpoint(path)

    assert loaded_task == task
    for field in (
        "vocab_size",
        "hidden_size",
        "num_hidden_layers",
        "num_attention_heads",
        "intermediate_size",
        "max_position_embeddings",
        "image_size",
        "patch_size",
        "modality_type_vocab_size",
        "type_vocab_size",
        "num_labels",
    ):
        assert getattr(config, field) == getattr(reference.config, field), field
    assert config.num_images == (2 if task == "nlvr2" else -1)
    assert config.layer_norm_eps == 1e-12
    assert list(config.id2label.values()) == labels
    assert config.label2id == {label: i for i, label in enumerate(labels)}

    expected = reference.state_dict()
    assert set(state_dict) == set(expected)
    for key, tensor in expected.items():
        assert torch.equal(state_dict[key], tensor), key
    # timm fuses rows as [q; k; v]: the query is the first third, the key the second.
    hidden = config.hidden_size
    qkv = original["transformer.blocks.1.attn.qkv.weight"]
    assert torch.equal(
        state_dict["vilt.encoder.layer.1.attention.attention.query.weight"], qkv[:hidden]
    )
    assert torch.equal(
        state_dict["vilt.encoder.layer.1.attention.attention.key.weight"], qkv[hidden : 2 * hidden]
    )

    built_task, model = build_model_from_lightning(path)
    assert built_task == task
    assert isinstance(model, EXACT_CLASS_FOR_TASK[task]) and not model.training
    difference = max_logit_difference(reference, model, task)
    print(f"{task}: max-abs logit difference {difference:.3g}")
    assert difference <= LOGIT_LIMIT


def test_prefix_list_labels_and_default_heads(tmp_path):
    # hidden 64 with no head count anywhere: the reader assumes hidden // 64 = 1 head.
    config = small_config("vqa", hidden_size=64, num_attention_heads=1, intermediate_size=128)
    reference = random_transformers_model("vqa", config, seed=3)
    original = {f"model.{key}": value for key, value in to_original(reference, "vqa").items()}
    path = save_checkpoint(tmp_path / "vilt_vqa.ckpt", original)
    labels = list(reference.config.id2label.values())
    (tmp_path / "id2label.json").write_text(json.dumps(labels))

    task, model = build_model_from_lightning(path)

    assert task == "vqa"
    assert model.config.num_attention_heads == 1
    assert list(model.config.id2label.values()) == labels
    assert max_logit_difference(reference, model, "vqa") <= LOGIT_LIMIT


def test_given_labels_and_heads_win(references, tmp_path):
    reference = references["vqa"]
    path = save_checkpoint(tmp_path / "vilt_vqa.ckpt", to_original(reference, "vqa"))
    labels = [f"answer {i}" for i in range(reference.config.num_labels)]

    _, config, _ = load_lightning_checkpoint(path, labels=labels, num_heads=6)

    assert config.num_attention_heads == 6
    assert list(config.id2label.values()) == labels


class NotATensor:
    """A custom class: a weights-only load must refuse to unpickle it."""


def _without(state_dict, prefix):
    return {key: value for key, value in state_dict.items() if not key.startswith(prefix)}


def _bad_checkpoint(kind: str, references, tmp_path):
    vqa = to_original(references["vqa"], "vqa")
    path = tmp_path / "vilt_vqa.ckpt"
    (tmp_path / "id2label.json").write_text(
        json.dumps(list(references["vqa"].config.id2label.values()))
    )
    # hidden 48 gives no default head count; only "heads unknown" leaves it out.
    kwargs = {} if kind == "heads unknown" else {"num_heads": 4}
    if kind == "random bytes":
        path.write_bytes(torch.randint(0, 256, (4096,), dtype=torch.uint8).numpy().tobytes())
    elif kind == "truncated":
        save_checkpoint(path, vqa)
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif kind == "pickled object":
        torch.save({"state_dict": vqa, "hyper_parameters": NotATensor()}, path)
    elif kind == "missing file":
        path = tmp_path / "absent.ckpt"
    elif kind == "no head":
        save_checkpoint(path, _without(vqa, "vqa_classifier."))
    elif kind == "both heads":
        nlvr2 = to_original(references["nlvr2"], "nlvr2")
        save_checkpoint(path, {**vqa, **{k: v for k, v in nlvr2.items() if "classifier" in k}})
    elif kind == "no id2label.json":
        save_checkpoint(path, vqa)
        (tmp_path / "id2label.json").unlink()
    elif kind == "bad id2label.json":
        save_checkpoint(path, vqa)
        (tmp_path / "id2label.json").write_text('{"0": "yes", "5": "no"}')
    elif kind == "labels of the wrong length":
        save_checkpoint(path, vqa)
        kwargs["labels"] = ["yes", "no"]
    elif kind == "unknown transformer key":
        save_checkpoint(path, {**vqa, "transformer.pre_norm.weight": torch.ones(48)})
    elif kind == "missing block weight":
        save_checkpoint(path, _without(vqa, "transformer.blocks.1.mlp.fc2."))
    elif kind == "non-square image grid":
        vqa["transformer.pos_embed"] = vqa["transformer.pos_embed"][:, :-1]
        save_checkpoint(path, vqa)
    elif kind == "heads unknown":
        save_checkpoint(path, vqa)  # hidden 48, no hyper-parameters, no num_heads
    elif kind == "not a state dict":
        torch.save({"state_dict": {"a": 1}}, path)
    else:
        raise AssertionError(kind)
    return path, kwargs


@pytest.mark.parametrize(
    "kind, words",
    [
        ("random bytes", "not a readable PyTorch checkpoint"),
        ("truncated", "not a readable PyTorch checkpoint"),
        ("pickled object", "weights-only load refuses"),
        ("missing file", "no such checkpoint file"),
        ("no head", "no VQA or NLVR2 head"),
        ("both heads", "both a VQA and an NLVR2 head"),
        ("no id2label.json", "put id2label.json beside it"),
        ("bad id2label.json", "expected a JSON list"),
        ("labels of the wrong length", "7 outputs, but the labels argument has 2 labels"),
        ("unknown transformer key", "transformer.pre_norm.weight"),
        ("missing block weight", "vilt.encoder.layer.1.output.dense"),
        ("non-square image grid", "square patch grid"),
        ("heads unknown", "pass num_heads"),
        ("not a state dict", "no state dict of tensors"),
    ],
)
def test_bad_checkpoints_give_one_line_errors(kind, words, references, tmp_path):
    path, kwargs = _bad_checkpoint(kind, references, tmp_path)
    with pytest.raises(ModelError) as caught:
        build_model_from_lightning(path, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    assert words in message
    assert path.name in message or "id2label.json" in message


def test_lightning_checkpoint_exports_to_a_bundle(references, tmp_path):
    """.ckpt -> `vilt-edge export` -> ONNX Runtime logits equal transformers' model."""
    import onnxruntime
    from typer.testing import CliRunner

    from vilt_edge.cli import app

    reference = references["vqa"]
    checkpoint = save_checkpoint(
        tmp_path / "vilt_vqa.ckpt",
        to_original(reference, "vqa"),
        hyper_parameters={"config": {"num_heads": 4}},  # where ViLT records its head count
    )
    labels = [reference.config.id2label[i] for i in range(reference.config.num_labels)]
    (tmp_path / "id2label.json").write_text(json.dumps(labels))
    build_tokenizer().save(str(tmp_path / "tokenizer.json"))
    result = CliRunner().invoke(app, ["export", str(checkpoint), "-o", str(tmp_path / "bundle")])
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["source"]["kind"] == "lightning-ckpt"
    feed = inputs(reference.config, "vqa")
    session = onnxruntime.InferenceSession(str(tmp_path / "bundle" / "model.onnx"))
    text_length = reference.config.max_position_embeddings
    padded = {}
    for name in ("input_ids", "attention_mask"):
        padded[name] = torch.zeros(feed[name].shape[0], text_length, dtype=torch.long)
        padded[name][:, : feed[name].shape[1]] = feed[name]
    logits = session.run(
        ["logits"],
        {
            "input_ids": padded["input_ids"].numpy(),
            "attention_mask": padded["attention_mask"].numpy(),
            "pixel_values": feed["pixel_values"].numpy(),
        },
    )[0]
    with torch.no_grad():
        expected = reference(**feed).logits.numpy()
    assert float(abs(logits - expected).max()) <= 1e-4


def test_lightning_checkpoint_without_tokenizer_is_one_line(references, tmp_path):
    from vilt_edge.model.loading import load_model

    checkpoint = save_checkpoint(
        tmp_path / "v.ckpt",
        to_original(references["nlvr2"], "nlvr2"),
        hyper_parameters={"config": {"num_heads": 4}},
    )
    with pytest.raises(ModelError, match="tokenizer.json"):
        load_model(checkpoint)

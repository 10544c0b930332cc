"""Read an original ViLT PyTorch-Lightning checkpoint (github.com/dandelin/ViLT) as transformers'
ViLT: `ViltForQuestionAnswering` (VQA) or `ViltForImagesAndTextClassification` (NLVR2).

    from vilt_edge.model.checkpoint import build_model_from_lightning, load_lightning_checkpoint
    task, config, state_dict = load_lightning_checkpoint("vilt_vqa.ckpt")
    task, model = build_model_from_lightning("vilt_vqa.ckpt")  # an ExactVilt* model, eval mode

The file is read with `torch.load(..., weights_only=True)` only: a checkpoint is untrusted input
and a full unpickle can run arbitrary code. A checkpoint that holds pickled Python objects
beyond tensors and plain containers is therefore refused; re-save `ckpt["state_dict"]` alone.

The config is read off the weight shapes, except two things the weights cannot tell:
- the number of attention heads (q, k and v are plain hidden x hidden matrices whatever the
  head count): taken from the `num_heads` argument, else from the Lightning hyper-parameters
  (`hyper_parameters["config"]["num_heads"]`, as ViLT saves them), else hidden_size // 64, the
  BERT/ViT convention that gives ViLT-B/32's 12 heads;
- LayerNorm epsilon: ViLT's timm blocks use 1e-6 and its BERT text embeddings 1e-12, while
  transformers' ViLT has one `layer_norm_eps`. The config uses 1e-12, as the official converted
  Hugging Face ViLT models do, so a converted .ckpt matches them; the difference from the
  original's 1e-6 is far below float32 noise for activations of unit scale.

A VQA checkpoint carries no answer vocabulary: pass `labels`, or put `id2label.json` (a JSON list
of answers, or an object {"0": "answer", ...}) beside the checkpoint.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from vilt_edge.errors import ModelError

if TYPE_CHECKING:  # torch and transformers load lazily: the deploy runtime has neither
    import torch
    from transformers import ViltConfig

# Lightning keeps the model's state dict under this key; a bare state dict is accepted too.
_STATE_DICT_KEY = "state_dict"

# Whole-key renames (original -> transformers); per-block ones are in _BLOCK_RENAMES.
_RENAMES = {
    "token_type_embeddings.weight": "vilt.embeddings.token_type_embeddings.weight",
    "transformer.cls_token": "vilt.embeddings.cls_token",
    "transformer.pos_embed": "vilt.embeddings.position_embeddings",
    "transformer.patch_embed.proj.weight": "vilt.embeddings.patch_embeddings.projection.weight",
    "transformer.patch_embed.proj.bias": "vilt.embeddings.patch_embeddings.projection.bias",
    "transformer.norm.weight": "vilt.layernorm.weight",
    "transformer.norm.bias": "vilt.layernorm.bias",
    "pooler.dense.weight": "vilt.pooler.dense.weight",
    "pooler.dense.bias": "vilt.pooler.dense.bias",
}
for _name in (
    "word_embeddings.weight",
    "position_embeddings.weight",
    "token_type_embeddings.weight",
    "LayerNorm.weight",
    "LayerNorm.bias",
):
    _RENAMES[f"text_embeddings.{_name}"] = f"vilt.embeddings.text_embeddings.{_name}"

_BLOCK_RENAMES = {
    "norm1": "layernorm_before",
    "attn.proj": "attention.output.dense",
    "norm2": "layernorm_after",
    "mlp.fc1": "intermediate.dense",
    "mlp.fc2": "output.dense",
}
_BLOCK_KEY = re.compile(r"^transformer\.blocks\.(\d+)\.(.+)\.(weight|bias)$")
_CLASSIFIER_KEY = re.compile(r"^(vqa|nlvr2)_classifier\.([013])\.(weight|bias)$")

# Keys that are no part of a VQA/NLVR2 model: pretraining heads (MLM, ITM, MPP, retrieval),
# timm's unused classification head, BERT's index buffers (transformers rebuilds them), and the
# states of Lightning metrics such as `train_vqa_score.score` or `val_nlvr2_accuracy.total`.
_IGNORED = re.compile(
    r"^(mlm_score|itm_score|mpp_score|rank_output)\."
    r"|^transformer\.(head|pre_logits)\."
    r"|^transformer\.mask_token$"
    r"|^text_embeddings\.(position_ids|token_type_ids)$"
    r"|^(train|val|dev|test)_\w+\.\w+$"
)

_TASKS = {"vqa": "vqa_classifier", "nlvr2": "nlvr2_classifier"}
_NLVR2_LABELS = ["False", "True"]


def load_lightning_checkpoint(
    path: str | os.PathLike,
    labels: list[str] | None = None,
    num_heads: int | None = None,
) -> tuple[str, ViltConfig, dict[str, torch.Tensor]]:
    """Read an original ViLT .ckpt; return (task, ViltConfig, transformers-named state dict).

    task is "vqa" or "nlvr2". Raises `ModelError` (one line naming the file) for a file that
    is not a readable weights-only checkpoint, has no VQA/NLVR2 head or both, holds weights this
    mapping does not know, or (VQA) comes with no answer list of the right length.
    """
    path = Path(path)
    checkpoint = _read(path)
    original = _original_state_dict(path, checkpoint)
    task = _task(path, original)
    state_dict = _rename(path, original, task)
    heads = num_heads if num_heads is not None else _heads_from_hyper_parameters(checkpoint)
    config = _config(path, task, state_dict, heads, _labels(path, task, state_dict, labels))
    _check_against_model(path, task, config, state_dict)
    return task, config, state_dict


def build_model_from_lightning(
    path: str | os.PathLike,
    labels: list[str] | None = None,
    num_heads: int | None = None,
) -> tuple[str, torch.nn.Module]:
    """Read an original ViLT .ckpt as the exact, exportable model; return (task, model.eval())."""
    from vilt_edge.model.modeling import EXACT_CLASS_FOR_TASK

    task, config, state_dict = load_lightning_checkpoint(path, labels=labels, num_heads=num_heads)
    model = EXACT_CLASS_FOR_TASK[task](config)
    # Strict: every parameter must come from the checkpoint. The only model entries it lacks
    # are transformers' non-persistent index buffers, which strict loading does not ask for.
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as error:
        reason = " ".join(str(error).split())
        raise ModelError(f"{path}: weights do not fit the inferred ViLT config: {reason}") from None
    return task, model.eval()


def _read(path: Path) -> Any:
    import torch

    if not path.is_file():
        raise ModelError(f"{path}: no such checkpoint file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        refused = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(error))
        if refused:
            raise ModelError(
                f"{path}: holds a pickled {refused.group(1)}, which a weights-only load refuses; "
                "if you trust the file, re-save ckpt['state_dict'] alone with torch.save"
            ) from None
        raise ModelError(
            f"{path}: not a readable PyTorch checkpoint (corrupt, truncated, or another format; "
            f"{type(error).__name__})"
        ) from None


def _original_state_dict(path: Path, checkpoint: Any) -> dict[str, Any]:
    import torch

    if isinstance(checkpoint, dict) and isinstance(checkpoint.get(_STATE_DICT_KEY), dict):
        state_dict = checkpoint[_STATE_DICT_KEY]
    else:
        state_dict = checkpoint
    if (
        not isinstance(state_dict, dict)
        or not state_dict
        or not all(isinstance(k, str) and torch.is_tensor(v) for k, v in state_dict.items())
    ):
        raise ModelError(f"{path}: holds no state dict of tensors (not a ViLT checkpoint)")
    # Wrappers (a Lightning module holding the model as `model`, DDP's `module`) prefix every key.
    for prefix in ("model.", "module."):
        if all(key.startswith(prefix) for key in state_dict):
            state_dict = {key[len(prefix) :]: value for key, value in state_dict.items()}
    return state_dict


def _task(path: Path, original: dict[str, Any]) -> str:
    found = [
        task for task, head in _TASKS.items() if any(k.startswith(head + ".") for k in original)
    ]
    if len(found) != 1:
        which = "both a VQA and an NLVR2 head" if found else "no VQA or NLVR2 head"
        raise ModelError(f"{path}: the checkpoint has {which}")
    return found[0]


def _rename(path: Path, original: dict[str, Any], task: str) -> dict[str, Any]:
    import torch

    renamed: dict[str, Any] = {}
    for key, tensor in original.items():
        # The model is float32; a half-precision checkpoint is widened once, here.
        if tensor.is_floating_point():
            tensor = tensor.float()
        if key in _RENAMES:
            renamed[_RENAMES[key]] = tensor
            continue
        block = _BLOCK_KEY.match(key)
        if block:
            index, module, kind = block.groups()
            prefix = f"vilt.encoder.layer.{index}."
            if module == "attn.qkv":
                if tensor.shape[0] % 3:
                    raise ModelError(f"{path}: {key} has {tensor.shape[0]} rows, not 3 x hidden")
                # timm fuses the projections as rows [q; k; v]. Clones, not views, so the
                # dict can be saved (safetensors refuses tensors sharing storage).
                for name, part in zip(
                    ("query", "key", "value"), torch.chunk(tensor, 3), strict=True
                ):
                    renamed[f"{prefix}attention.attention.{name}.{kind}"] = part.clone()
                continue
            if module in _BLOCK_RENAMES:
                renamed[f"{prefix}{_BLOCK_RENAMES[module]}.{kind}"] = tensor
                continue
        classifier = _CLASSIFIER_KEY.match(key)
        if classifier and classifier.group(1) == task:
            renamed[f"classifier.{classifier.group(2)}.{classifier.group(3)}"] = tensor
            continue
        if _IGNORED.search(key):
            continue
        unknown = [k for k in original if not _known(k, task)]
        raise ModelError(
            f"{path}: holds {len(unknown)} weight(s) a ViLT {task.upper()} model does not have, "
            f"e.g. {unknown[0]!r} (not an original ViLT checkpoint, or a variant this reader "
            "does not map)"
        )
    return renamed


def _known(key: str, task: str) -> bool:
    if key in _RENAMES or _IGNORED.search(key):
        return True
    block = _BLOCK_KEY.match(key)
    if block and (block.group(2) == "attn.qkv" or block.group(2) in _BLOCK_RENAMES):
        return True
    classifier = _CLASSIFIER_KEY.match(key)
    return bool(classifier and classifier.group(1) == task)


def _heads_from_hyper_parameters(checkpoint: Any) -> int | None:
    if not isinstance(checkpoint, dict):
        return None
    hyper = checkpoint.get("hyper_parameters")
    if not isinstance(hyper, dict):
        return None
    # ViLT's LightningModule saves its whole sacred config as the one hyper-parameter `config`.
    config = hyper.get("config", hyper)
    heads = config.get("num_heads") if isinstance(config, dict) else None
    return heads if isinstance(heads, int) and not isinstance(heads, bool) else None


def _labels(
    path: Path, task: str, state_dict: dict[str, Any], labels: list[str] | None
) -> list[str]:
    if "classifier.3.weight" not in state_dict:
        raise ModelError(f"{path}: its {task.upper()} head lacks the output layer (classifier.3)")
    num_labels = int(state_dict["classifier.3.weight"].shape[0])
    if labels is not None:
        labels = [str(label) for label in labels]
        source = "the labels argument"
    elif task == "nlvr2":
        labels, source = list(_NLVR2_LABELS), "NLVR2's label set"
    else:
        labels_file = path.parent / "id2label.json"
        if not labels_file.is_file():
            raise ModelError(
                f"{path}: a VQA checkpoint carries no answer list; put id2label.json beside it"
            )
        labels, source = _read_labels_file(labels_file), labels_file.name
    if len(labels) != num_labels:
        raise ModelError(
            f"{path}: the classifier has {num_labels} outputs, but {source} has "
            f"{len(labels)} labels"
        )
    if len(set(labels)) != len(labels):
        # label2id must invert id2label.
        duplicate = next(label for label in labels if labels.count(label) > 1)
        raise ModelError(f"{path}: the label {duplicate!r} appears twice in {source}")
    return labels


def _read_labels_file(labels_file: Path) -> list[str]:
    try:
        data = json.loads(labels_file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelError(f"{labels_file}: not readable JSON ({type(error).__name__})") from None
    if isinstance(data, list) and all(isinstance(label, str) for label in data):
        return data
    if isinstance(data, dict) and all(isinstance(label, str) for label in data.values()):
        try:
            by_index = {int(index): label for index, label in data.items()}
        except ValueError:
            by_index = {}
        if by_index and sorted(by_index) == list(range(len(by_index))):
            return [by_index[index] for index in range(len(by_index))]
    raise ModelError(
        f"{labels_file}: expected a JSON list of answers or an object "
        '{"0": "answer", ...} with indices 0..n-1'
    )


def _config(
    path: Path,
    task: str,
    state_dict: dict[str, Any],
    num_heads: int | None,
    labels: list[str],
):
    from transformers import ViltConfig

    def shape(key: str) -> tuple[int, ...]:
        if key not in state_dict:
            raise ModelError(f"{path}: lacks the weight for {key} (an incomplete ViLT checkpoint)")
        return tuple(state_dict[key].shape)

    vocab_size, hidden_size = shape("vilt.embeddings.text_embeddings.word_embeddings.weight")
    max_positions = shape("vilt.embeddings.text_embeddings.position_embeddings.weight")[0]
    type_vocab_size = shape("vilt.embeddings.text_embeddings.token_type_embeddings.weight")[0]
    modality_types = shape("vilt.embeddings.token_type_embeddings.weight")[0]
    projection = shape("vilt.embeddings.patch_embeddings.projection.weight")
    if len(projection) != 4 or projection[2] != projection[3]:
        raise ModelError(f"{path}: patch projection of shape {projection} is not a square conv")
    num_channels, patch_size = projection[1], projection[2]
    positions = shape("vilt.embeddings.position_embeddings")[1]
    grid = math.isqrt(max(positions - 1, 0))
    if grid < 1 or grid * grid != positions - 1:
        raise ModelError(
            f"{path}: {positions - 1} image position embeddings do not form a square patch grid"
        )

    layers = {int(key.split(".")[3]) for key in state_dict if key.startswith("vilt.encoder.layer.")}
    if not layers or layers != set(range(len(layers))):
        raise ModelError(f"{path}: transformer blocks {sorted(layers)} are not numbered 0..n-1")
    intermediate_size = shape("vilt.encoder.layer.0.intermediate.dense.weight")[0]

    if num_heads is None:
        if hidden_size % 64:
            raise ModelError(
                f"{path}: hidden size {hidden_size} is not a multiple of 64, so the number of "
                "attention heads cannot be assumed; pass num_heads"
            )
        num_heads = hidden_size // 64
    if num_heads < 1 or hidden_size % num_heads:
        raise ModelError(f"{path}: {num_heads} attention heads do not divide hidden {hidden_size}")

    if task == "nlvr2" and modality_types != 3:
        # transformers gives the two NLVR2 images modality types 1 and 2 (text is 0).
        raise ModelError(
            f"{path}: an NLVR2 checkpoint needs 3 modality type embeddings, it has {modality_types}"
        )

    return ViltConfig(
        vocab_size=vocab_size,
        type_vocab_size=type_vocab_size,
        modality_type_vocab_size=modality_types,
        max_position_embeddings=max_positions,
        hidden_size=hidden_size,
        num_hidden_layers=len(layers),
        num_attention_heads=num_heads,
        intermediate_size=intermediate_size,
        hidden_act="gelu",  # timm's nn.GELU: the exact erf form, as transformers' "gelu"
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
        layer_norm_eps=1e-12,  # see the module docstring
        image_size=patch_size * grid,
        patch_size=patch_size,
        num_channels=num_channels,
        qkv_bias=True,
        max_image_length=-1,
        num_images=2 if task == "nlvr2" else -1,
        pad_token_id=0,  # BERT's [PAD], as in ViLT's text embeddings
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: index for index, label in enumerate(labels)},
    )


def _check_against_model(path: Path, task: str, config: Any, state_dict: dict[str, Any]) -> None:
    """Compare names and shapes with the target class, built on the meta device (no memory)."""
    import torch
    from transformers import ViltForImagesAndTextClassification, ViltForQuestionAnswering

    cls = ViltForQuestionAnswering if task == "vqa" else ViltForImagesAndTextClassification
    with torch.device("meta"):
        expected = {key: tuple(value.shape) for key, value in cls(config).state_dict().items()}
    missing = sorted(set(expected) - set(state_dict))
    if missing:
        raise ModelError(
            f"{path}: lacks {len(missing)} weight(s) of a ViLT {task.upper()} model, "
            f"e.g. {missing[0]} (an incomplete ViLT checkpoint)"
        )
    for key, tensor in state_dict.items():
        if key not in expected:
            raise ModelError(f"{path}: maps to {key}, which a ViLT {task.upper()} model lacks")
        if tuple(tensor.shape) != expected[key]:
            raise ModelError(
                f"{path}: {key} has shape {tuple(tensor.shape)}, but the config read off the "
                f"other weights needs {expected[key]}"
            )

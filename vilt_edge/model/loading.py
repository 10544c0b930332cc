"""Load a trained ViLT from whatever the user has, as an exact, exportable model.

    from vilt_edge.model.loading import load_model
    loaded = load_model("path/to/hf-vilt-dir")      # or a .ckpt, a hub id, or "default"
    loaded.model(input_ids=..., attention_mask=..., pixel_values=...).logits

Sources: (a) a Hugging Face ViLT directory (config.json, safetensors or bin weights, tokenizer
files, preprocessor_config.json); (b) an original ViLT Lightning `.ckpt` (with id2label.json and
tokenizer.json beside it, which the checkpoint does not carry); (c) a hub id, downloaded where
the hub is reachable; (d) `default`, the easy-VQA model shipped inside the package.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Preprocessing, sha256_file
from vilt_edge.errors import ModelError, first_line
from vilt_edge.paths import DEFAULT_WEIGHTS_DIR

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_TASK_FOR_ARCHITECTURE = {
    "ViltForQuestionAnswering": "vqa",
    "ViltForImagesAndTextClassification": "nlvr2",
    # Saved by vilt-edge's own exact classes (same weights and config as transformers').
    "ExactViltForQuestionAnswering": "vqa",
    "ExactViltForImagesAndTextClassification": "nlvr2",
}


@dataclass
class LoadedModel:
    task: str  # "vqa" | "nlvr2"
    model: Any  # an ExactVilt* torch module in eval mode
    tokenizer_json: str  # serialized `tokenizers` tokenizer
    preprocessing: Preprocessing
    labels: list[str]
    source: dict[str, str]  # {"model": ..., "kind": ..., "sha256": ...}

    @property
    def config(self):
        return self.model.config

    @property
    def text_length(self) -> int:
        return int(self.config.max_position_embeddings)

    @property
    def num_images(self) -> int:
        return 2 if self.task == "nlvr2" else 1

    @property
    def patch_size(self) -> int:
        return int(self.config.patch_size)


def load_model(source: str | os.PathLike) -> LoadedModel:
    """Load a ViLT from a directory, a Lightning .ckpt, a hub id, or "default"."""
    text = str(source)
    if text == "default":
        if not (DEFAULT_WEIGHTS_DIR / "config.json").is_file():
            raise ModelError(
                "the embedded default model is not in this installation "
                f"({DEFAULT_WEIGHTS_DIR}); train it with `vilt-edge train-default`"
            )
        loaded = _load_hf_directory(DEFAULT_WEIGHTS_DIR)
        loaded.source["model"] = "default"
        loaded.source["kind"] = "default"
        return loaded
    path = Path(text).expanduser()
    if path.is_dir():
        return _load_hf_directory(path)
    if path.is_file():
        if path.suffix in (".ckpt", ".pt", ".pth"):
            return _load_lightning(path)
        raise ModelError(f"{path}: not a ViLT model (expected a directory or a .ckpt file)")
    if _HUB_ID.match(text) and not text.startswith((".", "/")):
        return _load_hub(text)
    raise ModelError(f"model not found: {text}")


def _task_of(config, where: Path) -> str:
    if getattr(config, "model_type", None) != "vilt":
        raise ModelError(f"{where}: not a ViLT model (model_type {config.model_type!r})")
    for architecture in config.architectures or []:
        if architecture in _TASK_FOR_ARCHITECTURE:
            return _TASK_FOR_ARCHITECTURE[architecture]
    if (config.architectures or []) == []:
        return "nlvr2" if getattr(config, "num_images", -1) == 2 else "vqa"
    raise ModelError(
        f"{where}: a {', '.join(config.architectures)} has no VQA or NLVR2 head; vilt-edge needs "
        "ViltForQuestionAnswering or ViltForImagesAndTextClassification"
    )


def _preprocessing_from(directory: Path, patch_size: int) -> Preprocessing:
    path = directory / "preprocessor_config.json"
    if not path.is_file():
        return Preprocessing.for_shortest_edge(384, patch_size)
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"{path}: not valid JSON") from None
    size = data.get("size") or {}
    shortest = int(size.get("shortest_edge", 384)) if isinstance(size, dict) else int(size)
    resample = {0: "nearest", 2: "bilinear", 3: "bicubic"}.get(int(data.get("resample", 3)))
    if resample is None:
        raise ModelError(f"{path}: unsupported resample {data.get('resample')!r}")
    mean = data.get("image_mean", [0.5, 0.5, 0.5])
    std = data.get("image_std", [0.5, 0.5, 0.5])
    return Preprocessing.for_shortest_edge(
        shortest,
        int(data.get("size_divisor", patch_size)),
        resample=resample,
        rescale_factor=float(data.get("rescale_factor", 1 / 255)),
        image_mean=tuple(float(v) for v in mean),
        image_std=tuple(float(v) for v in std),
    )


def _tokenizer_json_from(directory: Path) -> str:
    tokenizer_file = directory / "tokenizer.json"
    if tokenizer_file.is_file():
        return tokenizer_file.read_text(encoding="utf-8")
    if (directory / "vocab.txt").is_file():
        # Older ViLT directories only carry a BERT vocab; the fast tokenizer builds the same
        # word-piece pipeline from it.
        from transformers import BertTokenizerFast

        tokenizer = BertTokenizerFast(vocab_file=str(directory / "vocab.txt"), do_lower_case=True)
        return tokenizer.backend_tokenizer.to_str()
    raise ModelError(f"{directory}: no tokenizer (tokenizer.json or vocab.txt)")


def _labels_from(config, task: str) -> list[str]:
    labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    if task == "nlvr2" and sorted(labels) != ["False", "True"]:
        # Converted NLVR2 models label index 1 as True; keep that convention explicit.
        labels = ["False", "True"]
    return labels


def _load_hf_directory(directory: Path) -> LoadedModel:
    from transformers import ViltConfig
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()

    from vilt_edge.model.modeling import EXACT_CLASS_FOR_TASK

    config_file = directory / "config.json"
    if not config_file.is_file():
        raise ModelError(f"{directory}: not a ViLT model directory (no config.json)")
    try:
        raw = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise ModelError(f"{config_file}: not valid JSON") from None
    if raw.get("model_type") != "vilt":
        raise ModelError(f"{directory}: not a ViLT model (model_type {raw.get('model_type')!r})")
    weights = next((directory / n for n in _WEIGHT_FILES if (directory / n).is_file()), None)
    if weights is None:
        raise ModelError(f"{directory}: no weights ({' or '.join(_WEIGHT_FILES)})")
    try:
        config = ViltConfig.from_pretrained(directory)
    except Exception as error:  # transformers raises many types for a bad config
        raise ModelError(f"{config_file}: not a usable ViLT config ({error})") from None
    task = _task_of(config, directory)
    try:
        model = EXACT_CLASS_FOR_TASK[task].from_pretrained(directory, config=config)
    except Exception as error:
        raise ModelError(f"{weights}: could not load weights ({first_line(error)})") from None
    return LoadedModel(
        task=task,
        model=model.eval(),
        tokenizer_json=_tokenizer_json_from(directory),
        preprocessing=_preprocessing_from(directory, int(config.patch_size)),
        labels=_labels_from(config, task),
        source={"model": str(directory), "kind": "hf-directory", "sha256": sha256_file(weights)},
    )


def _load_lightning(path: Path) -> LoadedModel:
    from vilt_edge.model.checkpoint import build_model_from_lightning

    task, model = build_model_from_lightning(path)
    tokenizer_file = path.parent / "tokenizer.json"
    if not tokenizer_file.is_file():
        raise ModelError(
            f"{path}: a ViLT checkpoint carries no tokenizer; put its tokenizer.json "
            "(bert-base-uncased for the released checkpoints) beside it"
        )
    return LoadedModel(
        task=task,
        model=model.eval(),
        tokenizer_json=tokenizer_file.read_text(encoding="utf-8"),
        preprocessing=_preprocessing_from(path.parent, int(model.config.patch_size)),
        labels=_labels_from(model.config, task),
        source={"model": str(path), "kind": "lightning-ckpt", "sha256": sha256_file(path)},
    )


def _load_hub(model_id: str) -> LoadedModel:
    os.environ.setdefault("HF_HUB_ETAG_TIMEOUT", "10")
    os.environ.setdefault("HF_HUB_DOWNLOAD_TIMEOUT", "10")
    try:
        from huggingface_hub import snapshot_download

        directory = snapshot_download(
            model_id,
            allow_patterns=["*.json", "*.safetensors", "*.bin", "vocab.txt"],
        )
    except Exception as error:
        reason = type(error).__name__
        raise ModelError(
            f"could not fetch {model_id!r} from the Hugging Face hub ({reason}); "
            "download it where the hub is reachable and pass the local directory"
        ) from None
    loaded = _load_hf_directory(Path(directory))
    loaded.source.update(model=model_id, kind="hub")
    return loaded

"""Train the embedded default: a small ViLT for easy-VQA, from scratch, on the CPU.

    vilt-edge train-default -o runs/default            # seeded; writes a Hugging Face ViLT dir

The recipe (why each value is what it is):
- easy-VQA's 64x64 images resized to 56x56 (bicubic, exactly as the runtime preprocesses them),
  8x8 patches -> a 7x7 grid, 49 image tokens, and an MLP of 2x hidden (not BERT's 4x): together
  about 1.7x less compute a step than 64x64 with a 4x MLP, so the schedule that reaches >= 95%
  trains in under an hour on 2 CPU cores (measured: training steps are matmul-bound there).
- 6 layers, hidden 192: big enough to be worth distilling to 2 layers later.
- Augmentations that keep every answer true: horizontal flip (colours, shapes and presence do
  not change; triangles stay upright) and small translations with edge-replicated background.
  Without them the model memorises the 4,000 training images and shape questions stall.
- BCE on one-hot answers, as ViLT's VQA head is trained, so sigmoid scores mean something.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from vilt_edge.bundle import Preprocessing
from vilt_edge.data import load_easy_vqa
from vilt_edge.data.vqa import easy_vqa_answers


@dataclass(frozen=True)
class DefaultRecipe:
    hidden_size: int = 192
    num_layers: int = 6
    num_heads: int = 6
    image_size: int = 56  # shorter side after resizing easy-VQA's 64x64 images
    patch_size: int = 8
    intermediate_size: int = 384
    max_text_len: int = 24  # easy-VQA questions are at most 13 word pieces
    vocab_size: int = 400  # at most; the training questions' words and characters (~130)
    epochs: int = 12
    batch_size: int = 64
    peak_lr: float = 3e-4
    weight_decay: float = 0.05
    warmup_fraction: float = 0.1
    max_shift: int = 5  # pixels of random translation
    seed: int = 0
    # bf16 autocast measured slower than fp32 on a 2-core AVX-512-BF16 Xeon (0.81 vs 0.60 s a
    # step at batch 64), so it is off by default.
    autocast_bf16: bool = False

    def __post_init__(self) -> None:
        if self.hidden_size % self.num_heads:
            raise ValueError("hidden_size must be a multiple of num_heads")
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")


def train_tokenizer(questions: list[str], vocab_size: int):
    """A BERT-style uncased WordPiece tokenizer whose vocabulary is the training questions' words.

    Built with `tokenizers`' own BERT normalizer and pre-tokenizer: the vocabulary is the special
    tokens, the most frequent words (ties by spelling) and every character alone and as a
    `##` continuation, so any word still tokenizes. Not `WordPieceTrainer`: it numbers equally
    frequent pieces, and picks among equally frequent merges, in hash-map order, so two runs
    gave different vocabularies (measured: 4 of 121 pieces differed) and the seeded training
    was not reproducible. easy-VQA has about 80 distinct words, so whole words lose nothing.
    """
    from collections import Counter

    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    special = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    normalizer = normalizers.BertNormalizer(lowercase=True)
    pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    counts: Counter[str] = Counter()
    for question in questions:
        words = pre_tokenizer.pre_tokenize_str(normalizer.normalize_str(question))
        counts.update(word for word, _ in words)
    characters = sorted({c for word in counts for c in word})
    alphabet = characters + ["##" + c for c in characters]
    room = max(0, vocab_size - len(special) - len(alphabet))
    words = [w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))][:room]
    ordered = list(dict.fromkeys(special + sorted(words) + alphabet))
    tokenizer = Tokenizer(
        models.WordPiece(vocab={t: i for i, t in enumerate(ordered)}, unk_token="[UNK]")
    )
    tokenizer.normalizer = normalizer
    tokenizer.pre_tokenizer = pre_tokenizer
    tokenizer.decoder = decoders.WordPiece()
    cls_id, sep_id = tokenizer.token_to_id("[CLS]"), tokenizer.token_to_id("[SEP]")
    tokenizer.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    return tokenizer


def _encode(tokenizer, questions: list[str], length: int) -> tuple[np.ndarray, np.ndarray]:
    tokenizer.enable_truncation(length)
    tokenizer.enable_padding(length=length, pad_id=tokenizer.token_to_id("[PAD]"))
    encodings = tokenizer.encode_batch(questions)
    tokenizer.no_padding()
    tokenizer.no_truncation()
    ids = np.array([e.ids for e in encodings], dtype=np.int64)
    mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
    return ids, mask


def _load_images(paths: list[str], size: int) -> tuple[np.ndarray, dict[str, int]]:
    """Decode and resize (PIL bicubic, as `vilt_edge.preprocess` does at inference) once."""
    from PIL import Image

    def load(path: str) -> np.ndarray:
        image = Image.open(path).convert("RGB")
        if image.size != (size, size):
            image = image.resize((size, size), resample=Image.Resampling.BICUBIC)
        return np.asarray(image)

    unique = sorted(set(paths))
    index = {path: i for i, path in enumerate(unique)}
    pixels = np.stack([load(p) for p in unique])
    return pixels.transpose(0, 3, 1, 2).copy(), index  # (N, 3, H, W) uint8


def adamw(model, lr: float, weight_decay: float):
    """AdamW with weight decay on the matrices only (not biases, LayerNorms or embeddings, as
    BERT-style models are trained)."""
    import torch

    decay, no_decay = [], []
    for name, param in model.named_parameters():
        (no_decay if param.ndim < 2 or "embeddings" in name else decay).append(param)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=lr,
    )


def write_hf_directory(model, tokenizer, recipe: DefaultRecipe, labels: list[str], out: Path):
    """Save as a standard Hugging Face ViLT directory that transformers loads as-is."""
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    # save_pretrained records the exact subclass; name transformers' class so any
    # transformers install loads the directory as a plain ViltForQuestionAnswering.
    config = json.loads((out / "config.json").read_text())
    config["architectures"] = ["ViltForQuestionAnswering"]
    (out / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    tokenizer.save(str(out / "tokenizer.json"))
    vocab = sorted(tokenizer.get_vocab().items(), key=lambda item: item[1])
    (out / "vocab.txt").write_text("".join(token + "\n" for token, _ in vocab))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "BertTokenizer",
                "do_lower_case": True,
                "model_max_length": recipe.max_text_len,
                "pad_token": "[PAD]",
                "unk_token": "[UNK]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
    )
    (out / "special_tokens_map.json").write_text(
        json.dumps(
            {
                "pad_token": "[PAD]",
                "unk_token": "[UNK]",
                "cls_token": "[CLS]",
                "sep_token": "[SEP]",
                "mask_token": "[MASK]",
            },
            indent=2,
        )
    )
    settings = Preprocessing.for_shortest_edge(recipe.image_size, recipe.patch_size)
    (out / "preprocessor_config.json").write_text(json.dumps(settings.to_hf_config(), indent=2))
    (out / "training_recipe.json").write_text(json.dumps(asdict(recipe), indent=2))


def evaluate(model, pixels, image_rows, ids, mask, answer_ids, batch_size=256) -> np.ndarray:
    """Per-question correctness (top-1 == the answer) of the model on preprocessed data."""
    import torch

    model.eval()
    correct = np.zeros(len(ids), dtype=bool)
    with torch.no_grad():
        for start in range(0, len(ids), batch_size):
            rows = slice(start, start + batch_size)
            images = torch.from_numpy(pixels[image_rows[rows]]).float() / 127.5 - 1.0
            logits = model(
                input_ids=torch.from_numpy(ids[rows]),
                attention_mask=torch.from_numpy(mask[rows]),
                pixel_values=images,
            ).logits
            correct[rows] = logits.argmax(-1).numpy() == answer_ids[rows]
    model.train()
    return correct


def train_default(
    out_dir: Path,
    recipe: DefaultRecipe = DefaultRecipe(),
    max_steps: int | None = None,
    eval_every_epochs: int = 0,
    progress: bool = True,
    init_from: Path | None = None,
) -> dict:
    """Train (or, with `init_from`, continue training a previous run's directory with a fresh
    one-cycle schedule) and write a Hugging Face ViLT directory to `out_dir`."""
    import torch
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers import ViltConfig

    from vilt_edge.model.modeling import ExactViltForQuestionAnswering

    torch.manual_seed(recipe.seed)
    rng = np.random.default_rng(recipe.seed)
    labels = easy_vqa_answers()
    label_index = {answer: i for i, answer in enumerate(labels)}

    train = load_easy_vqa("train")
    test = load_easy_vqa("test")
    if init_from is not None:
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(Path(init_from) / "tokenizer.json"))
    else:
        tokenizer = train_tokenizer([e.question for e in train], recipe.vocab_size)

    train_pixels, train_index = _load_images([e.image_path for e in train], recipe.image_size)
    test_pixels, test_index = _load_images([e.image_path for e in test], recipe.image_size)
    train_rows = np.array([train_index[e.image_path] for e in train])
    test_rows = np.array([test_index[e.image_path] for e in test])
    train_ids, train_mask = _encode(tokenizer, [e.question for e in train], recipe.max_text_len)
    test_ids, test_mask = _encode(tokenizer, [e.question for e in test], recipe.max_text_len)
    train_answers = np.array([label_index[e.answers[0]] for e in train])
    test_answers = np.array([label_index[e.answers[0]] for e in test])

    config = ViltConfig(
        vocab_size=tokenizer.get_vocab_size(),
        hidden_size=recipe.hidden_size,
        num_hidden_layers=recipe.num_layers,
        num_attention_heads=recipe.num_heads,
        intermediate_size=recipe.intermediate_size,
        image_size=recipe.image_size,
        patch_size=recipe.patch_size,
        max_position_embeddings=recipe.max_text_len,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id=label_index,
        pad_token_id=tokenizer.token_to_id("[PAD]"),
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    if init_from is not None:
        model = ExactViltForQuestionAnswering.from_pretrained(init_from)
    else:
        model = ExactViltForQuestionAnswering(config)
    model.train()

    steps_per_epoch = len(train) // recipe.batch_size
    total_steps = steps_per_epoch * recipe.epochs if max_steps is None else max_steps
    optimizer = adamw(model, recipe.peak_lr, recipe.weight_decay)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer,
        max_lr=recipe.peak_lr,
        total_steps=total_steps,
        pct_start=recipe.warmup_fraction,
        anneal_strategy="cos",
    )
    shift = recipe.max_shift
    size = recipe.image_size
    history = []
    started = time.time()
    step = 0
    columns = (
        TextColumn("[bold]train-default"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} {task.fields[status]}"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, disable=not progress) as bar:
        task = bar.add_task("train", total=total_steps, status="")
        while step < total_steps:
            order = rng.permutation(len(train))
            for batch_start in range(0, steps_per_epoch * recipe.batch_size, recipe.batch_size):
                if step >= total_steps:
                    break
                rows = order[batch_start : batch_start + recipe.batch_size]
                images = torch.from_numpy(train_pixels[train_rows[rows]]).float()
                flip = torch.from_numpy(rng.random(len(rows)) < 0.5)
                images[flip] = images[flip].flip(-1)
                if shift:
                    padded = torch.nn.functional.pad(images, (shift,) * 4, mode="replicate")
                    offsets = rng.integers(0, 2 * shift + 1, size=(len(rows), 2))
                    images = torch.stack(
                        [
                            padded[i, :, dy : dy + size, dx : dx + size]
                            for i, (dy, dx) in enumerate(offsets)
                        ]
                    )
                images = images / 127.5 - 1.0
                targets = torch.zeros(len(rows), len(labels))
                targets[torch.arange(len(rows)), torch.from_numpy(train_answers[rows])] = 1.0
                # Padding is masked out, so each batch only needs its longest question's length.
                length = int(train_mask[rows].sum(1).max())
                with torch.autocast("cpu", dtype=torch.bfloat16, enabled=recipe.autocast_bf16):
                    logits = model(
                        input_ids=torch.from_numpy(train_ids[rows, :length]),
                        attention_mask=torch.from_numpy(train_mask[rows, :length]),
                        pixel_values=images,
                    ).logits
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits.float(), targets
                ) * len(labels)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                optimizer.step()
                scheduler.step()
                step += 1
                bar.update(task, advance=1, status=f"loss {loss.item():.3f}")
            epoch = step / steps_per_epoch
            if eval_every_epochs and round(epoch) % eval_every_epochs == 0:
                correct = evaluate(model, test_pixels, test_rows, test_ids, test_mask, test_answers)
                history.append({"step": step, "epoch": round(epoch, 2), "test_acc": correct.mean()})
                bar.console.print(
                    f"epoch {epoch:.1f}: test accuracy {correct.mean():.4f} "
                    f"({time.time() - started:.0f} s)"
                )
                # A usable snapshot survives an interrupted run.
                _publish(model, tokenizer, recipe, labels, out_dir / "snapshot")
    train_seconds = time.time() - started
    model.eval()
    correct = evaluate(model, test_pixels, test_rows, test_ids, test_mask, test_answers)
    by_type = {}
    for answer_type in ("yes/no", "color", "shape"):
        chosen = np.array([e.answer_type == answer_type for e in test])
        by_type[answer_type] = float(correct[chosen].mean())
    summary = {
        "test_accuracy": float(correct.mean()),
        "test_accuracy_by_type": by_type,
        "test_questions": len(test),
        "train_seconds": round(train_seconds, 1),
        "steps": step,
        "threads": torch.get_num_threads(),
        "history": [{k: float(v) for k, v in h.items()} for h in history],
    }
    _publish(model, tokenizer, recipe, labels, out_dir, summary)
    return summary


def _publish(model, tokenizer, recipe, labels, out: Path, summary: dict | None = None) -> None:
    """Write the model directory into a staging sibling, then move its files into `out` with
    config.json (what marks a model directory) last: an interrupted write leaves no directory
    that loads as a half-written model."""
    from vilt_edge.outputs import staged_files

    with staged_files(out, last="config.json") as staging:
        write_hf_directory(model, tokenizer, recipe, labels, staging)
        if summary is not None:
            (staging / "training_summary.json").write_text(json.dumps(summary, indent=2))


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-o", "--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=DefaultRecipe.epochs)
    parser.add_argument("--max-steps", type=int, default=None)
    parser.add_argument("--eval-every", type=int, default=0)
    parser.add_argument("--peak-lr", type=float, default=DefaultRecipe.peak_lr)
    parser.add_argument("--init-from", type=Path, default=None)
    args = parser.parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    result = train_default(
        args.out,
        DefaultRecipe(epochs=args.epochs, peak_lr=args.peak_lr),
        args.max_steps,
        args.eval_every,
        init_from=args.init_from,
    )
    print(json.dumps({k: v for k, v in result.items() if k != "history"}, indent=2))

"""The run directory: its fingerprint, checks, checkpoints, and the student written into it."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

from vilt_edge.distill.options import (
    CHECKPOINT_FILE,
    RUN_FILE,
    STATE_DIR,
    SUMMARY_FILE,
    DistillOptions,
)
from vilt_edge.errors import InputError
from vilt_edge.outputs import staged_files, write_file_atomically

# Files of a Hugging Face ViLT directory the student is written as (config.json last, so a
# directory with a config.json is a complete student).
_STUDENT_FILES_LAST = "config.json"
_TEACHER_SIDE_FILES = (
    "tokenizer.json",
    "vocab.txt",
    "tokenizer_config.json",
    "special_tokens_map.json",
)


def fingerprint(teacher_sha256: str, options: DistillOptions) -> str:
    text = json.dumps({"teacher": teacher_sha256, **options.recipe()}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _differences(old: dict, new: dict) -> list[str]:
    keys = sorted(set(old) | set(new))
    return [k for k in keys if old.get(k) != new.get(k)]


def prepare_out_dir(out: Path, run: dict, resume: bool) -> str:
    """'new', 'restart' (a previous run of this same distillation, not resumed) or 'resume'."""
    state = out / STATE_DIR
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()):
        run_file = state / RUN_FILE
        if not run_file.is_file():
            raise InputError(
                f"{out} exists and is not a vilt-edge distill run directory; choose a new -o "
                "(nothing is overwritten)"
            )
        try:
            previous = json.loads(run_file.read_text())
        except (OSError, json.JSONDecodeError):
            raise InputError(f"{run_file} is unreadable; choose a new -o") from None
        if previous.get("fingerprint") != run["fingerprint"]:
            changed = _differences(
                {"teacher": previous.get("teacher_sha256"), **previous.get("recipe", {})},
                {"teacher": run["teacher_sha256"], **run["recipe"]},
            )
            raise InputError(
                f"{out} holds a distillation of another configuration (differs in: "
                f"{', '.join(changed) or 'version'}); choose a new -o"
            )
        if resume:
            if (out / SUMMARY_FILE).is_file():
                return "finished"
            if not (state / CHECKPOINT_FILE).is_file():
                raise InputError(f"{out} has no checkpoint to resume (the run saved none yet)")
            return "resume"
        return "restart"
    if resume:
        raise InputError(f"--resume: {out} has no checkpoint to resume")
    return "new"


def _atomic_torch_save(obj, path: Path) -> None:
    import torch

    write_file_atomically(path, lambda temp: torch.save(obj, temp))


def _clear_student_files(out: Path) -> None:
    """A restart removes the previous run's student (config.json first, so nothing half-old
    loads) but keeps the run directory."""
    for name in [_STUDENT_FILES_LAST, SUMMARY_FILE]:
        (out / name).unlink(missing_ok=True)
    for path in out.iterdir():
        if path.name == STATE_DIR:
            continue
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    (out / STATE_DIR / CHECKPOINT_FILE).unlink(missing_ok=True)


def write_student(
    student, teacher_dir_files: dict[str, bytes], preprocessor: dict, out: Path, summary: dict
) -> None:
    """The student as a Hugging Face ViLT directory; config.json is renamed into place last."""
    with staged_files(out, last=_STUDENT_FILES_LAST) as staging:
        student.save_pretrained(staging)
        config = json.loads((staging / "config.json").read_text())
        config["architectures"] = [type(student).__mro__[1].__name__]  # transformers' class
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
        for name, content in teacher_dir_files.items():
            (staging / name).write_bytes(content)
        (staging / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
        (staging / SUMMARY_FILE).write_text(json.dumps(summary, indent=2))


def _tokenizer_files(loaded) -> dict[str, bytes]:
    files = {"tokenizer.json": loaded.tokenizer_json.encode("utf-8")}
    source = Path(loaded.source.get("model", ""))
    directory = source if source.is_dir() else None
    if loaded.source.get("kind") == "default":
        from vilt_edge.paths import DEFAULT_WEIGHTS_DIR

        directory = DEFAULT_WEIGHTS_DIR
    if directory is not None:
        for name in _TEACHER_SIDE_FILES[1:]:
            if (directory / name).is_file():
                files[name] = (directory / name).read_bytes()
    return files

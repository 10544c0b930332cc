"""VQA data in the layouts users have: easy-VQA (the PyPI package), VQA v2 (the official
files and image folders) and their own frames (a JSON-lines file of images and questions).

    from vilt_edge.data.vqa import load_easy_vqa, load_frames, load_vqav2
    examples = load_vqav2("data/vqav2", split="val2014")

Torch-free: examples are plain records; image decoding happens in `vilt_edge.preprocess`.
Input a user can get wrong (missing files, malformed JSON, unknown labels) raises `DataError`
with one line that names the file and, where there is one, the field or line.
"""

from __future__ import annotations

import fnmatch
import glob
import os
import re
from pathlib import Path
from typing import Any

from vilt_edge.data.files import VqaExample, _field, _jsonl_records, _list_field, _read_json
from vilt_edge.errors import DataError


def easy_vqa_answer_type(question: str, answer: str) -> str:
    """easy-VQA questions are about colour, shape, or yes/no presence."""
    if answer in ("yes", "no"):
        return "yes/no"
    return "color" if "color" in question else "shape"


def load_easy_vqa(split: str = "test") -> list[VqaExample]:
    """All questions of one easy-VQA split ("train": 38,575; "test": 9,673)."""
    if split not in ("train", "test"):
        raise DataError(f"easy-vqa split must be 'train' or 'test', not {split!r}")
    try:
        import easy_vqa
    except ImportError:
        raise DataError("easy-VQA data needs the package: pip install easy-vqa") from None
    if split == "train":
        questions, answers, image_ids = easy_vqa.get_train_questions()
        image_paths = easy_vqa.get_train_image_paths()
    else:
        questions, answers, image_ids = easy_vqa.get_test_questions()
        image_paths = easy_vqa.get_test_image_paths()
    return [
        VqaExample(
            image_path=image_paths[image_id],
            question=question,
            answers=(answer,),
            question_id=f"easy-vqa-{split}-{index}",
            answer_type=easy_vqa_answer_type(question, answer),
        )
        for index, (question, answer, image_id) in enumerate(
            zip(questions, answers, image_ids, strict=True)
        )
    ]


def easy_vqa_answers() -> list[str]:
    import easy_vqa

    return sorted(easy_vqa.get_answers())


# ---------------------------------------------------------------------------------------------
# VQA v2 (official layout: https://visualqa.org/download.html)

_VQAV2_PATTERNS = {
    "questions": "v2_OpenEnded_mscoco_{split}_questions*.json",
    "annotations": "v2_mscoco_{split}_annotations*.json",
}
# Split names read off file names; the lazy group stops at the first "_questions" so names
# with a hyphen ("test-dev2015") and suffixes (".mini.json") both work.
_VQAV2_SPLIT_OF = {
    "questions": re.compile(r"v2_OpenEnded_mscoco_(?P<split>.+?)_questions.*\.json"),
    "annotations": re.compile(r"v2_mscoco_(?P<split>.+?)_annotations.*\.json"),
}
_MISSING_IDS_SHOWN = 5


def _vqav2_file(directory: Path, split: str, kind: str) -> Path:
    """The one questions or annotations file of `split` in `directory`."""
    pattern = _VQAV2_PATTERNS[kind].format(split=split)
    # Escaped so a split name is taken literally, not as a wildcard.
    escaped = _VQAV2_PATTERNS[kind].format(split=glob.escape(split))
    found = sorted(
        path
        for path in directory.iterdir()
        if path.is_file() and fnmatch.fnmatchcase(path.name, escaped)
    )
    if not found:
        raise DataError(
            f"no VQAv2 {kind} file for split {split!r} in {directory} (looked for {pattern})"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise DataError(
            f"several VQAv2 {kind} files for split {split!r} in {directory} ({names}); "
            f"pass {kind}= to choose one"
        )
    return found[0]


def _vqav2_splits(directory: Path) -> list[str]:
    splits = {
        match["split"]
        for path in directory.iterdir()
        for pattern in _VQAV2_SPLIT_OF.values()
        if (match := pattern.fullmatch(path.name))
    }
    if not splits:
        raise DataError(
            f"no VQAv2 questions file in {directory} "
            f"(looked for {_VQAV2_PATTERNS['questions'].format(split='<split>')})"
        )
    return sorted(splits)


def _vqav2_split_name(path: Path, document: Any) -> str:
    subtype = document.get("data_subtype") if isinstance(document, dict) else None
    if not isinstance(subtype, str) or not subtype:
        raise DataError(f"{path} has no 'data_subtype' naming its split; pass split=")
    return subtype


def _load_vqav2_split(
    split: str, questions_path: Path, annotations_path: Path, images: Path, documents: dict
) -> list[VqaExample]:
    questions_doc = documents.pop(questions_path, None) or _read_json(questions_path)
    annotations_doc = documents.pop(annotations_path, None) or _read_json(annotations_path)
    questions = _list_field(questions_doc, "questions", questions_path)
    annotations = _list_field(annotations_doc, "annotations", annotations_path)
    if not questions:
        raise DataError(f"{questions_path}: 'questions' is empty")

    by_question_id = {
        _field(annotation, "question_id", f"{annotations_path}: annotations[{index}]"): annotation
        for index, annotation in enumerate(annotations)
    }
    question_ids = [
        _field(question, "question_id", f"{questions_path}: questions[{index}]")
        for index, question in enumerate(questions)
    ]
    unanswered = [qid for qid in question_ids if qid not in by_question_id]
    if unanswered:
        shown = ", ".join(str(qid) for qid in unanswered[:_MISSING_IDS_SHOWN])
        more = ", ..." if len(unanswered) > _MISSING_IDS_SHOWN else ""
        raise DataError(
            f"{len(unanswered)} question id(s) in {questions_path.name} have no annotation in "
            f"{annotations_path} (first: {shown}{more})"
        )
    if not images.is_dir():
        raise DataError(f"VQAv2 image folder for split {split!r} not found: {images}")

    examples = []
    checked_images: dict[Any, str] = {}
    for index, (question, question_id) in enumerate(zip(questions, question_ids, strict=True)):
        where = f"{questions_path}: questions[{index}]"
        image_id = _field(question, "image_id", where)
        if image_id not in checked_images:
            if not isinstance(image_id, int):
                raise DataError(f"{where}: 'image_id' is not an integer: {image_id!r}")
            image_path = images / f"COCO_{split}_{image_id:012d}.jpg"
            if not image_path.is_file():
                raise DataError(f"VQAv2 image not found: {image_path} (question {question_id})")
            checked_images[image_id] = os.path.abspath(image_path)
        annotation = by_question_id[question_id]
        answer_where = f"{annotations_path}: annotation of question {question_id}"
        answers = _field(annotation, "answers", answer_where)
        if not isinstance(answers, list):
            raise DataError(f"{answer_where}: 'answers' is not a list")
        examples.append(
            VqaExample(
                image_path=checked_images[image_id],
                question=_field(question, "question", where),
                answers=tuple(_field(answer, "answer", answer_where) for answer in answers),
                question_id=str(question_id),
                answer_type=annotation.get("answer_type", ""),
            )
        )
    return examples


def load_vqav2(
    directory: str | os.PathLike | None = None,
    *,
    questions: str | os.PathLike | None = None,
    annotations: str | os.PathLike | None = None,
    images: str | os.PathLike | None = None,
    split: str | None = None,
) -> list[VqaExample]:
    """VQA v2 questions with their ten human answers, in question-file order, split by split.

    The official layout under `directory`::

        v2_OpenEnded_mscoco_<split>_questions*.json   ("questions": image_id, question, ...)
        v2_mscoco_<split>_annotations*.json           ("annotations": answers, answer_type, ...)
        images/<split>/COCO_<split>_<12-digit image id>.jpg

    `split` (e.g. "val2014") picks one split; None loads every split that has a questions or
    annotations file, sorted by name, and each of them needs both. `questions=` and
    `annotations=` name the files of one split directly (the other one, if not given, is found
    in `directory` or else beside the given file); the split is then `split` or the files'
    `data_subtype`. `images=` is the folder that holds the `COCO_<split>_*.jpg` files, for every
    split loaded. Each example's `answers` are the annotation's `answers[*].answer`,
    `question_id` is the official id as a string and `answer_type` is "yes/no", "number" or
    "other". Every image is checked to exist.
    """
    root = Path(directory) if directory is not None else None
    if root is not None and not root.is_dir():
        raise DataError(f"VQAv2 directory not found: {root}")
    documents: dict[Path, Any] = {}
    if questions is None and annotations is None:
        if root is None:
            raise DataError("load_vqav2 needs a directory or questions= and annotations= files")
        splits = [split] if split is not None else _vqav2_splits(root)
        sources = [
            (name, _vqav2_file(root, name, "questions"), _vqav2_file(root, name, "annotations"))
            for name in splits
        ]
    else:
        questions_path = Path(questions) if questions is not None else None
        annotations_path = Path(annotations) if annotations is not None else None
        for path, kind in ((questions_path, "questions"), (annotations_path, "annotations")):
            if path is not None and not path.is_file():
                raise DataError(f"VQAv2 {kind} file not found: {path}")
        given = questions_path or annotations_path
        base = root or given.parent
        if split is None:
            # Kept so the file that names the split is not parsed twice (the official
            # annotation files are hundreds of megabytes).
            documents[given] = _read_json(given)
            split = _vqav2_split_name(given, documents[given])
        sources = [
            (
                split,
                questions_path or _vqav2_file(base, split, "questions"),
                annotations_path or _vqav2_file(base, split, "annotations"),
            )
        ]
    examples: list[VqaExample] = []
    for name, questions_path, annotations_path in sources:
        image_root = root or questions_path.parent
        image_folder = Path(images) if images is not None else image_root / "images" / name
        examples += _load_vqav2_split(
            name, questions_path, annotations_path, image_folder, documents
        )
    return examples


# ---------------------------------------------------------------------------------------------
# Your own frames: a JSON-lines file of images and questions, answers optional


def load_frames(path: str | os.PathLike) -> list[VqaExample]:
    """VQA examples from a JSON-lines file, one per line, in file order:

        {"image": "frames/0001.jpg", "question": "is the door open?", "answers": ["yes"]}

    `image` is relative to the file's folder (or absolute); `answers` (a list of human answers,
    scored with the official VQA metric) or `answer` (one string) is optional: lines without
    either are unlabeled, which distillation and calibration accept and validation refuses.
    `id` and `answer_type` are optional too. Every image is checked to exist.
    """
    source = Path(path)
    if source.is_dir():
        candidates = sorted(source.glob("*.jsonl"))
        if len(candidates) != 1:
            raise DataError(f"{source}: expected one .jsonl file, found {len(candidates)}")
        source = candidates[0]
    elif not source.is_file():
        raise DataError(f"frames file not found: {source}")
    folder = Path(os.path.abspath(source.parent))
    examples = []
    for where, record in _jsonl_records(source):
        image = _field(record, "image", where)
        question = _field(record, "question", where)
        if not isinstance(image, str) or not isinstance(question, str):
            raise DataError(f"{where}: 'image' and 'question' must be strings")
        if not question.strip():
            raise DataError(f"{where}: the question is empty")
        image_path = folder / image
        if not image_path.is_file():
            raise DataError(f"{where}: image not found: {image_path}")
        if "answers" in record:
            answers = record["answers"]
            if not isinstance(answers, list) or not all(isinstance(a, str) for a in answers):
                raise DataError(f"{where}: 'answers' must be a list of strings")
        elif "answer" in record:
            if not isinstance(record["answer"], str):
                raise DataError(f"{where}: 'answer' must be a string")
            answers = [record["answer"]]
        else:
            answers = []
        examples.append(
            VqaExample(
                image_path=os.path.abspath(image_path),
                question=question,
                answers=tuple(answers),
                question_id=str(record.get("id", f"{source.stem}-{len(examples) + 1}")),
                answer_type=str(record.get("answer_type", "")),
            )
        )
    if not examples:
        raise DataError(f"{source} has no examples")
    return examples

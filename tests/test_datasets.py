"""VQA v2 and NLVR2 loaders on the real minis in ../shared/data, and one-line `DataError`s on
broken copies of them made in tmp_path."""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import replace
from pathlib import Path

import pytest

from vilt_edge.data import NlvrExample, VqaExample, load_nlvr2, load_vqav2
from vilt_edge.errors import DataError

VAL_QUESTIONS = "v2_OpenEnded_mscoco_val2014_questions.mini.json"
VAL_ANNOTATIONS = "v2_mscoco_val2014_annotations.mini.json"
TRAIN_QUESTIONS = "v2_OpenEnded_mscoco_train2014_questions.mini.json"
TRAIN_ANNOTATIONS = "v2_mscoco_train2014_annotations.mini.json"


def writable_copy(source: Path, destination: Path) -> Path:
    """Copy a read-only shared folder into files and folders a test may change or delete."""
    for path in sorted(source.rglob("*")):
        target = destination / path.relative_to(source)
        if path.is_dir():
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    return destination


def data_error(call, *fragments: str) -> str:
    """The message of the DataError `call` raises: one line holding every fragment."""
    with pytest.raises(DataError) as error:
        call()
    message = str(error.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


@pytest.fixture
def vqav2(shared_data) -> Path:
    return shared_data / "vqav2-mini"


@pytest.fixture
def vqav2_copy(vqav2, tmp_path) -> Path:
    return writable_copy(vqav2, tmp_path / "vqav2")


@pytest.fixture
def nlvr2(shared_data) -> Path:
    return shared_data / "nlvr2-mini"


@pytest.fixture
def nlvr2_copy(nlvr2, tmp_path) -> Path:
    return writable_copy(nlvr2, tmp_path / "nlvr2")


# ---------------------------------------------------------------------------------- VQA v2


def test_vqav2_loads_every_split(vqav2):
    examples = load_vqav2(vqav2)
    assert len(examples) == 13
    # Splits in name order, questions in file order.
    first_ids = ["458752000", "458752001", "458752002", "262148000"]
    assert [example.question_id for example in examples[:4]] == first_ids
    for example in examples:
        assert isinstance(example, VqaExample)
        assert len(example.answers) == 10
        assert example.answer_type in {"yes/no", "number", "other"}
        assert os.path.isabs(example.image_path) and os.path.isfile(example.image_path)
        split = "train2014" if example.question_id.startswith("458752") else "val2014"
        image_id = int(example.question_id) // 1000
        assert example.image_path.endswith(f"images/{split}/COCO_{split}_{image_id:012d}.jpg")


def test_vqav2_example_fields(vqav2):
    examples = {example.question_id: example for example in load_vqav2(vqav2, split="val2014")}
    assert len(examples) == 10
    example = examples["262148000"]
    assert example.question == "Where is he looking?"
    assert example.answers[:4] == ("down", "down", "at table", "skateboard")
    assert example.answer_type == "other"
    assert examples["393225001"].answer_type == "yes/no"
    assert Path(example.image_path) == (vqav2 / "images/val2014/COCO_val2014_000000262148.jpg")


def test_vqav2_one_split(vqav2):
    examples = load_vqav2(vqav2, split="train2014")
    assert [example.question_id for example in examples] == [
        "458752000",
        "458752001",
        "458752002",
    ]


def test_vqav2_explicit_files(vqav2, tmp_path):
    # The split comes from the files' data_subtype; the images from the images= folder.
    images = writable_copy(vqav2 / "images" / "val2014", tmp_path / "anywhere")
    examples = load_vqav2(
        questions=vqav2 / VAL_QUESTIONS, annotations=vqav2 / VAL_ANNOTATIONS, images=images
    )
    assert len(examples) == 10
    assert all(Path(example.image_path).parent == images for example in examples)
    from_layout = load_vqav2(vqav2, split="val2014")
    assert [replace(example, image_path="") for example in examples] == [
        replace(example, image_path="") for example in from_layout
    ]


def test_vqav2_one_explicit_file_finds_its_partner(vqav2):
    examples = load_vqav2(annotations=vqav2 / TRAIN_ANNOTATIONS)
    assert len(examples) == 3
    assert examples == load_vqav2(vqav2, split="train2014")


def test_vqav2_explicit_split_overrides_data_subtype(vqav2_copy):
    # A copy whose data_subtype is wrong still loads when split= says which split it is.
    for name in (VAL_QUESTIONS, VAL_ANNOTATIONS):
        path = vqav2_copy / name
        document = json.loads(path.read_text())
        document["data_subtype"] = "nonsense"
        path.write_text(json.dumps(document))
    examples = load_vqav2(
        questions=vqav2_copy / VAL_QUESTIONS,
        annotations=vqav2_copy / VAL_ANNOTATIONS,
        split="val2014",
    )
    assert len(examples) == 10


def test_vqav2_missing_directory(tmp_path):
    missing = tmp_path / "nowhere"
    data_error(lambda: load_vqav2(missing), "directory not found", str(missing))
    data_error(lambda: load_vqav2(), "needs a directory")


def test_vqav2_empty_directory(tmp_path):
    data_error(
        lambda: load_vqav2(tmp_path),
        "no VQAv2 questions file",
        "v2_OpenEnded_mscoco_<split>_questions*.json",
    )


def test_vqav2_split_without_questions_file(vqav2_copy):
    (vqav2_copy / VAL_QUESTIONS).unlink()
    data_error(
        lambda: load_vqav2(vqav2_copy),
        "no VQAv2 questions file for split 'val2014'",
        "v2_OpenEnded_mscoco_val2014_questions*.json",
    )
    # The other split is still usable on its own.
    assert len(load_vqav2(vqav2_copy, split="train2014")) == 3


def test_vqav2_split_without_annotations_file(vqav2_copy):
    (vqav2_copy / TRAIN_ANNOTATIONS).unlink()
    data_error(
        lambda: load_vqav2(vqav2_copy),
        "no VQAv2 annotations file for split 'train2014'",
        "v2_mscoco_train2014_annotations*.json",
    )


def test_vqav2_unknown_split(vqav2):
    data_error(
        lambda: load_vqav2(vqav2, split="test2015"),
        "no VQAv2 questions file for split 'test2015'",
    )


def test_vqav2_two_questions_files_for_one_split(vqav2_copy):
    shutil.copyfile(
        vqav2_copy / VAL_QUESTIONS, vqav2_copy / "v2_OpenEnded_mscoco_val2014_questions.json"
    )
    data_error(
        lambda: load_vqav2(vqav2_copy, split="val2014"),
        "several VQAv2 questions files",
        VAL_QUESTIONS,
        "questions=",
    )


def test_vqav2_missing_image(vqav2_copy):
    (vqav2_copy / "images/val2014/COCO_val2014_000000000042.jpg").unlink()
    data_error(lambda: load_vqav2(vqav2_copy), "COCO_val2014_000000000042.jpg", "not found")


def test_vqav2_missing_image_folder(vqav2_copy, tmp_path):
    missing = tmp_path / "no-images"
    data_error(lambda: load_vqav2(vqav2_copy, images=missing), "image folder", str(missing))


def test_vqav2_questions_without_annotations(vqav2_copy):
    path = vqav2_copy / VAL_ANNOTATIONS
    document = json.loads(path.read_text())
    kept = [a for a in document["annotations"] if a["image_id"] != 393225]
    assert len(document["annotations"]) - len(kept) == 4
    document["annotations"] = kept
    path.write_text(json.dumps(document))
    message = data_error(
        lambda: load_vqav2(vqav2_copy),
        "4 question id(s)",
        "no annotation",
        VAL_ANNOTATIONS,
        "393225000, 393225001",
    )
    assert re.search(r"first: 393225000, 393225001, 393225002, 393225003\)", message)


def test_vqav2_malformed_json(vqav2_copy):
    path = vqav2_copy / VAL_ANNOTATIONS
    path.write_text(path.read_text()[:500])
    data_error(lambda: load_vqav2(vqav2_copy), str(path), "not valid JSON")


def test_vqav2_missing_field(vqav2_copy):
    path = vqav2_copy / TRAIN_QUESTIONS
    document = json.loads(path.read_text())
    del document["questions"][1]["image_id"]
    path.write_text(json.dumps(document))
    data_error(lambda: load_vqav2(vqav2_copy), str(path), "questions[1]", "'image_id'")

    path.write_text(json.dumps({"info": {}}))
    data_error(lambda: load_vqav2(vqav2_copy), str(path), "'questions'")


def test_vqav2_explicit_file_missing(vqav2, tmp_path):
    missing = tmp_path / "questions.json"
    data_error(
        lambda: load_vqav2(questions=missing, annotations=vqav2 / VAL_ANNOTATIONS),
        "questions file not found",
        str(missing),
    )


def test_vqav2_explicit_file_without_split(vqav2_copy):
    path = vqav2_copy / VAL_QUESTIONS
    document = json.loads(path.read_text())
    del document["data_subtype"]
    path.write_text(json.dumps(document))
    data_error(lambda: load_vqav2(questions=path), str(path), "data_subtype", "split=")


# ----------------------------------------------------------------------------------- NLVR2


def check_mini_examples(examples: list[NlvrExample], image_folder: Path) -> None:
    assert len(examples) == 16
    assert sum(example.label for example in examples) == 8
    first = examples[0]
    assert first.identifier == "dev-850-0-0"
    assert first.sentence.startswith("The right image shows a curving walkway")
    assert first.label is False
    for example in examples:
        stem = example.identifier.rsplit("-", 1)[0]
        assert Path(example.left_image) == image_folder / f"{stem}-img0.png"
        assert Path(example.right_image) == image_folder / f"{stem}-img1.png"
        assert os.path.isabs(example.left_image) and os.path.isabs(example.right_image)


def test_nlvr2_from_file_and_directory(nlvr2):
    from_file = load_nlvr2(nlvr2 / "examples.jsonl")
    check_mini_examples(from_file, nlvr2 / "images")
    assert load_nlvr2(nlvr2) == from_file
    assert load_nlvr2(str(nlvr2)) == from_file


def without_image_fields(jsonl: Path) -> None:
    """Rewrite a jsonl like the official release's: no image paths in the lines."""
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    for record in records:
        del record["left_image"], record["right_image"]
    jsonl.write_text("\n".join(json.dumps(record) for record in records) + "\n")


def test_nlvr2_official_style_images_under_images(nlvr2, nlvr2_copy):
    without_image_fields(nlvr2_copy / "examples.jsonl")
    official = load_nlvr2(nlvr2_copy / "examples.jsonl")
    check_mini_examples(official, nlvr2_copy / "images")
    expected = load_nlvr2(nlvr2)
    assert [(e.identifier, e.sentence, e.label) for e in official] == [
        (e.identifier, e.sentence, e.label) for e in expected
    ]


def test_nlvr2_official_style_images_beside_the_file(nlvr2_copy):
    without_image_fields(nlvr2_copy / "examples.jsonl")
    for image in (nlvr2_copy / "images").iterdir():
        image.rename(nlvr2_copy / image.name)
    check_mini_examples(load_nlvr2(nlvr2_copy), nlvr2_copy)


def test_nlvr2_official_style_images_in_split_and_numbered_folders(nlvr2_copy):
    # Official release layout: dev/ and test1/ folders, train images in numbered subfolders.
    without_image_fields(nlvr2_copy / "examples.jsonl")
    (nlvr2_copy / "test1").mkdir()
    (nlvr2_copy / "images" / "train" / "7").mkdir(parents=True)
    for image in (nlvr2_copy / "images").glob("*.png"):
        folder = "test1" if image.name.startswith("test1") else "images/train/7"
        image.rename(nlvr2_copy / folder / image.name)
    examples = load_nlvr2(nlvr2_copy)
    assert Path(examples[0].left_image) == nlvr2_copy / "images/train/7/dev-850-0-img0.png"
    assert Path(examples[-1].left_image) == nlvr2_copy / "test1/test1-0-3-img0.png"


def rewrite_line(jsonl: Path, index: int, change) -> None:
    lines = jsonl.read_text().splitlines()
    record = json.loads(lines[index])
    change(record)
    lines[index] = json.dumps(record)
    jsonl.write_text("\n".join(lines) + "\n")


@pytest.mark.parametrize(("raw", "label"), [("true", True), ("FALSE", False), (True, True)])
def test_nlvr2_label_in_any_case(nlvr2_copy, raw, label):
    rewrite_line(nlvr2_copy / "examples.jsonl", 0, lambda record: record.update(label=raw))
    assert load_nlvr2(nlvr2_copy)[0].label is label


def test_nlvr2_unlabeled(nlvr2_copy):
    rewrite_line(nlvr2_copy / "examples.jsonl", 2, lambda record: record.pop("label"))
    examples = load_nlvr2(nlvr2_copy)
    assert examples[2].label is None
    assert examples[1].label is True


def test_nlvr2_bad_label(nlvr2_copy):
    rewrite_line(nlvr2_copy / "examples.jsonl", 3, lambda record: record.update(label="maybe"))
    data_error(lambda: load_nlvr2(nlvr2_copy), "'dev-850-1-0'", "'maybe'", "line 4")


def test_nlvr2_missing_image(nlvr2_copy):
    (nlvr2_copy / "images" / "test1-0-2-img1.png").unlink()
    data_error(
        lambda: load_nlvr2(nlvr2_copy),
        "right_image",
        "'test1-0-2-0'",
        str(nlvr2_copy / "images" / "test1-0-2-img1.png"),
    )


def test_nlvr2_official_style_missing_image(nlvr2_copy):
    without_image_fields(nlvr2_copy / "examples.jsonl")
    (nlvr2_copy / "images" / "dev-850-3-img0.png").unlink()
    data_error(lambda: load_nlvr2(nlvr2_copy), "dev-850-3-img0.png", "'dev-850-3-0'", "line 3")


def test_nlvr2_official_style_bad_identifier(nlvr2_copy):
    without_image_fields(nlvr2_copy / "examples.jsonl")
    rewrite_line(
        nlvr2_copy / "examples.jsonl", 0, lambda record: record.update(identifier="dev-850")
    )
    data_error(lambda: load_nlvr2(nlvr2_copy), "'dev-850'")


def test_nlvr2_bad_json_line(nlvr2_copy):
    jsonl = nlvr2_copy / "examples.jsonl"
    lines = jsonl.read_text().splitlines()
    lines[5] = lines[5][:40]
    jsonl.write_text("\n".join(lines) + "\n")
    data_error(lambda: load_nlvr2(nlvr2_copy), str(jsonl), "line 6", "not valid JSON")


def test_nlvr2_missing_field(nlvr2_copy):
    rewrite_line(nlvr2_copy / "examples.jsonl", 1, lambda record: record.pop("sentence"))
    data_error(lambda: load_nlvr2(nlvr2_copy), "line 2", "'sentence'")


def test_nlvr2_missing_path(tmp_path):
    data_error(lambda: load_nlvr2(tmp_path / "dev.json"), "not found", "dev.json")


def test_nlvr2_directory_choices(nlvr2_copy, tmp_path):
    # examples.jsonl wins over other jsonl files; otherwise there must be exactly one.
    shutil.copyfile(nlvr2_copy / "examples.jsonl", nlvr2_copy / "other.jsonl")
    assert len(load_nlvr2(nlvr2_copy)) == 16
    (nlvr2_copy / "examples.jsonl").rename(nlvr2_copy / "dev.jsonl")
    data_error(lambda: load_nlvr2(nlvr2_copy), "several *.jsonl", "dev.jsonl, other.jsonl")
    (nlvr2_copy / "other.jsonl").unlink()
    assert len(load_nlvr2(nlvr2_copy)) == 16
    data_error(lambda: load_nlvr2(tmp_path / "nlvr2" / "images"), "no NLVR2 *.jsonl")


def test_nlvr2_empty_file(tmp_path):
    (tmp_path / "examples.jsonl").write_text("\n")
    data_error(lambda: load_nlvr2(tmp_path), "no NLVR2 examples")


# frames:PATH — the user's own images and questions, answers optional


def _frames_file(folder: Path, lines: list) -> Path:
    image = folder / "frames" / "0001.png"
    image.parent.mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(image)
    path = folder / "frames.jsonl"
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def test_frames_labeled_and_unlabeled(tmp_path):
    from vilt_edge.data import load_data, load_frames

    path = _frames_file(
        tmp_path,
        [
            {"image": "frames/0001.png", "question": "what color?", "answers": ["red", "red"]},
            "",
            {"image": "frames/0001.png", "question": "is it red?", "answer": "yes", "id": "q2"},
            {"image": "frames/0001.png", "question": "what is it?"},
        ],
    )
    examples = load_frames(path)
    assert [e.answers for e in examples] == [("red", "red"), ("yes",), ()]
    assert examples[1].question_id == "q2"
    assert examples[0].image_path == str((tmp_path / "frames" / "0001.png").resolve())
    data = load_data(f"frames:{tmp_path}")  # the folder's one .jsonl
    assert data.task == "vqa" and data.kind == "frames" and len(data) == 3


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ({"question": "what?"}, "no 'image' field"),
        ({"image": "frames/0002.png", "question": "what?"}, "image not found"),
        ({"image": "frames/0001.png", "question": "  "}, "question is empty"),
        ({"image": "frames/0001.png", "question": "what?", "answers": "red"}, "list of strings"),
        ({"image": "frames/0001.png", "question": "what?", "answer": 3}, "must be a string"),
        ("{not json", "not valid JSON"),
    ],
)
def test_frames_bad_lines_name_the_line(tmp_path, line, message):
    from vilt_edge.data import load_frames

    path = _frames_file(tmp_path, [{"image": "frames/0001.png", "question": "ok?"}, line])
    with pytest.raises(DataError, match=message) as caught:
        load_frames(path)
    assert "line 2" in str(caught.value)


def test_frames_missing_or_empty(tmp_path):
    from vilt_edge.data import load_frames

    with pytest.raises(DataError, match="frames file not found"):
        load_frames(tmp_path / "none.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(DataError, match="has no examples"):
        load_frames(tmp_path / "empty.jsonl")

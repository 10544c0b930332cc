"""Evaluation and training data in the layouts users have: easy-VQA (PyPI package `easy-vqa`).

Torch-free: examples are plain records; image decoding happens in `vilt_edge.preprocess`.
"""

from __future__ import annotations

from dataclasses import dataclass

from vilt_edge.errors import DataError


@dataclass(frozen=True)
class VqaExample:
    image_path: str
    question: str
    answers: tuple[str, ...]  # human answers (one for easy-VQA, ten for VQAv2)
    question_id: str = ""
    answer_type: str = ""


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

"""Question tokenization: the same ids as transformers' tokenizer, fixed length, and clear
errors and warnings."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import build_tokenizer

from vilt_edge.errors import BundleError, InputError
from vilt_edge.text import QuestionTokenizer, QuestionTruncatedWarning

TEXT_LENGTH = 12
QUESTIONS = [
    "What is the color of the circle?",
    "how many dogs",
    "Is there a man holding two cats on the table?",
    "  Zebra?!  xylophone  ",
    "héllo wörld, 3 cats",
]


@pytest.fixture(scope="module")
def tokenizer_dir(tmp_path_factory) -> Path:
    directory = tmp_path_factory.mktemp("tokenizer")
    build_tokenizer().save(str(directory / "tokenizer.json"))
    # What a ViLT checkpoint ships beside tokenizer.json; AutoTokenizer needs the pad token.
    (directory / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "BertTokenizerFast", "pad_token": "[PAD]"})
    )
    return directory


@pytest.fixture(scope="module")
def tokenizer(tokenizer_dir: Path) -> QuestionTokenizer:
    return QuestionTokenizer.from_file(tokenizer_dir / "tokenizer.json", TEXT_LENGTH)


def test_ids_match_transformers(tokenizer_dir: Path, tokenizer: QuestionTokenizer):
    from transformers import AutoTokenizer

    reference = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    expected = reference(
        QUESTIONS,
        padding="max_length",
        truncation=True,
        max_length=TEXT_LENGTH,
        return_tensors="np",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", QuestionTruncatedWarning)
        input_ids, attention_mask = tokenizer.encode(QUESTIONS)
    assert input_ids.dtype == np.int64 and attention_mask.dtype == np.int64
    assert input_ids.shape == attention_mask.shape == (len(QUESTIONS), TEXT_LENGTH)
    np.testing.assert_array_equal(input_ids, expected["input_ids"])
    np.testing.assert_array_equal(attention_mask, expected["attention_mask"])


def test_padding_uses_the_pad_id(tokenizer: QuestionTokenizer):
    input_ids, attention_mask = tokenizer.encode(["how many dogs"])
    pad = build_tokenizer().token_to_id("[PAD]")
    assert tokenizer.pad_id == pad
    assert (input_ids[attention_mask == 0] == pad).all()
    assert attention_mask[0].tolist() == [1] * 5 + [0] * (TEXT_LENGTH - 5)


def test_truncation_keeps_the_final_sep_and_warns(tokenizer: QuestionTokenizer):
    sep = build_tokenizer().token_to_id("[SEP]")
    long_question = " ".join(["red"] * 20)  # 20 pieces + [CLS] + [SEP] = 22
    with pytest.warns(QuestionTruncatedWarning, match="last 10 were dropped"):
        input_ids, attention_mask = tokenizer.encode([long_question])
    assert input_ids[0, -1] == sep
    assert attention_mask.all()


def test_no_warning_at_exactly_max_length(tokenizer: QuestionTokenizer):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tokenizer.encode([" ".join(["red"] * (TEXT_LENGTH - 2))])


@pytest.mark.parametrize("question", ["", "   ", "\t\n", "\u200b"])
def test_empty_question(tokenizer: QuestionTokenizer, question: str):
    with pytest.raises(InputError, match="question is empty"):
        tokenizer.encode([question])


def test_empty_question_in_a_batch_says_which(tokenizer: QuestionTokenizer):
    with pytest.raises(InputError, match=r"question is empty \(item 2 of 3\)"):
        tokenizer.encode(["red?", " ", "blue?"])


def test_padding_config_pad_id_wins(tmp_path: Path):
    raw = build_tokenizer()
    raw.enable_padding(pad_id=4, pad_token="[MASK]")
    raw.save(str(tmp_path / "tokenizer.json"))
    input_ids, _ = QuestionTokenizer.from_file(tmp_path / "tokenizer.json", 8).encode(["red"])
    assert input_ids[0].tolist()[3:] == [4] * 5


def test_unreadable_tokenizer_file(tmp_path: Path):
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(BundleError, match="tokenizer.json"):
        QuestionTokenizer.from_file(tmp_path / "tokenizer.json", 8)


def test_text_length_too_short_for_special_tokens(tokenizer_dir: Path):
    with pytest.raises(BundleError, match="no room"):
        QuestionTokenizer.from_file(tokenizer_dir / "tokenizer.json", 2)

"""VQA answer normalization and accuracy, NLVR2 consistency: hand-worked cases, the first 100
official VQA v2 annotations of each split, and the NLVR2 mini examples."""

from __future__ import annotations

import json

import pytest

from vilt_edge.data.metrics import accuracy_by_group, nlvr2_consistency, normalize_answer, vqa_score
from vilt_edge.data.nlvr2 import parse_nlvr2_identifier
from vilt_edge.errors import DataError


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        # whitespace and case
        ("  Yes\n", "yes"),
        ("red\tcar", "red car"),
        ("Red  Car", "red car"),
        # a mark touching a space is deleted; otherwise it splits the word
        ("yes!", "yes"),
        ("black, white", "black white"),
        ("red,white", "red white"),
        ("leaf-hat", "leaf hat"),
        ("(left)", "left"),
        # the rule is per character over the whole answer: one "-" next to a space deletes all
        ("red-white - blue", "redwhite blue"),
        # a comma between digits deletes every mark, including ones that would split words
        ("1,000", "1000"),
        ("1,000 red-white", "1000 redwhite"),
        # characters outside the official list are kept
        ("it's", "it's"),
        ("10:30", "10:30"),
        ("http://foodiebakercom", "http: foodiebakercom"),
        # periods go unless a digit follows
        ("u.s.a.", "usa"),
        ("2.5", "2.5"),
        ("5.", "5"),
        (".5 inch", ".5 inch"),
        # number words, articles
        ("Two", "2"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("the three dogs", "3 dogs"),
        ("A dog", "dog"),
        ("an apple on the table", "apple on table"),
        ("another", "another"),
        # the contractions table, quirks included
        ("dont", "don't"),
        ("Whats that", "what's that"),
        ("cant tell", "can't tell"),
        ("oclock", "o'clock"),
        ("yall", "y'all"),
        ("Im", "im"),  # the table's key is "Im", never matched after lower-casing
        ("somebody'd", "somebodyd"),  # the table maps this one backwards
        ("", ""),
    ],
)
def test_normalize_answer(answer, expected):
    assert normalize_answer(answer) == expected


def test_only_the_first_32_periods_are_dropped_as_in_the_official_script():
    assert normalize_answer("." * 40 + "x") == "." * 8 + "x"


@pytest.mark.parametrize(
    ("matches", "expected"),
    [
        (0, 0.0),
        (1, 0.3),  # 9 subsets keep the match: 9 * 1/3 / 10
        (2, 0.6),  # 2 subsets drop a match (1/3), 8 keep both (2/3): (2/3 + 16/3) / 10
        (3, 0.9),  # 3 subsets drop a match (2/3), 7 keep all three (1): (2 + 7) / 10
        (4, 1.0),  # every subset keeps at least 3
        (10, 1.0),
    ],
)
def test_vqa_score_of_ten_answers(matches, expected):
    humans = ["cat"] * matches + ["dog"] * (10 - matches)
    assert vqa_score("cat", humans) == pytest.approx(expected)


def test_vqa_score_normalizes_both_sides():
    humans = ["2", "2", "two", "Two.", "3", "3", "3", "3", "3", "3"]
    assert vqa_score("TWO", humans) == pytest.approx(1.0)
    assert vqa_score("the 3", humans) == pytest.approx(1.0)
    assert vqa_score("four", humans) == 0.0


def test_vqa_score_with_one_answer_is_an_exact_match():
    assert vqa_score("Yes", ["yes"]) == 1.0
    assert vqa_score("no", ["yes"]) == 0.0


def test_vqa_score_with_two_answers_keeps_the_official_formula():
    assert vqa_score("yes", ["yes", "yes"]) == pytest.approx(1 / 3)


def test_vqa_score_without_answers_is_a_data_error():
    with pytest.raises(DataError, match="no human answers"):
        vqa_score("yes", [])
    with pytest.raises(TypeError):
        vqa_score("yes", "yes")


def official_annotations(shared_data):
    paths = sorted(
        (shared_data / "vqav2-mini" / "source_samples").glob("*annotations.first100.json")
    )
    assert len(paths) == 2
    return [
        annotation for path in paths for annotation in json.loads(path.read_text())["annotations"]
    ]


def test_official_annotations_score_their_own_answers(shared_data):
    annotations = official_annotations(shared_data)
    assert len(annotations) == 200
    for annotation in annotations:
        humans = [answer["answer"] for answer in annotation["answers"]]
        assert len(humans) == 10
        assert vqa_score(annotation["multiple_choice_answer"], humans) > 0, annotation
        for human in humans:
            assert vqa_score(human, humans) >= 0.3, (human, humans)
        assert vqa_score("purple elephant xylophone", humans) == 0.0


def test_per_answer_type_accuracy_on_official_annotations(shared_data):
    annotations = official_annotations(shared_data)
    scores = [
        vqa_score("yes", [answer["answer"] for answer in annotation["answers"]])
        for annotation in annotations
    ]
    by_type = accuracy_by_group(scores, [annotation["answer_type"] for annotation in annotations])
    assert set(by_type) == {"yes/no", "number", "other"}
    assert by_type["number"] == 0.0
    assert 0.3 < by_type["yes/no"] < 1.0


def test_accuracy_by_group():
    assert accuracy_by_group([1.0, 0.0, 0.5, 1.0], ["b", "a", "b", "a"]) == {"a": 0.5, "b": 0.75}
    assert accuracy_by_group([], []) == {}
    with pytest.raises(ValueError):
        accuracy_by_group([1.0], [])


def nlvr2_mini(shared_data):
    lines = (shared_data / "nlvr2-mini" / "examples.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_nlvr2_sentence_groups_agree_with_the_sentences(shared_data):
    # Grouping by split-setId-*-sentenceId must put exactly the examples with one sentence
    # text together; a consistency over the mini with one wrong answer per group shows it.
    examples = nlvr2_mini(shared_data)
    by_text: dict[str, list[str]] = {}
    for example in examples:
        by_text.setdefault(example["sentence"], []).append(example["identifier"])
    assert len(by_text) == 4 and all(len(group) == 4 for group in by_text.values())
    sentence_keys = set()
    for group in by_text.values():
        parts = [parse_nlvr2_identifier(identifier) for identifier in group]
        keys = {(part.split, part.set_id, part.sentence_id) for part in parts}
        assert len(keys) == 1
        assert len({part.pair_id for part in parts}) == 4
        sentence_keys |= keys
    assert len(sentence_keys) == len(by_text)

    identifiers = [example["identifier"] for example in examples]
    for wrong_group in by_text.values():
        correct = [identifier not in wrong_group[:1] for identifier in identifiers]
        assert nlvr2_consistency(identifiers, correct) == 0.75


def test_nlvr2_consistency_on_the_mini(shared_data):
    examples = nlvr2_mini(shared_data)
    identifiers = [example["identifier"] for example in examples]
    labels = [example["label"] == "True" for example in examples]
    assert nlvr2_consistency(identifiers, [True] * len(examples)) == 1.0
    assert nlvr2_consistency(identifiers, [False] * len(examples)) == 0.0
    # Always answering True is right on half the examples but on no whole sentence.
    assert nlvr2_consistency(identifiers, labels) == 0.0
    # Two wrong answers on one image pair (dev-850-0, both sentences) break two sentences,
    # two wrong answers on one sentence (test1-0-*-1) break only that one.
    wrong = {"dev-850-0-0", "dev-850-0-1"}
    assert nlvr2_consistency(identifiers, [i not in wrong for i in identifiers]) == 0.5
    wrong = {"test1-0-0-1", "test1-0-2-1"}
    assert nlvr2_consistency(identifiers, [i not in wrong for i in identifiers]) == 0.75


def test_nlvr2_consistency_edge_cases():
    assert nlvr2_consistency([], []) is None
    # A sentence with a single example counts, with that example's correctness.
    assert nlvr2_consistency(["train-1-0-0", "train-2-0-0"], [True, False]) == 0.5
    with pytest.raises(ValueError):
        nlvr2_consistency(["dev-1-0-0"], [])


@pytest.mark.parametrize("identifier", ["dev-850-0", "dev-850-x-0", "dev-850-0-0-1", "", "850"])
def test_nlvr2_consistency_names_a_malformed_identifier(identifier):
    with pytest.raises(DataError) as error:
        nlvr2_consistency(["dev-850-1-0", identifier], [True, True])
    assert repr(identifier) in str(error.value)
    assert "\n" not in str(error.value)

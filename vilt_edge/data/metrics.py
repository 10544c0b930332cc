"""Official VQA and NLVR2 scores, torch-free.

    from vilt_edge.data.metrics import accuracy_by_group, nlvr2_consistency, vqa_score

    score = vqa_score("Two", ["2", "2", "two", "3", "2", "2", "2", "2", "2", "2"])  # 1.0
    by_type = accuracy_by_group(scores, [example.answer_type for example in examples])
    consistency = nlvr2_consistency(identifiers, [p == e.label for p, e in zip(preds, examples)])

`normalize_answer` and `vqa_score` follow the VQA v2 evaluation script (`vqaEval.py` of the
official VQA API, GT-Vision-Lab/VQA) and `nlvr2_consistency` follows NLVR2's `eval/metrics.py`;
the deliberate differences are listed in each function's docstring.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache

from vilt_edge.data.nlvr2 import parse_nlvr2_identifier
from vilt_edge.errors import DataError

# The official list. The apostrophe is not in it (contractions rely on it), nor is the period,
# which has its own rule below; characters such as ':', '*', '#', '&' are kept as they are.
_PUNCTUATION = (
    ";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-",
    ">", "<", "@", "`", ",", "?", "!",
)  # fmt: skip

# A comma between digits ("1,000") makes the official script delete every punctuation mark of
# the answer instead of turning the marks into spaces.
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")

# The official pattern is "(?!<=\d)(\.)(?!\d)": its "(?!<=\d)" was meant as a look-behind but is
# a look-ahead that can never fail, so in effect a period is dropped unless a digit follows it.
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The official call is `periodStrip.sub("", text, re.UNICODE)`, which passes re.UNICODE (32) as
# the count: only the first 32 such periods are dropped. Kept so scores match the official ones.
_OFFICIAL_PERIOD_COUNT = 32

_NUMBER_WORDS = {
    "none": "0", "zero": "0", "one": "1", "two": "2", "three": "3", "four": "4", "five": "5",
    "six": "6", "seven": "7", "eight": "8", "nine": "9", "ten": "10",
}  # fmt: skip

_ARTICLES = frozenset({"a", "an", "the"})

# The official table, entry for entry, quirks included: "somebody'd" maps *to* "somebodyd", and
# the capitalised keys ("Im", "Ive", "Id've", "I'dve") never match because words are lower-cased
# before the lookup, so "im" stays "im".
_CONTRACTIONS = {
    "aint": "ain't", "arent": "aren't", "cant": "can't", "couldve": "could've",
    "couldnt": "couldn't", "couldn'tve": "couldn't've", "couldnt've": "couldn't've",
    "didnt": "didn't", "doesnt": "doesn't", "dont": "don't", "hadnt": "hadn't",
    "hadnt've": "hadn't've", "hadn'tve": "hadn't've", "hasnt": "hasn't", "havent": "haven't",
    "hed": "he'd", "hed've": "he'd've", "he'dve": "he'd've", "hes": "he's", "howd": "how'd",
    "howll": "how'll", "hows": "how's", "Id've": "I'd've", "I'dve": "I'd've", "Im": "I'm",
    "Ive": "I've", "isnt": "isn't", "itd": "it'd", "itd've": "it'd've", "it'dve": "it'd've",
    "itll": "it'll", "let's": "let's", "maam": "ma'am", "mightnt": "mightn't",
    "mightnt've": "mightn't've", "mightn'tve": "mightn't've", "mightve": "might've",
    "mustnt": "mustn't", "mustve": "must've", "neednt": "needn't", "notve": "not've",
    "oclock": "o'clock", "oughtnt": "oughtn't", "ow's'at": "'ow's'at", "'ows'at": "'ow's'at",
    "'ow'sat": "'ow's'at", "shant": "shan't", "shed've": "she'd've", "she'dve": "she'd've",
    "she's": "she's", "shouldve": "should've", "shouldnt": "shouldn't",
    "shouldnt've": "shouldn't've", "shouldn'tve": "shouldn't've", "somebody'd": "somebodyd",
    "somebodyd've": "somebody'd've", "somebody'dve": "somebody'd've",
    "somebodyll": "somebody'll", "somebodys": "somebody's", "someoned": "someone'd",
    "someoned've": "someone'd've", "someone'dve": "someone'd've", "someonell": "someone'll",
    "someones": "someone's", "somethingd": "something'd", "somethingd've": "something'd've",
    "something'dve": "something'd've", "somethingll": "something'll", "thats": "that's",
    "thered": "there'd", "thered've": "there'd've", "there'dve": "there'd've",
    "therere": "there're", "theres": "there's", "theyd": "they'd", "theyd've": "they'd've",
    "they'dve": "they'd've", "theyll": "they'll", "theyre": "they're", "theyve": "they've",
    "twas": "'twas", "wasnt": "wasn't", "wed've": "we'd've", "we'dve": "we'd've",
    "weve": "we've", "werent": "weren't", "whatll": "what'll", "whatre": "what're",
    "whats": "what's", "whatve": "what've", "whens": "when's", "whered": "where'd",
    "wheres": "where's", "whereve": "where've", "whod": "who'd", "whod've": "who'd've",
    "who'dve": "who'd've", "wholl": "who'll", "whos": "who's", "whove": "who've",
    "whyll": "why'll", "whyre": "why're", "whys": "why's", "wont": "won't",
    "wouldve": "would've", "wouldnt": "wouldn't", "wouldnt've": "wouldn't've",
    "wouldn'tve": "wouldn't've", "yall": "y'all", "yall'll": "y'all'll", "y'allll": "y'all'll",
    "yall'd've": "y'all'd've", "y'alld've": "y'all'd've", "y'all'dve": "y'all'd've",
    "youd": "you'd", "youd've": "you'd've", "you'dve": "you'd've", "youll": "you'll",
    "youre": "you're", "youve": "you've",
}  # fmt: skip


def _process_punctuation(text: str) -> str:
    # The official rule decides per punctuation character over the whole answer, not per
    # occurrence: if the character touches a space anywhere (or the answer has a digit-comma-
    # digit), every occurrence of it is deleted; otherwise every occurrence becomes a space.
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    result = text
    for mark in _PUNCTUATION:
        if delete_all or f"{mark} " in text or f" {mark}" in text:
            result = result.replace(mark, "")
        else:
            result = result.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", result, count=_OFFICIAL_PERIOD_COUNT)


def _process_digits_and_articles(text: str) -> str:
    words = [_NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    return " ".join(_CONTRACTIONS.get(word, word) for word in words if word not in _ARTICLES)


@lru_cache(maxsize=1 << 16)
def _normalize_cached(answer: str) -> str:
    text = answer.replace("\n", " ").replace("\t", " ").strip()
    return _process_digits_and_articles(_process_punctuation(text))


def normalize_answer(answer: str) -> str:
    """The answer as the official VQA evaluation compares it, in the official order:

    1. newlines and tabs become spaces; leading and trailing whitespace is stripped;
    2. punctuation (``; / [ ] " { } ( ) = + \\ _ - > < @ ` , ? !``): each mark that is next to a
       space anywhere in the answer is deleted everywhere in it, any other mark becomes a space
       ("black, white" -> "black white", "leaf-hat" -> "leaf hat"); if the answer has a comma
       between digits, all marks are deleted ("1,000" -> "1000");
    3. a period is deleted unless a digit follows it ("u.s.a." -> "usa", "2.5" stays);
    4. lower-casing and splitting on whitespace; the number words none/zero..ten become digits
       ("none" -> "0", "ten" -> "10"); the articles a, an, the are dropped;
    5. the official contractions table restores apostrophes ("dont" -> "don't",
       "whats" -> "what's"); words are joined with single spaces.

    Apostrophes, colons and other characters outside the list are kept.
    """
    return _normalize_cached(answer)


def vqa_score(prediction: str, human_answers: Sequence[str]) -> float:
    """The official VQA accuracy of one predicted answer, in [0, 1].

    Both sides go through `normalize_answer`. For each human answer in turn, that answer is left
    out and the prediction earns min(matches among the other answers / 3, 1); the score is the
    mean over these leave-one-out subsets. With VQA v2's ten answers: 0 matches -> 0.0,
    1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4 or more -> 1.0.

    Any number of answers is accepted. With a single answer (easy-VQA style) the score is 1.0 on
    a match and 0.0 otherwise, because the official formula would leave nothing to match against
    and give 0.0 always. With two or three answers the official formula is kept, so the best
    possible score is 1/3 or 2/3.

    Differences from the official script: it runs only the punctuation step on the human
    answers, and only when they disagree, relying on the annotations being normalized already;
    here human answers get the full normalization, which scores any answer set consistently.
    """
    if isinstance(human_answers, str):
        raise TypeError("human_answers must be a sequence of answers, not one string")
    if len(human_answers) == 0:
        raise DataError("VQA example has no human answers ('answers' is empty) to score against")
    predicted = normalize_answer(prediction)
    matches = [normalize_answer(answer) == predicted for answer in human_answers]
    if len(matches) == 1:
        return float(matches[0])
    total = sum(matches)
    return sum(min((total - match) / 3, 1.0) for match in matches) / len(matches)


def accuracy_by_group(scores: Sequence[float], groups: Sequence[str]) -> dict[str, float]:
    """Mean score per group (e.g. per VQA answer type), keys sorted; {} for no scores."""
    if len(scores) != len(groups):
        raise ValueError(f"{len(scores)} scores but {len(groups)} group names")
    totals: defaultdict[str, list[float]] = defaultdict(list)
    for score, group in zip(scores, groups, strict=True):
        totals[group].append(float(score))
    return {group: sum(values) / len(values) for group, values in sorted(totals.items())}


def nlvr2_consistency(identifiers: Sequence[str], correct: Sequence[bool]) -> float | None:
    """NLVR2 consistency: the fraction of unique sentences whose examples are all correct.

    An NLVR2 identifier is ``split-setId-pairId-sentenceId`` (e.g. ``dev-850-0-0``). One
    sentence is written for an eight-image set and paired with several image pairs, so the
    examples of one sentence share split, setId and sentenceId and differ in pairId (as in
    NLVR2's `eval/metrics.py`, which blanks the pairId). Every group counts, including groups
    with a single example (there consistency equals that example's correctness). Returns None
    for no examples, where consistency is undefined. A malformed identifier raises `DataError`.
    """
    if len(identifiers) != len(correct):
        raise ValueError(f"{len(identifiers)} identifiers but {len(correct)} correctness flags")
    all_correct: dict[tuple[str, str, str], bool] = {}
    for identifier, is_correct in zip(identifiers, correct, strict=True):
        parts = parse_nlvr2_identifier(identifier)
        sentence = (parts.split, parts.set_id, parts.sentence_id)
        all_correct[sentence] = all_correct.get(sentence, True) and bool(is_correct)
    if not all_correct:
        return None
    return sum(all_correct.values()) / len(all_correct)

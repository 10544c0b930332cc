"""Question tokenization for bundles, with the `tokenizers` library only.

    from vilt_edge.text import QuestionTokenizer

    tokenizer = QuestionTokenizer.from_file("bundle/tokenizer.json", max_length=40)
    input_ids, attention_mask = tokenizer.encode(["what color is the circle?"])  # int64 (1, 40)

Ids match transformers' `BertTokenizerFast(..., padding="max_length", truncation=True)` on the
same tokenizer.json: padding on the right to exactly `max_length`, and truncation that drops word
pieces from the end of the question while the post-processor still adds the final [SEP].
"""

from __future__ import annotations

import os
import warnings

import numpy as np
from tokenizers import Tokenizer

from vilt_edge.errors import BundleError, InputError, first_line


class QuestionTruncatedWarning(UserWarning):
    """A question had more word pieces than the model's text length; the end was dropped."""


class QuestionTokenizer:
    """Questions -> fixed-length `input_ids` and `attention_mask`; build with `from_file`."""

    def __init__(self, tokenizer: Tokenizer, max_length: int) -> None:
        special = tokenizer.num_special_tokens_to_add(False)
        if max_length <= special:
            raise BundleError(
                f"text length {max_length} leaves no room for a question "
                f"beside {special} special tokens"
            )
        self.max_length = max_length
        self.pad_id, _ = self._pad_token(tokenizer)
        # One configuration: every question is tokenized once, whole, so the warning can say
        # how many word pieces were dropped; truncation and right padding are then applied to
        # the ids here (what `enable_truncation` / `enable_padding` would do in a second pass:
        # content cut from the end, the post-processor's special tokens kept around it).
        # Right padding, whatever tokenizer.json says: ViLT's text embeddings were trained so,
        # and transformers' BERT tokenizers pad on the right.
        self._tokenizer = Tokenizer.from_str(tokenizer.to_str())
        self._tokenizer.no_truncation()
        self._tokenizer.no_padding()
        mask = self._tokenizer.encode("a").special_tokens_mask
        self._leading = next((i for i, m in enumerate(mask) if not m), len(mask))
        self._trailing = len(mask) - self._leading - sum(1 for m in mask if not m)

    @staticmethod
    def _pad_token(tokenizer: Tokenizer) -> tuple[int, str]:
        padding = tokenizer.padding
        if padding and padding.get("pad_token") is not None:
            return int(padding["pad_id"]), str(padding["pad_token"])
        pad_id = tokenizer.token_to_id("[PAD]")
        if pad_id is not None:
            return pad_id, "[PAD]"
        return 0, tokenizer.id_to_token(0) or "[PAD]"

    @classmethod
    def from_file(cls, path: str | os.PathLike, max_length: int) -> QuestionTokenizer:
        """`QuestionTokenizer.from_file("bundle/tokenizer.json", 40)`; a bad file -> BundleError."""
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as error:  # tokenizers raises plain Exception for unreadable files
            reason = first_line(error, "unreadable")
            raise BundleError(f"{path}: not a usable tokenizer ({reason})") from None
        return cls(tokenizer, max_length)

    @property
    def vocab_size(self) -> int:
        return self._tokenizer.get_vocab_size()

    def encode(
        self, questions: list[str], to_longest: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """`encode(["is it red?"])` -> (input_ids, attention_mask), both int64 (B, max_length);
        with `to_longest`, (B, the longest question's length) instead.

        An empty question raises `InputError`; a long one is truncated with a
        `QuestionTruncatedWarning` that says how many word pieces were dropped.
        """
        if isinstance(questions, str):
            raise TypeError("encode takes a list of questions; wrap a single one in a list")
        for index, question in enumerate(questions):
            if not isinstance(question, str):
                raise InputError(f"question must be text; got {type(question).__name__}")
            if not question.strip():
                where = f" (item {index + 1} of {len(questions)})" if len(questions) > 1 else ""
                raise InputError(f"question is empty{where}")
        if not questions:
            return (
                np.zeros((0, self.max_length), dtype=np.int64),
                np.zeros((0, self.max_length), dtype=np.int64),
            )
        full = self._tokenizer.encode_batch(list(questions))
        for index, encoding in enumerate(full):
            if all(encoding.special_tokens_mask):  # e.g. only control or zero-width characters
                where = f" (item {index + 1} of {len(questions)})" if len(questions) > 1 else ""
                raise InputError(f"question is empty{where}")
            dropped = len(encoding.ids) - self.max_length
            if dropped > 0:
                where = f"question {index + 1}" if len(questions) > 1 else "the question"
                warnings.warn(
                    f"{where} has {len(encoding.ids)} word pieces with special tokens; the model "
                    f"reads {self.max_length}, so the last {dropped} were dropped",
                    QuestionTruncatedWarning,
                    stacklevel=2,
                )
        rows = [self._truncated(encoding.ids) for encoding in full]
        width = self.max_length if not to_longest else max(len(row) for row in rows)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        attention_mask = np.zeros((len(rows), width), dtype=np.int64)
        for index, row in enumerate(rows):
            input_ids[index, : len(row)] = row
            attention_mask[index, : len(row)] = 1
        return input_ids, attention_mask

    def _truncated(self, ids: list[int]) -> list[int]:
        if len(ids) <= self.max_length:
            return ids
        keep = self.max_length - self._trailing
        return ids[:keep] + (ids[-self._trailing :] if self._trailing else [])

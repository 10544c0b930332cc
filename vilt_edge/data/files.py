"""What the data readers share: the example records and one-line errors for JSON files."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilt_edge.errors import DataError


@dataclass(frozen=True)
class VqaExample:
    image_path: str
    question: str
    answers: tuple[str, ...]  # human answers (one for easy-VQA, ten for VQAv2)
    question_id: str = ""
    answer_type: str = ""


@dataclass(frozen=True)
class NlvrExample:
    identifier: str  # split-setId-pairId-sentenceId
    sentence: str
    left_image: str  # absolute paths
    right_image: str
    label: bool | None  # None for unlabeled data


def _read_json(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DataError(f"file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {path}: {error}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise DataError(
            f"{path}: not valid JSON ({error.msg} at line {error.lineno} column {error.colno})"
        ) from None


def _field(record: Any, name: str, where: str) -> Any:
    if not isinstance(record, dict) or name not in record:
        raise DataError(f"{where} has no {name!r} field")
    return record[name]


def _list_field(document: Any, name: str, path: Path) -> list:
    value = _field(document, name, str(path))
    if not isinstance(value, list):
        raise DataError(f"{path}: {name!r} is not a list")
    return value


def _jsonl_records(source: Path):
    """(where, record) for each non-blank line of a JSON-lines file; a bad line -> DataError."""
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"cannot read {source}: {error}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{source} line {number}"
        try:
            yield where, json.loads(line)
        except json.JSONDecodeError as error:
            raise DataError(f"{where}: not valid JSON ({error.msg})") from None

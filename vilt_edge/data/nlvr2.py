"""NLVR2 data: the official JSON-lines files, with the images found beside them.

from vilt_edge.data.nlvr2 import load_nlvr2
pairs = load_nlvr2("data/nlvr2/dev.json")
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, NamedTuple

from vilt_edge.data.files import NlvrExample, _field, _jsonl_records
from vilt_edge.errors import DataError

# ---------------------------------------------------------------------------------------------
# NLVR2 (https://github.com/lil-lab/nlvr/tree/master/nlvr2)


class Nlvr2Identifier(NamedTuple):
    split: str  # "train", "dev", "test1", ...
    set_id: str  # the eight-image set the sentence was written for
    pair_id: str  # which image pair of the set
    sentence_id: str  # which of the (up to two) sentences written for the set


_NLVR2_IDENTIFIER = re.compile(r"([A-Za-z0-9]+)-(\d+)-(\d+)-(\d+)")


def parse_nlvr2_identifier(identifier: str) -> Nlvr2Identifier:
    """Split an NLVR2 identifier ``split-setId-pairId-sentenceId`` (e.g. ``dev-850-0-0``)."""
    match = _NLVR2_IDENTIFIER.fullmatch(identifier) if isinstance(identifier, str) else None
    if match is None:
        raise DataError(
            f"NLVR2 identifier {identifier!r} is not split-setId-pairId-sentenceId "
            "(e.g. 'dev-850-0-0')"
        )
    return Nlvr2Identifier(*match.groups())


class _Nlvr2ImageFinder:
    """Finds official NLVR2 image files (`<split>-<setId>-<pairId>-img0.png`) by name.

    Looks beside the jsonl, in images/, images/<split>/ and <split>/, then anywhere below
    images/, which covers the official release (train images sit in numbered subfolders).
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._below_images: dict[str, Path] | None = None

    def places(self, split: str) -> str:
        return f"{self.folder}, images/, images/{split}/, {split}/ or below images/"

    def find(self, name: str, split: str) -> Path | None:
        for directory in (
            self.folder,
            self.folder / "images",
            self.folder / "images" / split,
            self.folder / split,
        ):
            if (directory / name).is_file():
                return directory / name
        if self._below_images is None:
            # Walked once per load, and only when a direct look-up misses.
            below = self.folder / "images"
            self._below_images = {}
            if below.is_dir():
                for path in sorted(below.rglob("*")):
                    if path.is_file():
                        self._below_images.setdefault(path.name, path)
        return self._below_images.get(name)


def _nlvr2_file(directory: Path) -> Path:
    if (directory / "examples.jsonl").is_file():
        return directory / "examples.jsonl"
    found = sorted(path for path in directory.glob("*.jsonl") if path.is_file())
    if not found:
        raise DataError(
            f"no NLVR2 *.jsonl file in {directory} (official files such as dev.json: pass the "
            "file itself)"
        )
    if len(found) > 1:
        names = ", ".join(path.name for path in found)
        raise DataError(f"several *.jsonl files in {directory} ({names}); pass the one to load")
    return found[0]


def _nlvr2_label(raw: Any, identifier: str, where: str) -> bool | None:
    if raw is None or isinstance(raw, bool):
        return raw
    if isinstance(raw, str) and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    raise DataError(f"{where}: label of {identifier!r} is {raw!r}, not 'True' or 'False'")


def load_nlvr2(path: str | os.PathLike) -> list[NlvrExample]:
    """NLVR2 examples from a jsonl file (one JSON object per line), in file order.

    `path` is the file, or a directory holding `examples.jsonl` or exactly one `*.jsonl`. Each
    line needs `identifier` and `sentence`; `label` is "True" / "False" in any case (JSON
    true/false too), and a line without it is unlabeled (label None). The image pair is
    `left_image` / `right_image`, relative to the file's folder, where the line names them;
    otherwise (the official release, whose lines carry only URLs) it is the official file pair
    ``<split>-<setId>-<pairId>-img0.png`` / ``-img1.png``, looked up beside the file, in
    images/, images/<split>/, <split>/ and then anywhere below images/. Image paths are
    returned absolute, and every image is checked to exist.
    """
    source = Path(path)
    if source.is_dir():
        source = _nlvr2_file(source)
    elif not source.is_file():
        raise DataError(f"NLVR2 data not found: {source}")
    folder = Path(os.path.abspath(source.parent))
    finder = _Nlvr2ImageFinder(folder)

    examples = []
    for where, record in _jsonl_records(source):
        identifier = _field(record, "identifier", where)
        sentence = _field(record, "sentence", where)
        if not isinstance(identifier, str) or not isinstance(sentence, str):
            raise DataError(f"{where}: 'identifier' and 'sentence' must be strings")
        label = _nlvr2_label(record.get("label"), identifier, where)

        if "left_image" in record or "right_image" in record:
            pair = []
            for side in ("left_image", "right_image"):
                name = _field(record, side, f"{where} ({identifier})")
                if not isinstance(name, str):
                    raise DataError(f"{where}: {side} of {identifier!r} is not a path: {name!r}")
                image = folder / name
                if not image.is_file():
                    raise DataError(f"{where}: {side} of {identifier!r} not found: {image}")
                pair.append(image)
        else:
            parts = parse_nlvr2_identifier(identifier)
            stem = f"{parts.split}-{parts.set_id}-{parts.pair_id}"
            pair = []
            for suffix in ("img0", "img1"):
                name = f"{stem}-{suffix}.png"
                image = finder.find(name, parts.split)
                if image is None:
                    raise DataError(
                        f"{where}: image {name} of {identifier!r} not found "
                        f"(looked in {finder.places(parts.split)})"
                    )
                pair.append(image)
        examples.append(
            NlvrExample(
                identifier=identifier,
                sentence=sentence,
                left_image=os.path.abspath(pair[0]),
                right_image=os.path.abspath(pair[1]),
                label=label,
            )
        )
    if not examples:
        raise DataError(f"{source} has no NLVR2 examples")
    return examples

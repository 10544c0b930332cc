"""The bundle: a directory an app loads without torch.

    bundle/
      manifest.json      format version, task, source, precision, runtime, inputs, file hashes
      model.onnx         the model (VQA: logits; NLVR2: the encoder of one image, its pooled vector)
      model.onnx.data    its weights, for models of 32 MB and more (memory-mapped at load)
      head.onnx          NLVR2 only: the pair head over both images' pooled vectors
      tokenizer.json     a `tokenizers` tokenizer
      preprocessor.json  image preprocessing settings (ViltImageProcessor semantics)
      labels.json        answer strings, index -> label

Every file but the manifest is listed in it with its sha256; loading checks each one, so a
missing, truncated or altered file is named in one line. Bundles are written into a temporary
sibling directory and swapped into place (`vilt_edge.outputs`): an interrupted write never
leaves a loadable bundle, and `--overwrite` replaces only a bundle vilt-edge wrote.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilt_edge.errors import BundleError, OutputError
from vilt_edge.outputs import (
    BUNDLE_FORMAT,
    BUNDLE_MANIFEST,
    can_exchange,
    check_replaceable,
    same_or_inside,
    staged_directory,
)
from vilt_edge.records import TASKS, CompileRecord, QuantizeRecord, RuntimeSettings

FORMAT_NAME = BUNDLE_FORMAT
FORMAT_VERSION = 1
# Bumped when the exported graph changes for the same weights (the default model's cached
# export is keyed by it). 2: the last layer runs for the [CLS] row only. 3: the text axis is
# dynamic (up to the bundle's text length), so the runtime cuts padding columns. 4: the patch
# projection is a MatMul over flattened patches, which the dynamic INT8 quantizer quantizes.
# 5: NLVR2 bundles are an encoder of one image (`pooled`) plus the pair head (`head_file`), so
# each image of a pair runs at its own size, exactly as transformers computes it.
EXPORT_REVISION = 5
MANIFEST = BUNDLE_MANIFEST


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()


# Models at least this large keep their weights in `<model file>.data` beside the graph: ONNX
# Runtime memory-maps such external data at load instead of holding the protobuf's copy and its
# own (measured on ViLT-B/32 INT8, 126 MB: peak RSS 201 MB against 253-294 MB as one file).
EXTERNAL_DATA_MIN_BYTES = 32 << 20


def external_data_file(model_file: str) -> str:
    return f"{model_file}.data"


def save_model(source: Path, destination: Path) -> None:
    """Write the ONNX model `source` to `destination` in a bundle: as one file when small, with
    its weights in `<destination>.data` when large (`EXTERNAL_DATA_MIN_BYTES`)."""
    source, destination = Path(source), Path(destination)
    data = source.parent / external_data_file(source.name)
    size = source.stat().st_size + (data.stat().st_size if data.is_file() else 0)
    if size < EXTERNAL_DATA_MIN_BYTES:
        if source != destination:
            shutil.copyfile(source, destination)
        return
    import onnx

    model = onnx.load(str(source))  # with any external data of its own
    onnx.save(
        model,
        str(destination),
        save_as_external_data=True,
        all_tensors_to_one_file=True,
        location=external_data_file(destination.name),
        size_threshold=1024,
    )


@dataclass(frozen=True)
class Preprocessing:
    """Image settings with `ViltImageProcessor` semantics (see `vilt_edge.preprocess`)."""

    shortest_edge: int = 384
    longest_edge: int = 640  # int(1333 / 800 * shortest_edge)
    size_divisor: int = 32  # the patch size: both sides are floored to a multiple of it
    resample: str = "bicubic"
    rescale_factor: float = 1 / 255
    image_mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    image_std: tuple[float, float, float] = (0.5, 0.5, 0.5)

    def __post_init__(self) -> None:
        if self.shortest_edge < self.size_divisor or self.size_divisor < 1:
            raise BundleError("preprocessor.json: shortest_edge must be at least size_divisor")
        if self.resample not in ("bicubic", "bilinear", "nearest"):
            raise BundleError(f"preprocessor.json: unknown resample {self.resample!r}")

    @classmethod
    def for_shortest_edge(cls, shortest_edge: int, size_divisor: int, **kwargs) -> Preprocessing:
        # transformers: longer = int(MAX_LONGER_EDGE / MAX_SHORTER_EDGE * shorter) = 1333/800
        return cls(
            shortest_edge=shortest_edge,
            longest_edge=int(1333 / 800 * shortest_edge),
            size_divisor=size_divisor,
            **kwargs,
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "shortest_edge": self.shortest_edge,
            "longest_edge": self.longest_edge,
            "size_divisor": self.size_divisor,
            "resample": self.resample,
            "rescale_factor": self.rescale_factor,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
        }

    def to_hf_config(self) -> dict[str, Any]:
        """These settings as a Hugging Face `preprocessor_config.json` (`ViltImageProcessor`)."""
        return {
            "image_processor_type": "ViltImageProcessor",
            "do_resize": True,
            "size": {"shortest_edge": self.shortest_edge},
            "size_divisor": self.size_divisor,
            "resample": {"nearest": 0, "bilinear": 2, "bicubic": 3}[self.resample],
            "do_rescale": True,
            "rescale_factor": self.rescale_factor,
            "do_normalize": True,
            "image_mean": list(self.image_mean),
            "image_std": list(self.image_std),
            "do_pad": True,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Preprocessing:
        try:
            return cls(
                shortest_edge=int(data["shortest_edge"]),
                longest_edge=int(data["longest_edge"]),
                size_divisor=int(data["size_divisor"]),
                resample=str(data["resample"]),
                rescale_factor=float(data["rescale_factor"]),
                image_mean=tuple(float(v) for v in data["image_mean"]),
                image_std=tuple(float(v) for v in data["image_std"]),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"preprocessor.json: malformed ({error})") from None


@dataclass(frozen=True)
class Manifest:
    task: str  # "vqa" or "nlvr2"
    model_file: str
    precision: str  # "fp32", later "int8" / "fp16"
    runtime: str  # "onnxruntime"
    text_length: int  # questions are padded / truncated to this many word pieces
    num_images: int  # 1 for VQA, 2 for NLVR2
    patch_size: int
    source: dict[str, Any]  # {"model": str, "sha256": str, "kind": str}
    inputs: dict[str, Any]  # name -> {"dtype": str, "shape": [int | str]}
    files: dict[str, str]  # file name -> sha256
    vilt_edge_version: str
    format_version: int = FORMAT_VERSION
    extra: dict[str, Any] | None = None  # stage-specific records (quantization, compile, ...)
    # NLVR2: the pair head's ONNX graph (pooled vectors of both images -> logits), run on
    # ONNX Runtime's CPU provider whatever runs the model file; None for VQA.
    head_file: str | None = None

    def __post_init__(self) -> None:
        if self.task not in TASKS:
            raise BundleError(f"{MANIFEST}: unknown task {self.task!r}")
        if self.model_file not in self.files:
            raise BundleError(f"{MANIFEST}: model file {self.model_file} is not in its file list")
        if self.task == "nlvr2" and self.head_file is None:
            # Bundles before EXPORT_REVISION 5 ran both images through one graph at one size
            # (the right image resized to the left one's): not exact, so not loaded.
            raise BundleError(
                f"{MANIFEST}: this NLVR2 bundle comes from an older vilt-edge (one graph over "
                "both images at one size, inexact for pairs of different sizes); re-export it "
                "from the model with `vilt-edge export`"
            )
        if self.head_file is not None and self.head_file not in self.files:
            raise BundleError(f"{MANIFEST}: head file {self.head_file} is not in its file list")

    @property
    def quantize_record(self) -> QuantizeRecord | None:
        """What `vilt-edge quantize` recorded; None for a bundle it did not write."""
        data = (self.extra or {}).get("quantize")
        return None if data is None else QuantizeRecord.from_json(data)

    @property
    def compile_record(self) -> CompileRecord | None:
        """What `vilt-edge compile` recorded; None for a bundle it did not write."""
        data = (self.extra or {}).get("compile")
        return None if not data else CompileRecord.from_json(data)

    @property
    def runtime_settings(self) -> RuntimeSettings | None:
        """How the runtime must load the model (a compiled bundle's); None: the defaults."""
        data = (self.extra or {}).get("runtime_settings")
        return None if not data else RuntimeSettings.from_json(data)

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": FORMAT_NAME,
            "format_version": self.format_version,
            "vilt_edge_version": self.vilt_edge_version,
            "task": self.task,
            "source": self.source,
            "precision": self.precision,
            "runtime": self.runtime,
            "model_file": self.model_file,
            **({"head_file": self.head_file} if self.head_file else {}),
            "text_length": self.text_length,
            "num_images": self.num_images,
            "patch_size": self.patch_size,
            "inputs": self.inputs,
            "files": self.files,
        }
        if self.extra:
            data["extra"] = self.extra
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT_NAME:
            raise BundleError(f"{MANIFEST}: not a vilt-edge bundle manifest")
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(
                f"{MANIFEST}: unknown format version {version!r} "
                f"(this vilt-edge reads version {FORMAT_VERSION})"
            )
        try:
            return cls(
                task=data["task"],
                model_file=data["model_file"],
                precision=data["precision"],
                runtime=data["runtime"],
                text_length=int(data["text_length"]),
                num_images=int(data["num_images"]),
                patch_size=int(data["patch_size"]),
                source=dict(data["source"]),
                inputs=dict(data["inputs"]),
                files=dict(data["files"]),
                vilt_edge_version=str(data["vilt_edge_version"]),
                format_version=version,
                extra=data.get("extra"),
                head_file=data.get("head_file"),
            )
        except (KeyError, TypeError, ValueError) as error:
            raise BundleError(f"{MANIFEST}: malformed ({error})") from None


@dataclass(frozen=True)
class Bundle:
    """A verified bundle on disk."""

    path: Path
    manifest: Manifest
    preprocessing: Preprocessing
    labels: tuple[str, ...]

    @property
    def model_path(self) -> Path:
        return self.path / self.manifest.model_file

    @property
    def head_path(self) -> Path | None:
        """NLVR2: the pair head's graph; None for VQA."""
        head = self.manifest.head_file
        return None if head is None else self.path / head

    @property
    def tokenizer_path(self) -> Path:
        return self.path / "tokenizer.json"

    @property
    def default_image_size(self) -> tuple[int, int]:
        """Square at the preprocessing's shorter side, a multiple of the patch size: the shape
        `bench` and the roofline use when no size is given."""
        side = self.preprocessing.shortest_edge
        side -= side % self.manifest.patch_size
        return (side, side)


def derived_manifest_fields(
    source: Bundle,
    *,
    precision: str,
    vilt_edge_version: str,
    records: Mapping[str, Any],
    model_file: str | None = None,
    runtime: str | None = None,
) -> dict[str, Any]:
    """The manifest fields of a bundle a stage (quantize, compile) makes from `source`: the
    source's model contract, where it came from, and the stage's `records` (typed sections or
    JSON, by their "extra" key) added to the source's own."""
    manifest = source.manifest
    contract = ("task", "head_file", "text_length", "num_images", "patch_size", "inputs")
    fields: dict[str, Any] = {name: getattr(manifest, name) for name in contract}
    extra = dict(manifest.extra or {})
    for key, record in records.items():
        extra[key] = record.to_json() if hasattr(record, "to_json") else record
    fields.update(
        precision=precision,
        model_file=model_file or manifest.model_file,
        runtime=runtime or manifest.runtime,
        source={
            **manifest.source,
            "bundle": str(Path(source.path).resolve()),
            "bundle_precision": manifest.precision,
            "bundle_model_sha256": manifest.files[manifest.model_file],
        },
        vilt_edge_version=vilt_edge_version,
        extra=json.loads(json.dumps(extra)),  # plain JSON values only
    )
    return fields


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{what}: missing from bundle {path.parent}") from None
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BundleError(f"{what}: not valid JSON in bundle {path.parent}") from None


def load_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read and verify a bundle: format version, then the sha256 of every listed file.

    `--overwrite` swaps a finished bundle in by exchanging two folders atomically, but a
    reader that read the old manifest and then a file of the new bundle would see a mismatch:
    when the folder at `path` was replaced while it was being read, it is read again."""
    for _ in range(3):
        before = _identity(path)
        try:
            return _load_bundle(path, verify)
        except BundleError:
            if before is None or _identity(path) == before:
                raise
    return _load_bundle(path, verify)


def _identity(path: str | os.PathLike) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


def _load_bundle(path: str | os.PathLike, verify: bool) -> Bundle:
    root = Path(path)
    if not root.exists():
        raise BundleError(f"bundle not found: {root}")
    if not root.is_dir():
        raise BundleError(f"not a bundle directory: {root}")
    if not (root / MANIFEST).is_file():
        raise BundleError(f"not a vilt-edge bundle (no {MANIFEST}): {root}")
    manifest = Manifest.from_json(_read_json(root / MANIFEST, MANIFEST))
    for name in ("tokenizer.json", "preprocessor.json", "labels.json"):
        if name not in manifest.files:
            raise BundleError(f"{MANIFEST}: {name} is not in its file list")
    for name, expected in manifest.files.items():
        file_path = root / name
        if Path(name).is_absolute() or ".." in Path(name).parts:
            raise BundleError(f"{MANIFEST}: file name {name!r} points outside the bundle")
        if not file_path.is_file():
            raise BundleError(f"{name}: missing from bundle {root}")
        if verify and sha256_file(file_path) != expected:
            raise BundleError(f"{name}: altered or truncated (sha256 does not match the manifest)")
    preprocessing = Preprocessing.from_json(
        _read_json(root / "preprocessor.json", "preprocessor.json")
    )
    labels = _read_json(root / "labels.json", "labels.json")
    if not isinstance(labels, list) or not all(isinstance(label, str) for label in labels):
        raise BundleError("labels.json: must be a list of answer strings")
    return Bundle(root, manifest, preprocessing, tuple(labels))


def check_output(
    final: str | os.PathLike, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
) -> None:
    """Refuse, before any slow work, an output a bundle may not be written to: one that exists
    without `overwrite`, one vilt-edge did not write (`vilt_edge.outputs`), or the command's own
    input where the file system cannot swap the finished bundle in atomically."""
    final = Path(final)
    if not final.exists():
        return
    if not overwrite:
        raise BundleError(f"output exists: {final} (choose another path or pass --overwrite)")
    check_replaceable(final, "bundle")
    own_input = same_or_inside(final, inputs)
    if own_input is not None and not can_exchange(final.parent):
        raise OutputError(
            f"{final} is this command's input ({own_input}), and its file system cannot swap "
            "folders atomically; write to a new path"
        )


@contextmanager
def atomic_directory(
    final: Path, overwrite: bool = False, inputs: Sequence[str | os.PathLike] = ()
) -> Iterator[Path]:
    """Yield a temporary sibling of `final`; swap it into place only if the block succeeds.

    An existing `final` is replaced only with `overwrite` and only if it is a vilt-edge bundle
    (`check_output`); the swap is atomic where the file system allows, so even a command's own
    input (`inputs`) is a loadable bundle, old or new, at every instant."""
    final = Path(final)
    check_output(final, overwrite, inputs)
    # Checked again at the end: what appeared there meanwhile is no different.
    with staged_directory(final, check=lambda: check_output(final, overwrite, inputs)) as staging:
        yield staging


def write_bundle(
    out: Path,
    manifest_fields: dict[str, Any],
    write_files: Callable[[Path], None],
    overwrite: bool = False,
    inputs: Sequence[str | os.PathLike] = (),
) -> Bundle:
    """Write a bundle atomically: `write_files(staging)` fills the directory, then hashes and
    the manifest are written last, and the directory is swapped into place (`inputs`: what the
    command reads, which `out` may replace only atomically)."""
    with atomic_directory(out, overwrite=overwrite, inputs=inputs) as staging:
        write_files(staging)
        files = {
            entry.name: sha256_file(entry)
            for entry in sorted(staging.iterdir())
            if entry.is_file() and entry.name != MANIFEST
        }
        manifest = Manifest(files=files, **manifest_fields)
        (staging / MANIFEST).write_text(json.dumps(manifest.to_json(), indent=2) + "\n")
        # What we hand back must load: read it back (files just hashed, so no second hash),
        # then point it at where it now lives.
        written = load_bundle(staging, verify=False)
    return dataclasses.replace(written, path=Path(out))

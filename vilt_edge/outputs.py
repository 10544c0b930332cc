"""What vilt-edge may replace: only what it wrote itself, and never its own input half-done.

    from vilt_edge.outputs import check_replaceable, swap_directories
    check_replaceable(Path("out/int8"), want="bundle")   # OutputError unless vilt-edge wrote it

`--overwrite` replaces an output only when vilt-edge recognises it as its own:
- a bundle: `manifest.json` of the vilt-edge bundle format, and no entry it does not list;
- a report folder: the report's marker, and only the files a report writes;
- a distill run: its `.distill/run.json` (distill itself refuses a run of another recipe);
- a pipeline folder: `pipeline.json`, and every other entry one of the above or a results file;
- a results file: JSON with the vilt-edge results schema.
Anything else (a user's folder, a file of theirs) is refused in one line naming the path, so a
mistyped `-o ~/projects --overwrite` deletes nothing.

A finished output replaces the old one by an atomic exchange of the two directories
(Linux `renameat2(RENAME_EXCHANGE)`): a reader sees the old bundle or the new one at every
instant, which is what lets `vilt-edge quantize B -o B --overwrite` replace its own input.
Where the file system cannot exchange, the old folder is moved aside and the new one renamed
into place (an instant with neither), and replacing a command's own input is refused instead.

Every write goes through the three helpers at the end: `write_file_atomically` (one file),
`staged_directory` (a folder swapped in whole: bundles, reports) and `staged_files` (files
moved into a folder that also holds other state, with the file that marks it complete last:
model directories). All keep the permissions the user's umask gives, as for any file they write
(`tempfile.mkstemp` / `mkdtemp` would make outputs readable by their owner only).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from vilt_edge.errors import OutputError

BUNDLE_MANIFEST = "manifest.json"
BUNDLE_FORMAT = "vilt-edge-bundle"
REPORT_MARKER = ".vilt-edge-report"
REPORT_FILES = frozenset({"report.png", "report.md", "report.html", REPORT_MARKER})
PIPELINE_MARKER = "pipeline.json"
DISTILL_STATE = ".distill"
RESULTS_SCHEMA = "vilt-edge-results"

_RENAME_EXCHANGE = 2  # linux/fs.h


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def is_bundle(path: Path) -> bool:
    """A directory vilt-edge wrote as a bundle: its manifest lists every other entry."""
    manifest = _read_json(path / BUNDLE_MANIFEST) if path.is_dir() else None
    if not isinstance(manifest, dict) or manifest.get("format") != BUNDLE_FORMAT:
        return False
    listed = set(manifest.get("files") or {}) | {BUNDLE_MANIFEST}
    return all(entry.name in listed for entry in path.iterdir())


def is_report(path: Path) -> bool:
    if not path.is_dir() or not (path / REPORT_MARKER).is_file():
        return False
    return all(entry.name in REPORT_FILES for entry in path.iterdir())


def is_distill_run(path: Path) -> bool:
    return path.is_dir() and (path / DISTILL_STATE / "run.json").is_file()


def is_results_file(path: Path) -> bool:
    data = _read_json(path) if path.is_file() else None
    return isinstance(data, dict) and data.get("schema") == RESULTS_SCHEMA


def is_pipeline(path: Path) -> bool:
    """`pipeline.json` and, beside it, only outputs vilt-edge writes (bundles, the student, the
    report, results files) or their interrupted siblings' staging folders."""
    marker = _read_json(path / PIPELINE_MARKER) if path.is_dir() else None
    if not isinstance(marker, dict) or "options" not in marker:
        return False
    own = (is_bundle, is_report, is_distill_run, is_results_file, _is_results_folder)
    for entry in path.iterdir():
        if entry.name == PIPELINE_MARKER or _is_staging(entry):
            continue
        if not any(check(entry) for check in own):
            return False
    return True


def _is_results_folder(path: Path) -> bool:
    return path.is_dir() and all(is_results_file(entry) for entry in path.iterdir())


def _is_staging(entry: Path) -> bool:
    """A staging or retired folder of an interrupted vilt-edge write (`.NAME.partial-*`)."""
    return entry.name.startswith(".") and any(
        tag in entry.name for tag in (".partial-", ".old-", ".tmp-")
    )


KINDS = {
    "bundle": ("a vilt-edge bundle", is_bundle),
    "report": ("a vilt-edge report", is_report),
    "pipeline": ("a vilt-edge pipeline folder", is_pipeline),
    "results": ("a vilt-edge results file", is_results_file),
}


def check_replaceable(path: str | os.PathLike, want: str) -> None:
    """Raise `OutputError` unless `path` is absent or is vilt-edge's own `want` output
    ("bundle", "report", "pipeline" or "results"), which a new one may replace."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        return
    what, recognise = KINDS[want]
    if path.is_symlink():
        raise OutputError(f"{path} is a symbolic link; vilt-edge does not replace it ({what} "
                          "is written to a new path)")  # fmt: skip
    if recognise(path):
        return
    other = next((kind for kind, (_, check) in KINDS.items() if kind != want and check(path)), None)
    if other is not None:
        raise OutputError(
            f"{path} is {KINDS[other][0]}, not {what}; not replacing it (give a new or empty path)"
        )
    if want == "results":
        detail = "a folder" if path.is_dir() else "a file vilt-edge did not write"
    elif not path.is_dir():
        detail = "a file"
    elif not any(path.iterdir()):
        return  # an empty folder holds nothing to lose
    else:
        foreign = _foreign_entry(path, want)
        detail = f"a folder holding {foreign!r}, which" if foreign else "a folder"
        detail += " vilt-edge did not write"
    raise OutputError(
        f"{path} is {detail}; not replacing it with {what} (give a new or empty path)"
    )


def _foreign_entry(path: Path, want: str) -> str | None:
    """The first entry of `path` that keeps it from being `want` output, for the message."""
    entries = sorted(path.iterdir())
    if want == "bundle" and (path / BUNDLE_MANIFEST).is_file():
        manifest = _read_json(path / BUNDLE_MANIFEST) or {}
        listed = set(manifest.get("files") or {}) | {BUNDLE_MANIFEST}
        return next((e.name for e in entries if e.name not in listed), None)
    if want == "report" and (path / REPORT_MARKER).is_file():
        return next((e.name for e in entries if e.name not in REPORT_FILES), None)
    return entries[0].name if entries else None


def same_or_inside(path: Path, others: Iterable[str | os.PathLike]) -> Path | None:
    """The first of `others` that is `path` or lies inside it (a command's input that
    replacing `path` would remove), or None."""
    target = Path(path).resolve()
    for other in others:
        resolved = Path(other).resolve()
        if resolved == target or target in resolved.parents:
            return Path(other)
    return None


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE); False where the system or
    file system cannot, True once swapped."""
    libc_name = ctypes.util.find_library("c")
    if libc_name is None:
        return False
    try:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):  # not glibc >= 2.28, or not Linux
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]  # fmt: skip
    at_fdcwd = -100
    result = renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second),
                       _RENAME_EXCHANGE)  # fmt: skip
    if result == 0:
        return True
    error = ctypes.get_errno()
    if error in (22, 38, 95):  # EINVAL, ENOSYS, EOPNOTSUPP: this file system cannot
        return False
    raise OSError(error, os.strerror(error), str(first))


def can_exchange(directory: Path) -> bool:
    """Whether folders in `directory` can be swapped atomically (tried on two empty ones)."""
    directory.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix=".vilt-edge-probe-", dir=directory))
    try:
        (probe / "a").mkdir()
        (probe / "b").mkdir()
        return _exchange(probe / "a", probe / "b")
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def swap_directories(staging: Path, final: Path) -> None:
    """Put the finished `staging` at `final`, replacing what is there, and remove the old one.

    An atomic exchange where the file system has one; else move aside, rename, remove."""
    if not final.exists():
        os.replace(staging, final)
        return
    if _exchange(staging, final):
        shutil.rmtree(staging, ignore_errors=True)  # now the old output
        return
    retired = final.parent / f".{final.name}.old-{uuid.uuid4().hex[:12]}"
    os.replace(final, retired)
    try:
        os.replace(staging, final)
    except BaseException:
        os.replace(retired, final)
        raise
    shutil.rmtree(retired, ignore_errors=True)


def _staging_name(final: Path, tag: str) -> Path:
    return final.parent / f".{final.name}.{tag}-{uuid.uuid4().hex[:12]}"


def write_file_atomically(
    path: Path, data: bytes | str | memoryview | Callable[[Path], None]
) -> int:
    """Write `data` (bytes, text, a buffer, or a function that writes to the path it is given)
    to `path` through a temporary sibling, fsync and `os.replace`: a reader sees the old file or
    the new one, never half of one. Returns the bytes written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _staging_name(path, "tmp")
    try:
        if callable(data):
            data(temp)
        else:
            view = memoryview(data.encode("utf-8") if isinstance(data, str) else data).cast("B")
            handle = os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            with os.fdopen(handle, "wb") as stream:
                stream.write(view)
        with open(temp, "rb+") as stream:
            os.fsync(stream.fileno())
        size = temp.stat().st_size
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return size


def _new_staging(final: Path) -> Path:
    """An empty hidden sibling of `final` (same file system, so the last move is a rename)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging_name(final, "partial")
    staging.mkdir()
    return staging


@contextmanager
def staged_directory(final: Path, check: Callable[[], None] | None = None) -> Iterator[Path]:
    """Yield an empty sibling of `final` to fill; when the block succeeds, `check()` (that what
    appeared at `final` meanwhile may still be replaced) and swap it into place
    (`swap_directories`). On any failure the staging folder is removed and `final` untouched."""
    final = Path(final)
    staging = _new_staging(final)
    try:
        yield staging
        if check is not None:
            check()
        swap_directories(staging, final)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


@contextmanager
def staged_files(out: Path, last: str) -> Iterator[Path]:
    """Yield an empty sibling of the folder `out` to fill; when the block succeeds, move its
    files into `out` (created if absent), `last` (the file that marks the folder complete, e.g.
    a model's config.json) removed first and moved in last, so an interrupted write never leaves
    a folder that reads as complete with half its files."""
    out = Path(out)
    staging = _new_staging(out)
    try:
        yield staging
        out.mkdir(exist_ok=True)
        (out / last).unlink(missing_ok=True)
        names = sorted(p.name for p in staging.iterdir() if p.name != last)
        for name in names + [last]:
            if (staging / name).exists():
                os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

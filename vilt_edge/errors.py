"""Errors a user can cause. The CLI turns each into one line on stderr and a non-zero exit."""

from __future__ import annotations


class ViltEdgeError(Exception):
    """Base of all user-facing errors; the message is the whole line shown to the user."""

    exit_code = 1


class InputError(ViltEdgeError):
    """A bad image, question or option value."""

    exit_code = 2


class ModelError(ViltEdgeError):
    """A path or id that does not hold a usable ViLT model."""

    exit_code = 3


class BundleError(ViltEdgeError):
    """A bundle that is missing, incomplete, altered or of an unknown format."""

    exit_code = 4


class DataError(ViltEdgeError):
    """A data set that is missing, malformed, or of the wrong task."""

    exit_code = 5


class OutputError(ViltEdgeError):
    """An output path vilt-edge will not write: it holds what vilt-edge did not write there, or
    replacing it would remove the command's own input before the new output is complete."""

    exit_code = 6


def first_line(error: BaseException | str, fallback: str | None = None) -> str:
    """The first non-blank line of an exception's message (or of a text): what a one-line error
    shows of a library's multi-line one. Blank: `fallback`, else the exception's type name."""
    lines = [line.strip() for line in str(error).splitlines() if line.strip()]
    if lines:
        return lines[0]
    if fallback is not None:
        return fallback
    return type(error).__name__ if isinstance(error, BaseException) else ""

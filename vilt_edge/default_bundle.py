"""The embedded default: an easy-VQA ViLT shipped as weights inside the package.

Its bundle is exported once, on first use, into a cache directory keyed by the weights' hash
and the exporter's revision (`$VILT_EDGE_CACHE`, else `~/.cache/vilt-edge`), so
`vilt-edge ask default ...` works offline.
Shipping the ONNX beside the weights would double the package size, hence the one-time export.

This module is the deploy side's: with a warm cache it only finds and verifies the bundle (the
weights hashed once for the key, each bundle file once by `load_bundle`); only a cold cache
reaches into the model side (`vilt_edge.model.export`, which needs torch) to export it.
"""

from __future__ import annotations

import os
from pathlib import Path

from vilt_edge.bundle import EXPORT_REVISION, Bundle, load_bundle, sha256_file
from vilt_edge.errors import BundleError, ViltEdgeError
from vilt_edge.paths import DEFAULT_WEIGHTS_DIR, cache_dir


def default_bundle_path() -> Path:
    """Where the default model's bundle is cached (whether or not it is there yet)."""
    weights = DEFAULT_WEIGHTS_DIR / "model.safetensors"
    if not weights.is_file():
        raise BundleError(
            f"the embedded default model is not in this installation ({DEFAULT_WEIGHTS_DIR})"
        )
    return cache_dir() / f"default-{sha256_file(weights)[:16]}-e{EXPORT_REVISION}"


def default_bundle() -> Bundle:
    """The default model's bundle, loaded and verified; exported into the cache on first use
    (or when the cached copy is damaged)."""
    path = default_bundle_path()
    if path.is_dir():
        try:
            return load_bundle(path)
        except ViltEdgeError:
            pass  # a damaged cache entry is rebuilt below
    try:
        from vilt_edge.model.export import export_bundle
    except ImportError:
        raise BundleError(
            "the default bundle is exported on first use, which needs the model extra "
            "(pip install 'vilt-edge[model]'); or pass a bundle directory"
        ) from None
    return export_bundle("default", path, overwrite=True)


def open_bundle(spec: str | os.PathLike) -> Bundle:
    """A bundle by path, or the string "default" for the embedded model's (a directory named
    default loads as `./default`); verified like `load_bundle`."""
    if isinstance(spec, str) and spec == "default":
        return default_bundle()
    return load_bundle(spec)

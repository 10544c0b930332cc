"""The embedded default: an easy-VQA ViLT shipped as weights inside the package.

Its bundle is exported once, on first use, into a cache directory keyed by the weights' hash
and the exporter's revision (`$VILT_EDGE_CACHE`, else `~/.cache/vilt-edge`), so
`vilt-edge ask default ...` works offline.
Shipping the ONNX beside the weights would double the package size, hence the one-time export.
"""

from __future__ import annotations

import os
from pathlib import Path

from vilt_edge.bundle import Bundle, load_bundle, sha256_file
from vilt_edge.errors import BundleError, ViltEdgeError

DEFAULT_WEIGHTS_DIR = Path(__file__).parent / "default_weights"


def cache_dir() -> Path:
    return Path(os.environ.get("VILT_EDGE_CACHE", Path.home() / ".cache" / "vilt-edge"))


def default_bundle_path() -> Path:
    """The default model's bundle, exported into the cache on first use."""
    weights = DEFAULT_WEIGHTS_DIR / "model.safetensors"
    if not weights.is_file():
        raise BundleError(
            f"the embedded default model is not in this installation ({DEFAULT_WEIGHTS_DIR})"
        )
    from vilt_edge.bundle import EXPORT_REVISION

    bundle = cache_dir() / f"default-{sha256_file(weights)[:16]}-e{EXPORT_REVISION}"
    if bundle.is_dir():
        try:
            load_bundle(bundle)
            return bundle
        except ViltEdgeError:
            pass  # a damaged cache entry is rebuilt below
    try:
        from vilt_edge.export import export_bundle
    except ImportError:
        raise BundleError(
            "the default bundle is exported on first use, which needs the model extra "
            "(pip install 'vilt-edge[model]'); or pass a bundle directory"
        ) from None
    export_bundle("default", bundle, overwrite=True)
    return bundle


def open_bundle(spec: str | os.PathLike) -> Bundle:
    """A bundle by path, or the string "default" for the embedded model's (a directory named
    default loads as `./default`); verified like `load_bundle`."""
    if isinstance(spec, str) and spec == "default":
        return load_bundle(default_bundle_path())
    return load_bundle(spec)

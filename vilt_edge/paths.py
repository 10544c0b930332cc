"""Where the embedded default's weights ship and where bundles are cached: plain paths, no code
besides, so both the torch-free deploy side and the model side can read them."""

from __future__ import annotations

import os
from pathlib import Path

DEFAULT_WEIGHTS_DIR = Path(__file__).parent / "default_weights"


def cache_dir() -> Path:
    return Path(os.environ.get("VILT_EDGE_CACHE", Path.home() / ".cache" / "vilt-edge"))

"""What every runner shares: the registry's constructor and the context-manager protocol."""

from __future__ import annotations

import os
from typing import Any, TypeVar

import numpy as np

from vilt_edge.errors import BundleError, InputError

_R = TypeVar("_R", bound="RunnerBase")  # typing.Self is Python 3.11+; JetPack 6 ships 3.10


class RunnerBase:
    """`load(path, threads, settings)` builds the runner; `with` closes it on exit. A subclass
    defines `__init__(model_path, threads=None, settings=None)`, `run`, `describe` and `close`."""

    # True when the model takes any text length up to the bundle's: `ViltRuntime` then cuts a
    # batch's padding columns (`vilt_edge.runtime.trim_padding`). Runners that pad to the full
    # length (TensorRT's profiles, CUDA graphs) keep False.
    dynamic_text: bool = False
    # The most rows one `run` takes (a TensorRT engine's profile); None: any. `ViltRuntime`
    # splits larger groups, so an NLVR2 pair of one size runs as two calls on a batch-1 engine.
    max_batch: int | None = None

    def __init__(  # the signature `load` calls; subclasses replace it
        self,
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> None:
        raise NotImplementedError

    @classmethod
    def load(
        cls: type[_R],
        model_path: str | os.PathLike,
        threads: int | None = None,
        settings: dict[str, Any] | None = None,
    ) -> _R:
        """The registry's common constructor; `settings` are the manifest's `runtime_settings`
        (written by `vilt-edge compile`)."""
        return cls(model_path, threads=threads, settings=settings)

    def close(self) -> None:
        raise NotImplementedError

    # What every runner checks the same way
    input_names: list[str]
    model_path: Any  # a Path

    @staticmethod
    def check_threads(threads: int | None) -> None:
        """`threads` is None or a positive whole number; anything else raises `InputError`."""
        if threads is not None and (not isinstance(threads, int) or threads < 1):
            raise InputError(f"threads must be a positive whole number; got {threads!r}")

    def model_inputs(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The feeds the model declares, in its order (an exporter may prune an unused input,
        so others are left out); a declared input missing from `feeds` raises `BundleError`."""
        missing = [name for name in self.input_names if name not in feeds]
        if missing:
            raise BundleError(
                f"{self.model_path.name}: the model wants input(s) {', '.join(missing)}, "
                f"which the runtime does not provide"
            )
        return {name: feeds[name] for name in self.input_names}

    def __enter__(self: _R) -> _R:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

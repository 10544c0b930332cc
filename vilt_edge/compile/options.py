"""What `vilt-edge compile` is asked (`CompileOptions`) and what it returns (`CompileResult`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vilt_edge.bundle import Bundle
from vilt_edge.devices import DeviceProfile, Target, resolve_target
from vilt_edge.errors import InputError

COMPILERS = ("tensorrt", "torch-tensorrt", "torch-cuda")


@dataclass(frozen=True)
class CompileOptions:
    target: str
    max_batch: int = 1
    image_sizes: tuple[tuple[int, int], ...] = ()
    image_short_side: int | None = None  # the token budget: preprocess to this shorter side
    compiler: str | None = None  # GPU targets: the profile's runtime unless named
    dla: bool = False
    check_only: bool = False
    threads: int | None = None
    workspace_gb: float | None = None
    overwrite: bool = False
    tensorrt_version: str | None = None  # GPU targets without TensorRT here: which to plan for

    def resolve(self) -> Target:
        """The device this compiles for (`cpu`: this host's CPU profile)."""
        return resolve_target(self.target)

    def check(self, profile: DeviceProfile, patch: int) -> None:
        if self.max_batch < 1:
            raise InputError(f"--max-batch must be at least 1, not {self.max_batch}")
        if self.compiler is not None and self.compiler not in COMPILERS:
            raise InputError(f"unknown compiler {self.compiler!r}; choose {', '.join(COMPILERS)}")
        if self.threads is not None and self.threads < 1:
            raise InputError(f"--threads must be at least 1, not {self.threads}")
        for height, width in self.image_sizes:
            if min(height, width) < patch or height % patch or width % patch:
                raise InputError(
                    f"image size {height}x{width}: both sides must be multiples of {patch}"
                )
        if self.dla and profile.dla_cores == 0:
            raise InputError(f"{profile.name} has no DLA; drop --dla")
        if self.image_short_side is not None and (
            self.image_short_side < patch or self.image_short_side % patch
        ):
            raise InputError(
                f"--image-short-side {self.image_short_side} must be a positive multiple of the "
                f"patch size {patch}"
            )
        if self.workspace_gb is not None and self.workspace_gb <= 0:
            raise InputError("--workspace-gb must be positive")


@dataclass(frozen=True)
class CompileResult:
    """The compiled bundle (None for `--check`) and the summary `--json` prints: the target,
    the readiness checks, a note for the user (e.g. where a build kit's engine is built), and
    what the compile step recorded (`data`, as in the manifest's compile record)."""

    bundle: Bundle | None
    target: str
    kind: str
    ready: bool | None
    checks: tuple[Any, ...]
    note: str | None
    data: dict[str, Any]

    @property
    def state(self) -> str | None:
        return self.data.get("state")

    @classmethod
    def from_summary(cls, bundle: Bundle | None, summary: dict[str, Any]) -> CompileResult:
        return cls(
            bundle=bundle,
            target=summary["target"],
            kind=summary["kind"],
            ready=summary.get("ready"),
            checks=tuple(summary.get("checks") or ()),
            note=summary.get("note"),
            data=dict(summary),
        )

    def to_json(self) -> dict[str, Any]:
        return dict(self.data)

"""`vilt-edge compile`: make a bundle ready for one device.

    from vilt_edge.compile import CompileOptions, compile_bundle
    options = CompileOptions(target="jetson-orin-nano")
    bundle, summary = compile_bundle("out/int8", "out/orin", options)

CPU targets (x86-avx512-vnni, x86-avx2, arm64; `cpu` is this host's): ONNX Runtime's offline
graph optimization (the extended level, which holds on any CPU of the family; the layout-specific
level is applied at load time), saved as ONNX, or in ONNX Runtime's own ORT format for arm64
(what its mobile and minimal builds load), with session settings from the device profile
(threads, memory arena) in the manifest, which the runtime applies.

GPU targets (the Jetsons, cuda-gpu): the readiness check (`vilt_edge.compile.readiness`), then a
TensorRT engine built with TensorRT's Python API where TensorRT and a GPU are present
(`vilt_edge.compile.tensorrt`); elsewhere a bundle holding the ONNX model and the build step to
run on the device.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Bundle, check_output, external_data_file, write_bundle
from vilt_edge.devices import DeviceProfile, detect_host, get_profile
from vilt_edge.errors import BundleError, InputError

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

    def profile(self) -> DeviceProfile:
        if self.target.strip().lower() == "cpu":
            host = detect_host(has_nvidia_gpu=False)
            if host is None:
                raise InputError("no CPU device profile matches this host; name a --target")
            return host
        return get_profile(self.target)

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


def _source_family(bundle: Bundle) -> str | None:
    quantize = (bundle.manifest.extra or {}).get("quantize") or {}
    preset = quantize.get("preset") or {}
    return preset.get("family")


def check_precision(bundle: Bundle, profile: DeviceProfile) -> None:
    """A bundle's precision must be one the device runs, quantized for its runtime family."""
    precision = bundle.manifest.precision
    if precision not in profile.precisions:
        raise InputError(
            f"{profile.name} does not run {precision.upper()} (it runs "
            f"{', '.join(p.upper() for p in profile.precisions)}); compile an "
            f"{'FP32 or INT8' if profile.kind == 'cpu' else 'FP16 or INT8'} bundle"
        )
    family = _source_family(bundle)
    wanted = "cpu" if profile.kind == "cpu" else "tensorrt"
    if family is not None and family != wanted:
        raise InputError(
            f"this INT8 bundle was quantized for {family} (preset "
            f"{bundle.manifest.extra['quantize']['preset']['name']}); quantize the FP32 source "
            f"with --target {profile.name} for {profile.name}"
        )
    compiled = (bundle.manifest.extra or {}).get("compile")
    if compiled and compiled.get("state") == "pending-build" and compiled["target"] == profile.name:
        return  # a build kit, compiled on the device it was made for
    if compiled:
        raise InputError(
            f"{bundle.path} is already compiled for {bundle.manifest.extra['compile']['target']}; "
            f"compile its source bundle"
        )


def _cpu_files(
    bundle: Bundle, profile: DeviceProfile, options: CompileOptions, staging: Path
) -> dict[str, Any]:
    import onnxruntime

    model_file = "model.ort" if profile.name == "arm64" else "model.onnx"
    session = onnxruntime.SessionOptions()
    session.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    session.optimized_model_filepath = str(staging / model_file)
    if model_file.endswith(".ort"):
        session.add_session_config_entry("session.save_model_format", "ORT")
    session.intra_op_num_threads = 1
    if bundle.model_path.with_name(external_data_file(bundle.model_path.name)).is_file():
        if model_file.endswith(".onnx"):  # keep the weights memory-mappable (ORT format: inline)
            session.add_session_config_entry(
                "session.optimized_model_external_initializers_file_name",
                external_data_file(model_file),
            )
            session.add_session_config_entry(
                "session.optimized_model_external_initializers_min_size_in_bytes", "1024"
            )
    try:
        onnxruntime.InferenceSession(
            str(bundle.model_path), sess_options=session, providers=["CPUExecutionProvider"]
        )
    except Exception as error:  # noqa: BLE001 - onnxruntime raises its own unrelated types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise BundleError(f"onnxruntime cannot optimize {bundle.model_path}: {first}") from None
    return {
        "model_file": model_file,
        "format": "ort" if model_file.endswith(".ort") else "onnx",
        "optimization": "onnxruntime extended graph optimizations, offline",
        "onnxruntime": onnxruntime.__version__,
        "runtime_settings": {
            "intra_op_num_threads": options.threads or profile.cores,
            # Small devices keep memory for the app: no arena that holds on to peak usage.
            "enable_cpu_mem_arena": profile.memory_gb >= 8,
            # No per-shape activation plan: less peak memory at the same latency.
            "enable_mem_pattern": False,
        },
    }


def compile_bundle(
    source: str | Path,
    out: str | Path | None,
    options: CompileOptions,
    status: Callable[[str], None] | None = None,
) -> tuple[Bundle | None, dict[str, Any]]:
    """Compile `source` for `options.target` into a new bundle at `out` (atomic).

    With `check_only` only the readiness check runs (GPU targets) and nothing is written.
    Returns the new bundle (None for a check) and a summary.
    """
    status = status or (lambda message: None)
    if out is not None and not options.check_only:  # before any slow work
        check_output(out, options.overwrite, inputs=() if str(source) == "default" else (source,))
    from vilt_edge.default_model import open_bundle

    bundle = open_bundle(source)
    profile = options.profile()
    options.check(profile, bundle.manifest.patch_size)
    check_precision(bundle, profile)
    summary: dict[str, Any] = {"target": profile.name, "kind": profile.kind}
    if options.image_short_side is not None:
        # Fewer image tokens: the bundle preprocesses to the new size (the exported graph takes
        # any multiple of the patch size; position embeddings are interpolated to the grid).
        side = options.image_short_side
        prep = dataclasses.replace(
            bundle.preprocessing, shortest_edge=side, longest_edge=int(1333 / 800 * side)
        )
        bundle = dataclasses.replace(bundle, preprocessing=prep)
        summary["resolution"] = {"shortest_edge": side, "longest_edge": prep.longest_edge}

    if profile.kind == "gpu":
        from vilt_edge.compile.gpu import compile_for_gpu

        return compile_for_gpu(bundle, profile, out, options, status, summary)

    if options.check_only:
        summary["ready"] = True
        summary["checks"] = ["CPU targets run every op of the exported graph in ONNX Runtime"]
        return None, summary
    if out is None:
        raise InputError("--out is required unless --check")
    status(f"optimizing the graph for {profile.name} (ONNX Runtime, offline)")
    with tempfile.TemporaryDirectory(prefix="vilt-edge-compile-") as temp:
        work = Path(temp)
        record = _cpu_files(bundle, profile, options, work)
        summary.update(record)
        return _write(bundle, profile, out, options, work, record, summary), summary


def _write(
    bundle: Bundle,
    profile: DeviceProfile,
    out: str | Path,
    options: CompileOptions,
    work: Path,
    record: dict[str, Any],
    summary: dict[str, Any],
) -> Bundle:
    """The compiled bundle: the new model file(s) from `work`, the source's other files."""
    from vilt_edge import __version__

    manifest = bundle.manifest
    model_file = record["model_file"]

    def write_files(staging: Path) -> None:
        for entry in work.iterdir():
            if entry.is_file():
                shutil.copyfile(entry, staging / entry.name)
        for name in manifest.files:
            if name in (manifest.model_file, external_data_file(manifest.model_file)):
                continue  # the compiled model replaces the source's
            if not (staging / name).exists():
                shutil.copyfile(bundle.path / name, staging / name)
        if options.image_short_side is not None:
            text = json.dumps(bundle.preprocessing.to_json(), indent=2) + "\n"
            (staging / "preprocessor.json").write_text(text)

    compile_record = {
        **{k: v for k, v in record.items() if k not in ("model_file", "runtime_settings")},
        "target": profile.name,
        "profile": profile.to_json(),
        "max_batch": options.max_batch,
        "image_sizes": [f"{h}x{w}" for h, w in options.image_sizes],
        "resolution": summary.get("resolution"),
    }
    fields = {
        f: getattr(manifest, f)
        for f in (
            "task",
            "head_file",
            "text_length",
            "num_images",
            "patch_size",
            "inputs",
            "precision",
        )
    }
    fields.update(
        model_file=model_file,
        runtime=record.get("runtime", "onnxruntime"),
        source={
            **manifest.source,
            "bundle": str(Path(bundle.path).resolve()),
            "bundle_precision": manifest.precision,
            "bundle_model_sha256": manifest.files[manifest.model_file],
        },
        vilt_edge_version=__version__,
        extra={
            **(manifest.extra or {}),
            "compile": json.loads(json.dumps(compile_record)),
            "runtime_settings": record["runtime_settings"],
        },
    )
    return write_bundle(
        Path(out), fields, write_files, overwrite=options.overwrite, inputs=(bundle.path,)
    )

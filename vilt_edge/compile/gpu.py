"""GPU targets (Jetsons, cuda-gpu): readiness check, then a TensorRT engine or a build kit.

Where TensorRT and a CUDA GPU are present the engine is built here (`vilt_edge.compile.tensorrt`)
and the bundle holds it (`model.plan`, its timing cache) with the TensorRT version and GPU it was
built for; the TensorRT runtime refuses it anywhere else. Where they are not (this CPU machine,
a laptop preparing a Jetson), the bundle holds the ONNX model and its build step: the
`vilt-edge compile` command to run on the device and the equivalent `trtexec` line, in
`BUILD.md`, and the run-time says so instead of running.
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from vilt_edge.bundle import Bundle, save_model
from vilt_edge.compile.readiness import check_model, first_failure, operator_table
from vilt_edge.compile.write import write_compiled
from vilt_edge.errors import InputError
from vilt_edge.records import BUILT, PENDING_BUILD, READY

ENGINE_FILE = "model.plan"
TIMING_CACHE = "timing.cache"
MAX_DEFAULT_WORKSPACE = 4 << 30  # TensorRT rarely needs more for a ViLT; more only slows builds


def engine_shapes(bundle: Bundle, max_batch: int, image_sizes) -> dict[str, tuple]:
    """(min, opt, max) per input for one optimization profile. Without --image-sizes: any
    image the preprocessing can produce (sides from one patch up to its longest edge), tuned
    for a 4:3 camera frame at its shorter edge. The batch counts images: an NLVR2 engine
    encodes each image of a pair in a row of its own (same-size images share a call)."""
    manifest, prep = bundle.manifest, bundle.preprocessing
    patch = manifest.patch_size
    if image_sizes:
        heights = [h for h, _ in image_sizes]
        widths = [w for _, w in image_sizes]
        low, high = (min(heights), min(widths)), (max(heights), max(widths))
        opt = image_sizes[0]
    else:
        short = prep.shortest_edge - prep.shortest_edge % patch
        longest = max(prep.longest_edge - prep.longest_edge % patch, short)
        low, high = (patch, patch), (longest, longest)
        opt = (short, min(longest, (short * 4 // 3) // patch * patch))
    text = manifest.text_length
    batches = (1, 1, max_batch)
    shapes = {
        "input_ids": tuple((b, text) for b in batches),
        "attention_mask": tuple((b, text) for b in batches),
        "pixel_values": tuple(
            (b, 3, *size) for b, size in zip(batches, (low, opt, high), strict=True)
        ),
    }
    if manifest.head_file is not None:  # NLVR2: the engine encodes images, one per row
        shapes["image_token_type_ids"] = tuple((b,) for b in batches)
    return shapes


def _tensorrt_version(profile, requested: str | None) -> str:
    if requested is None:
        return profile.tensorrt[0]
    key = ".".join(requested.split(".")[:2])
    if key not in profile.tensorrt:
        raise InputError(
            f"{profile.name} ships TensorRT {', '.join(profile.tensorrt)}, not {requested}"
        )
    return key


def compile_for_gpu(
    bundle: Bundle,
    profile,
    out: str | Path | None,
    options,
    status: Callable[[str], None],
    summary: dict[str, Any],
) -> tuple[Bundle | None, dict[str, Any]]:
    import onnx

    compiler = options.compiler or profile.runtime
    if compiler in ("torch-cuda", "torch-tensorrt"):
        return compile_for_torch_cuda(bundle, profile, out, options, status, summary, compiler)
    from vilt_edge.compile.tensorrt import (
        EngineSpec,
        build_engine,
        tensorrt_status,
        trtexec_command,
    )
    from vilt_edge.compile.tensorrt_versions import build_plan, check_plan

    installed, reason = tensorrt_status()
    version = _tensorrt_version(
        profile, options.tensorrt_version if installed is None else installed
    )
    if installed is not None:
        operator_table(version)  # an installed version we have no table for is said plainly
    workspace = int(options.workspace_gb * 1e9) if options.workspace_gb else None
    if workspace is None:
        share = profile.max_workspace_fraction or 0.25
        workspace = int(min(share * profile.memory_gb * 1e9, MAX_DEFAULT_WORKSPACE))
    shapes = engine_shapes(bundle, options.max_batch, options.image_sizes)
    status(f"checking readiness for TensorRT {version} on {profile.name}")
    model = onnx.load(str(bundle.model_path))
    manifest = bundle.manifest
    checks = check_model(
        model, profile, version, shapes, workspace, manifest.text_length, manifest.patch_size
    )
    summary.update(
        tensorrt=version,
        checks=[c.to_json() for c in checks],
        input_shapes={k: [list(s) for s in v] for k, v in shapes.items()},
        workspace_bytes=workspace,
    )
    failed = first_failure(checks)
    if failed is not None:
        raise InputError(f"not ready for {profile.name}: {failed.detail}")
    # What this version will do with this bundle (strong typing from 10, DLA by release).
    plan = build_plan(version, manifest.precision, dla=options.dla)
    surface = check_plan(plan)  # against the real API of that version
    summary.update(ready=True, build_plan={**plan.to_json(), "checked_against": surface})
    status(plan.describe())
    if options.check_only:
        return None, summary
    if out is None:
        raise InputError("--out is required unless --check")

    spec = EngineSpec(
        precision=manifest.precision,
        input_shapes=shapes,
        workspace_bytes=workspace,
        dla_core=0 if options.dla else None,
    )
    out = Path(out)
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vilt-edge-engine-") as temp:
        work = Path(temp)
        if installed is not None:
            status(f"building the TensorRT {installed} engine (minutes on a Jetson)")
            spec = dataclasses.replace(spec, timing_cache=work / TIMING_CACHE)
            record = build_engine(bundle.model_path, work / ENGINE_FILE, spec, log=status)
            settings = {
                "tensorrt_version": record["tensorrt_version"],
                "gpu": record["gpu"],
                "compute_capability": record["compute_capability"],
                "max_shapes": {k: list(v[2]) for k, v in shapes.items()},
            }
            files = {"model_file": ENGINE_FILE, "runtime": "tensorrt", "state": BUILT,
                     "engine": record, "runtime_settings": settings}  # fmt: skip
        else:
            why = reason
            save_model(bundle.model_path, work / "model.onnx")
            command = (
                f"vilt-edge compile {shlex.quote(out.name)} --target {profile.name} "
                f"-o {shlex.quote(out.name + '-engine')} --max-batch {options.max_batch}"
            )
            if options.image_sizes:
                sizes = ",".join(f"{h}x{w}" for h, w in options.image_sizes)
                command += f" --image-sizes {sizes}"
            if options.dla:
                command += " --dla"
            trtexec = trtexec_command("model.onnx", ENGINE_FILE, spec, version)
            (work / "BUILD.md").write_text(_build_notes(profile, version, why, command, trtexec))
            files = {
                "model_file": "model.onnx",
                "runtime": "tensorrt",
                "state": PENDING_BUILD,
                "build_command": command,
                "trtexec": trtexec,
                "runtime_settings": {"state": PENDING_BUILD, "build_command": command},
            }
            summary["note"] = (
                f"{why}: wrote the ONNX model and its build step to {out}/BUILD.md; "
                f"on the {profile.name} run: {command}"
            )
        record = {k: v for k, v in files.items() if k != "runtime_settings"}
        record.update(
            tensorrt=version,
            compiler=compiler,
            checks=summary["checks"],
            input_shapes=summary["input_shapes"],
            workspace_bytes=workspace,
            dla=options.dla,
            runtime_settings=files["runtime_settings"],
        )
        summary.update({k: v for k, v in record.items() if k != "runtime_settings"})
        return write_compiled(bundle, profile, out, options, work, record, summary), summary


def _build_notes(profile, version: str, why: str, command: str, trtexec: str) -> str:
    return f"""# Build the TensorRT engine on the {profile.name}

This bundle holds the ONNX model, checked ready for TensorRT {version} on {profile.name}
(operators, Q/DQ layout, shapes, memory), but no engine yet: {why}. TensorRT engines are
specific to the GPU and the TensorRT version, so they are built on the device.

With vilt-edge on the device (JetPack provides TensorRT; `pip install 'vilt-edge[tensorrt]'`
adds cuda-python), from the folder that holds this bundle:

    {command}

The same build with TensorRT's own tool, inside this bundle's folder:

    {trtexec}
"""


def compile_for_torch_cuda(
    bundle: Bundle,
    profile,
    out: str | Path | None,
    options,
    status: Callable[[str], None],
    summary: dict[str, Any],
    compiler: str = "torch-cuda",
) -> tuple[Bundle | None, dict[str, Any]]:
    """A torch-cuda bundle: the source model as a Hugging Face directory, run in FP16 with CUDA
    graphs by `vilt_edge.runtimes.torch_cuda` (for GPUs without TensorRT). With
    `compiler="torch-tensorrt"` (where torch-tensorrt and a GPU are present) the model is
    compiled by torch-tensorrt's dynamo path instead and saved as an ExportedProgram
    (`model.ep`), which the same runtime loads; elsewhere that request is refused in one line."""
    import tempfile

    from vilt_edge.model.loading import load_model

    manifest = bundle.manifest
    if manifest.precision == "int8":
        raise InputError("torch-cuda runs FP16; compile the FP32 bundle this INT8 one came from")
    source = manifest.source.get("model")
    if not source:
        raise InputError(f"{bundle.path}: the manifest names no source model to run in torch")
    if options.dla:
        raise InputError("--dla is a TensorRT option; torch-cuda runs on the GPU")
    summary.update(compiler="torch-cuda", checks=[], ready=True)
    if options.check_only:
        return None, summary
    if out is None:
        raise InputError("--out is required unless --check")
    status(f"loading the source model {source}")
    loaded = load_model(source)
    expected = manifest.source.get("sha256")
    if expected and loaded.source.get("sha256") != expected:
        raise InputError(f"{source} changed since {bundle.path} was exported (sha256 differs)")
    settings = {"device": "cuda", "dtype": "float16", "cuda_graphs": True, "compile": None}
    with tempfile.TemporaryDirectory(prefix="vilt-edge-torch-") as temp:
        work = Path(temp)
        if compiler == "torch-tensorrt":
            status("compiling with torch-tensorrt (minutes)")
            shapes = engine_shapes(bundle, options.max_batch, options.image_sizes)
            workspace = int(options.workspace_gb * 1e9) if options.workspace_gb else None
            record = _torch_tensorrt_compile(loaded, shapes, work / "model.ep", workspace)
            settings = {"device": "cuda", "dtype": "float16", "cuda_graphs": False,
                        "format": "torch-tensorrt", **record}  # fmt: skip
            files = {"model_file": "model.ep", "runtime": "torch-cuda", "state": BUILT,
                     "compiler": compiler, "runtime_settings": settings}  # fmt: skip
            summary.update({k: v for k, v in files.items() if k != "runtime_settings"})
            return write_compiled(bundle, profile, out, options, work, files, summary), summary
        loaded.model.save_pretrained(work)
        for extra in work.iterdir():  # keep the two files the runner reads
            if extra.name not in ("config.json", "model.safetensors"):
                extra.unlink()
        record = {
            "model_file": "model.safetensors",
            "runtime": "torch-cuda",
            "state": READY,
            "compiler": "torch-cuda",
            "runtime_settings": settings,
        }
        summary.update({k: v for k, v in record.items() if k != "runtime_settings"})
        return write_compiled(bundle, profile, out, options, work, record, summary), summary


def _torch_tensorrt_compile(
    loaded, shapes: dict[str, tuple], path: Path, workspace, device: str = "cuda"
) -> dict:
    """torch-tensorrt's documented AOT path: `torch_tensorrt.compile(module, ir="dynamo",
    inputs=[torch_tensorrt.Input(min_shape=, opt_shape=, max_shape=, dtype=)])`, then
    `torch_tensorrt.save(...)` as an ExportedProgram."""
    import inspect

    try:
        import torch
        import torch_tensorrt
    except ImportError:
        raise InputError(
            "--compiler torch-tensorrt needs torch-tensorrt (pip install torch-tensorrt, or "
            "NVIDIA's Jetson wheel) and a CUDA GPU; without them use the default compiler"
        ) from None
    if device == "cuda" and not torch.cuda.is_available():
        raise InputError("--compiler torch-tensorrt needs a CUDA GPU; none is visible here")
    dtype = torch.float16 if device == "cuda" else torch.float32  # CPU: the tests' stand-in
    from vilt_edge.model.modeling import ExportWrapper, PooledEncoderWrapper, use_sdpa_attention

    use_sdpa_attention(loaded.model)
    names = [n for n in ("input_ids", "attention_mask", "pixel_values", "image_token_type_ids")
             if n in shapes]  # fmt: skip
    wrapper = PooledEncoderWrapper if "image_token_type_ids" in shapes else ExportWrapper
    module = wrapper(loaded.model.eval()).to(device=device, dtype=dtype)
    dtypes = {"input_ids": torch.long, "attention_mask": torch.long, "pixel_values": dtype,
              "image_token_type_ids": torch.long}  # fmt: skip
    inputs = [
        torch_tensorrt.Input(
            min_shape=shapes[name][0],
            opt_shape=shapes[name][1],
            max_shape=shapes[name][2],
            dtype=dtypes[name],
        )  # fmt: skip
        for name in names
    ]
    settings: dict[str, Any] = {"enabled_precisions": {dtype}}
    if workspace:
        settings["workspace_size"] = workspace
    compiled = torch_tensorrt.compile(module, ir="dynamo", inputs=inputs, **settings)
    example = [torch.ones(shapes[name][1], dtype=dtypes[name], device=device) for name in names]
    save_parameters = inspect.signature(torch_tensorrt.save).parameters
    key = "arg_inputs" if "arg_inputs" in save_parameters else "inputs"
    torch_tensorrt.save(compiled, str(path), output_format="exported_program", **{key: example})
    return {
        "torch_tensorrt": torch_tensorrt.__version__,
        "gpu": torch.cuda.get_device_name(0) if device == "cuda" else None,
    }

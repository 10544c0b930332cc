"""Every compiled bundle is written here: the compiled model, the source's other files, and the
compile record and runtime settings in the manifest (`vilt_edge.records`)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from vilt_edge import __version__
from vilt_edge.bundle import Bundle, derived_manifest_fields, external_data_file, write_bundle
from vilt_edge.compile.options import CompileOptions
from vilt_edge.devices import DeviceProfile
from vilt_edge.records import CompileRecord, RuntimeSettings


def write_compiled(
    bundle: Bundle,
    profile: DeviceProfile,
    out: str | Path,
    options: CompileOptions,
    work: Path,
    record: dict[str, Any],
    summary: dict[str, Any],
) -> Bundle:
    """The compiled bundle: the new model file(s) from `work`, the source's other files, and
    the compile record and runtime settings in its manifest."""
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
    fields = derived_manifest_fields(
        bundle,
        precision=manifest.precision,
        vilt_edge_version=__version__,
        records={
            "compile": CompileRecord.from_json(json.loads(json.dumps(compile_record))),
            "runtime_settings": RuntimeSettings.from_json(record["runtime_settings"]),
        },
        model_file=model_file,
        runtime=record.get("runtime", "onnxruntime"),
    )
    return write_bundle(
        Path(out), fields, write_files, overwrite=options.overwrite, inputs=(bundle.path,)
    )

"""INT8 and FP16 bundles from an FP32 bundle (`vilt-edge quantize`); needs the `quantize` extra
(onnx, with onnxruntime's quantization tools). See `quantizer` for the steps, `presets` for
the per-target settings and `options` for what it takes and returns.

The names below load on first use, so reading the presets (which every device profile names)
does not import onnx."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vilt_edge.quantize.options import QuantizeOptions, QuantizeResult
    from vilt_edge.quantize.quantizer import quantize_bundle

__all__ = ["QuantizeOptions", "QuantizeResult", "quantize_bundle"]


def __getattr__(name: str):
    if name in ("QuantizeOptions", "QuantizeResult"):
        from vilt_edge.quantize import options

        return getattr(options, name)
    if name == "quantize_bundle":
        from vilt_edge.quantize.quantizer import quantize_bundle

        return quantize_bundle
    raise AttributeError(f"module 'vilt_edge.quantize' has no attribute {name!r}")

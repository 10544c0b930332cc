"""INT8 and FP16 bundles from an FP32 bundle (`vilt-edge quantize`); needs the `quantize` extra
(onnx, with onnxruntime's quantization tools). See `quantizer` for the steps and `presets` for
the per-target settings."""

from vilt_edge.quantize.quantizer import QuantizeOptions, quantize_bundle

__all__ = ["QuantizeOptions", "quantize_bundle"]

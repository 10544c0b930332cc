"""vilt-edge: take a trained ViLT to edge devices.

`vilt_edge.runtime` is the torch-free deploy API; everything model-side (`export`, `loading`,
`modeling`) needs the `model` extra (torch, transformers, onnx).
"""

__version__ = "0.1.0"

"""vilt-edge: take a trained ViLT to edge devices.

`vilt_edge.runtime` is the torch-free deploy API; everything model-side (`vilt_edge.model`:
export, loading, modeling, training the default) needs the `model` extra (torch, transformers,
onnx). The README's "Architecture" section maps the rest.
"""

__version__ = "0.1.0"

"""The model side (needs the `model` extra: torch, transformers): the exact, exportable ViLT
(`modeling`), loading checkpoints (`loading`, `checkpoint`), the ONNX export that writes bundles
(`export`), training the embedded default (`train_default`) and the tiny synthetic models tests
and benchmarks build (`synthetic`). Nothing on the deploy side imports this package, except to
export the embedded default into its cache on first use."""

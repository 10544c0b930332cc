"""INT8 / FP16 quantization of bundles (the quantize issue builds it here)."""

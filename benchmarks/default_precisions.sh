#!/usr/bin/env bash
# Accuracy and latency of the embedded default at every precision, on the full easy-VQA test
# split (9,673 questions), measured by `vilt-edge validate` against the FP32 bundle, then one
# accuracy-versus-latency report. The figures in the README's quantization table come from here.
#
#   bash benchmarks/default_precisions.sh [OUT_DIR]     (default out/precisions; ~4 min, 2 cores)
#
# Needs the model, easyvqa, quantize and report extras.
set -euo pipefail
out=${1:-out/precisions}
threads=${THREADS:-2}
mkdir -p "$out"

vilt-edge export default -o "$out/fp32" --overwrite
vilt-edge validate "$out/fp32" --reference none --name "FP32" --threads "$threads" \
  --out "$out/fp32.json" --json > "$out/fp32.summary.json"

variants=(
  "int8-static|INT8 static (CPU preset)|--precision int8 --mode static"
  "int8-dynamic|INT8 dynamic|--precision int8 --mode dynamic"
  "fp16|FP16|--precision fp16"
  "int8-trt|INT8 static (TensorRT preset)|--precision int8 --mode static --target jetson-orin-nano"
)
for variant in "${variants[@]}"; do
  IFS='|' read -r key name flags <<< "$variant"
  # shellcheck disable=SC2086
  vilt-edge quantize "$out/fp32" -o "$out/$key" $flags --threads "$threads" --overwrite \
    --json > "$out/$key.quantize.json"
  vilt-edge validate "$out/$key" --name "$name" --threads "$threads" \
    --out "$out/$key.json" --json > "$out/$key.summary.json"
done

vilt-edge report "$out/fp32.json" "$out/int8-static.json" "$out/int8-dynamic.json" \
  "$out/fp16.json" "$out/int8-trt.json" -o "$out/report"
python3 - "$out" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'variant':<32}{'accuracy':>10}{'delta pt':>10}{'agree':>9}{'p50 ms':>9}{'e2e p50':>9}")
for key in ["fp32", "int8-static", "int8-dynamic", "fp16", "int8-trt"]:
    s = json.loads((out / f"{key}.summary.json").read_text())
    delta = s.get("accuracy_delta")
    agree = s.get("agreement")
    print(
        f"{key:<32}{100 * s['accuracy']:>9.2f}%"
        f"{'' if delta is None else f'{delta:+.2f}':>10}"
        f"{'' if agree is None else f'{100 * agree:.2f}%':>9}"
        f"{s['latency_ms']['p50']:>9.2f}{s['e2e_latency_ms']['p50']:>9.2f}"
    )
PY

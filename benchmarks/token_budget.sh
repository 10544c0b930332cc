#!/usr/bin/env bash
# The token budget: accuracy and latency of the default model at lower image resolutions (fewer
# patches), each a `vilt-edge compile --image-short-side S` of the same INT8 bundle, validated on
# the full easy-VQA test split against the FP32 default; one report shows the curve.
#
#   bash benchmarks/token_budget.sh [OUT_DIR]     (default out/token-budget; ~4 min on 2 cores)
#
# The default reads 56x56 images in 8x8 patches: 49 image tokens at 56, 9 at 24. SIDES and
# THREADS override. Needs the model, easyvqa, quantize and report extras.
set -euo pipefail
out=${1:-out/token-budget}
threads=${THREADS:-2}
sides=${SIDES:-56 48 40 32 24}
mkdir -p "$out"
vilt-edge export default -o "$out/fp32" --overwrite
vilt-edge quantize "$out/fp32" -o "$out/int8" --threads "$threads" --overwrite > /dev/null
vilt-edge validate "$out/fp32" --reference none --name "FP32, 56 px (49 patches)" \
  --threads "$threads" --out "$out/fp32.json" --json > "$out/fp32.summary.json"
results=("$out/fp32.json")
for side in $sides; do
  patches=$(( (side / 8) * (side / 8) ))
  vilt-edge compile "$out/int8" --target cpu --image-short-side "$side" --threads "$threads" \
    -o "$out/int8-$side" --overwrite > /dev/null
  vilt-edge validate "$out/int8-$side" --reference "$out/fp32" \
    --name "INT8, $side px ($patches patches)" --threads "$threads" \
    --out "$out/int8-$side.json" --json > "$out/int8-$side.summary.json"
  results+=("$out/int8-$side.json")
done
vilt-edge report "${results[@]}" -o "$out/report" > /dev/null
python3 - "$out" $sides <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
print(f"{'variant':<28}{'accuracy':>10}{'vs FP32':>10}{'p50 ms':>9}{'e2e p50':>9}")
for key in ["fp32"] + [f"int8-{s}" for s in sys.argv[2:]]:
    s = json.loads((out / f"{key}.summary.json").read_text())
    full = json.loads((out / f"{key}.json").read_text())
    delta = s.get("accuracy_delta")
    print(f"{full['variant']['name']:<28}{100 * s['accuracy']:>9.2f}%"
          f"{'' if delta is None else f'{delta:+.2f}':>10}{s['latency_ms']['p50']:>9.3f}"
          f"{s['e2e_latency_ms']['p50']:>9.3f}")
PY

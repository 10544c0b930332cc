#!/usr/bin/env bash
# Distill the embedded default (6 layers) into a 2-layer student and measure what it costs and
# gains: accuracy of teacher and student, FP32 and INT8, on the full easy-VQA test split (9,673
# questions, `vilt-edge validate`), INT8 latency of both in `vilt-edge bench` in the same run,
# and one report with all four variants. The README's distillation table comes from here.
#
#   bash benchmarks/distill_default.sh [OUT_DIR]     (default out/distill; ~30 min on 2 cores)
#
# Needs the model, easyvqa, quantize and report extras. LAYERS, EPOCHS, LR and THREADS override
# the recipe: 2 layers, 8 epochs at a peak learning rate of 5e-4 (3 epochs at 2e-4 left the
# student 3.4 points behind; 10 epochs at 5e-4 reached 99.6% held-out after epoch 8).
set -euo pipefail
out=${1:-out/distill}
layers=${LAYERS:-2}
epochs=${EPOCHS:-8}
lr=${LR:-5e-4}
threads=${THREADS:-2}
mkdir -p "$out"

# A previous run of the same distillation in $out/student is resumed (or, finished, reused);
# one of another configuration is refused by distill itself.
resume=()
[ -d "$out/student/.distill" ] && resume=(--resume)
vilt-edge distill default --layers "$layers" --data easy-vqa:train --epochs "$epochs" --lr "$lr" \
  --threads "$threads" -o "$out/student" "${resume[@]}" --json > "$out/distill.json"

vilt-edge export default -o "$out/teacher-fp32" --overwrite
vilt-edge export "$out/student" -o "$out/student-fp32" --overwrite
for model in teacher student; do
  vilt-edge quantize "$out/$model-fp32" -o "$out/$model-int8" --calib easy-vqa:train \
    --threads "$threads" --overwrite \
    --json > "$out/$model-int8.quantize.json"
done

# Every variant against the FP32 teacher, so the report's deltas are to the teacher.
vilt-edge validate "$out/teacher-fp32" --reference none --name "teacher FP32 (6 layers)" \
  --threads "$threads" --out "$out/teacher-fp32.json" --json > "$out/teacher-fp32.summary.json"
for variant in teacher-int8 student-fp32 student-int8; do
  case $variant in
    teacher-int8) name="teacher INT8 (6 layers)" ;;
    student-fp32) name="student FP32 ($layers layers)" ;;
    student-int8) name="student INT8 ($layers layers)" ;;
  esac
  vilt-edge validate "$out/$variant" --reference "$out/teacher-fp32" --name "$name" \
    --threads "$threads" --out "$out/$variant.json" --json > "$out/$variant.summary.json"
done

# INT8 latency of teacher and student, alternated three times so drift hits both alike.
for round in 1 2 3; do
  for model in teacher student; do
    vilt-edge bench "$out/$model-int8" --threads "$threads" --runs 200 --json \
      > "$out/$model-int8.bench$round.json"
  done
done

vilt-edge report "$out/teacher-fp32.json" "$out/teacher-int8.json" "$out/student-fp32.json" \
  "$out/student-int8.json" -o "$out/report" > /dev/null

python3 - "$out" <<'PY'
import json, statistics, sys
from pathlib import Path
out = Path(sys.argv[1])
d = json.loads((out / "distill.json").read_text())
print(f"distill: {d['student_layers']} of {d['teacher_layers']} layers (map {d['layer_map']}), "
      f"{d['steps']} steps, {d['epochs']} epochs, {d['train_seconds']:.0f} s")
print(f"{'variant':<16}{'accuracy':>10}{'vs teacher':>12}{'agree':>9}{'p50 ms':>9}")
for key in ["teacher-fp32", "teacher-int8", "student-fp32", "student-int8"]:
    s = json.loads((out / f"{key}.summary.json").read_text())
    delta, agree = s.get("accuracy_delta"), s.get("agreement")
    print(f"{key:<16}{100 * s['accuracy']:>9.2f}%"
          f"{'' if delta is None else f'{delta:+.2f} pt':>12}"
          f"{'' if agree is None else f'{100 * agree:.2f}%':>9}{s['latency_ms']['p50']:>9.3f}")
p50 = {m: statistics.median(json.loads((out / f"{m}-int8.bench{r}.json").read_text())
                            ["latency_ms"]["p50"] for r in (1, 2, 3))
       for m in ("teacher", "student")}
print(f"bench INT8 p50 (median of 3 alternated runs of 200): teacher {p50['teacher']:.3f} ms, "
      f"student {p50['student']:.3f} ms, ratio {p50['student'] / p50['teacher']:.2f}x")
PY

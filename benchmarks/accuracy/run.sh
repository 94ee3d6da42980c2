#!/usr/bin/env bash
# End-to-end accuracy run on CPU: synthetic data -> train -> export FP32 + INT8 (gated) ->
# evaluate both through the runtime's Segmenter -> results.json + results.md here.
#
#   benchmarks/accuracy/run.sh            # everything (~15-25 min on 2 cores)
#   STAGE=export benchmarks/accuracy/run.sh   # start at a later stage: data|train|export|eval|report
#   UNTIL=train benchmarks/accuracy/run.sh    # stop after a stage
#
# Knobs (environment): ITERS (360), BATCH (4), CROP (256x160), LR (0.01), RES (480x270),
# COUNT (300 scenes, 10% val), CALIB_METHOD (percentile), CALIB_COUNT (128), THREADS (torch threads, default: all cores), WORK (work dir).
set -euo pipefail
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cd "$HERE/../.."
WORK="${WORK:-$HERE/work}"
ITERS="${ITERS:-360}"
BATCH="${BATCH:-4}"
CROP="${CROP:-256x160}"
LR="${LR:-0.01}"
RES="${RES:-480x270}"
COUNT="${COUNT:-300}"
CALIB_METHOD="${CALIB_METHOD:-percentile}"
CALIB_COUNT="${CALIB_COUNT:-128}"
STAGE="${STAGE:-data}"
UNTIL="${UNTIL:-report}"
THREADS_OPT=()
if [[ -n "${THREADS:-}" ]]; then THREADS_OPT=(--threads "$THREADS"); fi
DATA="synthetic:$WORK/data"
mkdir -p "$WORK"
order=(data train export eval report)
run_from=0; run_to=4
for i in "${!order[@]}"; do
  [[ "${order[$i]}" == "$STAGE" ]] && run_from=$i
  [[ "${order[$i]}" == "$UNTIL" ]] && run_to=$i
done
want() {
  for i in "${!order[@]}"; do
    [[ "${order[$i]}" == "$1" && $i -ge $run_from && $i -le $run_to ]] && return 0
  done
  return 1
}

if want data; then
  echo "== data: $COUNT synthetic scenes at $RES"
  rm -rf "$WORK/data"
  cifrenet-edge data synth --out "$WORK/data" --count "$COUNT" --res "$RES" --seed 0 --val-fraction 0.1
fi
if want train; then
  echo "== train: $ITERS iterations, batch $BATCH, crop $CROP, lr $LR (poly 0.9)"
  rm -rf "$WORK/train"
  /usr/bin/time -v cifrenet-edge train --data "$DATA" --preset cityscapes --iters "$ITERS" \
    --batch-size "$BATCH" --crop "$CROP" --lr "$LR" --val-every 120 --output "$WORK/train" \
    "${THREADS_OPT[@]}" 2> >(tee "$WORK/train.stderr" >&2)
fi
if want export; then
  echo "== export: FP32 ONNX and INT8 Q/DQ ONNX at $RES, INT8 gated on the val split"
  W="$WORK/train/best.pth"; [[ -f "$W" ]] || W="$WORK/train/final.pth"
  cifrenet-edge export --weights "$W" --res "$RES" --target trt8.6 \
    --verify-images "$WORK/data/images/val" --output "$WORK/models/fp32.onnx"
  cifrenet-edge export --weights "$W" --res "$RES" --target trt8.6 --precision int8 \
    --calib "$WORK/data/images/train" --calib-count "$CALIB_COUNT" \
    --calib-method "$CALIB_METHOD" --eval-data "$DATA" --max-miou-drop 1.0 \
    --verify-images "$WORK/data/images/val" --output "$WORK/models/int8.onnx"
fi
if want eval; then
  echo "== eval: torch checkpoint, FP32 ONNX and INT8 ONNX through the Segmenter"
  W="$WORK/train/best.pth"; [[ -f "$W" ]] || W="$WORK/train/final.pth"
  cifrenet-edge eval "$W" --data "$DATA" --split val --res "$RES" --json "$WORK/eval_torch.json"
  cifrenet-edge eval "$WORK/models/fp32.onnx" --data "$DATA" --split val --json "$WORK/eval_fp32.json"
  cifrenet-edge eval "$WORK/models/int8.onnx" --data "$DATA" --split val \
    --compare "$WORK/models/fp32.onnx" --json "$WORK/eval_int8.json"
fi
if want report; then
  python "$HERE/report.py" --work "$WORK" --out "$HERE"
fi

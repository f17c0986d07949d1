#!/bin/sh
# The 1-AF against the 1-AF with the flow within the frame (base 'glow', affine couplings; and
# spline couplings) on bouncing balls: the shipped configurations, same seed (train.seed 0,
# data.seed 1234), same reduced budget: STEPS steps (the shipped configs train 600) on 16x16
# frames (theirs: 32x32), so that each fits a few minutes of CPU on a 2-core machine shared
# with other jobs; the cosine schedule of the reproduction; evaluated on the 256 test sequences.
# Run from the repository root: sh docs/results/within_frames/train_and_evaluate.sh
# The committed JSONs: the default RUNS (run together), then
# RUNS=bouncing_balls_1af_glow_spline (the spline-coupling variant, run alone afterwards).
set -e
STEPS=${STEPS:-100}
PYTHON=${PYTHON:-python}
OUT=docs/results/within_frames
RUNS=${RUNS:-"bouncing_balls_1af bouncing_balls_1af_glow"}
for run in $RUNS; do
  case "$run" in
    bouncing_balls_1af_glow_spline) config=bouncing_balls_1af_glow; extra=model.glow_coupling=spline ;;
    *) config=$run; extra=train.seed=0 ;;
  esac
  nice -n 19 "$PYTHON" -m seqflows train "$config" --out "runs/within_frames/$run" \
    --max-steps "$STEPS" --overwrite --no-progress train.lr_schedule=cosine \
    train.val_every=50 train.checkpoint_every=50 data.num_workers=0 data.size=16 "$extra" &
done
wait
for run in $RUNS; do
  nice -n 19 "$PYTHON" -m seqflows evaluate "runs/within_frames/$run/checkpoints/best.ckpt" \
    --json --no-progress > "$OUT/$run.json"
done

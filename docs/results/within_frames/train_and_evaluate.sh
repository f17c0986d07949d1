#!/bin/sh
# The 1-AF against the 1-AF with the flow within the frame (base 'glow', affine couplings) on
# bouncing balls: the shipped configurations, same seed (train.seed 0, data.seed 1234), same
# reduced budget of STEPS steps (the shipped configs train 600: this fits about 15 minutes of a
# shared 2-core CPU), the cosine schedule of the reproduction, evaluated on the 256 test
# sequences. Run from the repository root: sh docs/results/within_frames/train_and_evaluate.sh
set -e
STEPS=${STEPS:-200}
PYTHON=${PYTHON:-python}
OUT=docs/results/within_frames
for config in bouncing_balls_1af bouncing_balls_1af_glow; do
  nice -n 19 "$PYTHON" -m seqflows train "$config" --out "runs/within_frames/$config" \
    --max-steps "$STEPS" --overwrite --no-progress train.lr_schedule=cosine \
    train.val_every=100 train.checkpoint_every=100 data.num_workers=0 &
done
wait
for config in bouncing_balls_1af bouncing_balls_1af_glow; do
  nice -n 19 "$PYTHON" -m seqflows evaluate "runs/within_frames/$config/checkpoints/best.ckpt" \
    --json --no-progress > "$OUT/$config.json"
done

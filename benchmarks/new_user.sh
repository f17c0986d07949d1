#!/usr/bin/env bash
# The new user's journeys, timed: a fresh clone installed with a plain pip install into a virtual
# environment that already holds torch (the CPU wheel), then, outside the repository, a synthetic
# 200x20x32x32 uint8 video array (a bouncing square, seed 0) and a CSV of 40 sensor series
# (a seeded AR(1) in three columns) through train, evaluate, sample, convert and predict, and the
# video model at the paper's width (model.hidden=64) beside the default (16) for 30 steps.
# Used for the times in the README ("Your own data": Time and size).
#   bash benchmarks/new_user.sh REPOSITORY VENV      e.g. bash benchmarks/new_user.sh . /tmp/venv
set -euo pipefail
SRC=$(realpath "${1:-.}")
V=$(realpath "${2:?the virtual environment holding torch}")/bin
rm -rf /tmp/jclone /tmp/jwork; mkdir -p /tmp/jwork
t() { local start=$SECONDS; "$@"; printf 'TIME %d s: %s\n' "$((SECONDS - start))" "$*" >&2; }
git clone -q "$SRC" /tmp/jclone
t $V/pip install -q --disable-pip-version-check "/tmp/jclone[train]"
cd /tmp/jwork
$V/python - <<'PY'
import numpy as np
rng = np.random.default_rng(0)
N, T, S = 200, 20, 32
videos = np.zeros((N, T, S, S), np.uint8)
for n in range(N):
    position = rng.uniform(4, S - 12, 2); velocity = rng.uniform(-1.5, 1.5, 2)
    for t in range(T):
        r, c = position.astype(int)
        videos[n, t, r:r + 8, c:c + 8] = 255
        position += velocity
        for axis in range(2):
            if not 0 <= position[axis] <= S - 8:
                velocity[axis] *= -1; position[axis] = np.clip(position[axis], 0, S - 8)
np.save("videos.npy", videos)
rows = ["machine,time,temperature,pressure,flow"]
for m in range(40):
    x = np.zeros(3)
    for t in range(60):
        x = 0.8 * x + rng.normal(size=3) * [1.0, 0.5, 2.0]
        rows.append(f"m{m},{t},{20 + x[0]:.4f},{1000 + 10 * x[1]:.4f},{5 + x[2]:.4f}")
open("sensors.csv", "w").write("\n".join(rows) + "\n")
PY
S=$V/seqflows
t $S train my_video_array data.path=videos.npy --out runs/videos --max-steps 60 > train_video.json 2> train_video.err
$V/python -c "import json; d = json.load(open('train_video.json')); print('train JSON ok:', sorted(d))"
grep -E "read from the data|about .* a step|training|TIME" train_video.err || true
t $S evaluate runs/videos/checkpoints/best.ckpt --json > eval_video.json
$V/python -c "import json; d = json.load(open('eval_video.json')); print({k: v for k, v in d.items() if 'nats' in k or 'bits' in k})"
t $S sample runs/videos/checkpoints/best.ckpt --out runs/videos/samples --context 3 --length 10 > /dev/null
ls runs/videos/samples
t $S convert series sensors.csv data/sensors --id-column machine --time-column time > /dev/null
t $S train my_time_series data.dataset=store data.path=data/sensors --out runs/sensors --max-steps 300 > train_series.json 2> train_series.err
grep -E "read from the data|about .* a step|TIME" train_series.err || true
t $S evaluate runs/sensors/checkpoints/best.ckpt --json > eval_series.json
$V/python -c "import json; d = json.load(open('eval_series.json')); print({k: v for k, v in d.items() if 'nats' in k})"
t $S predict runs/sensors/checkpoints/best.ckpt --out runs/sensors/predict > predict_series.txt
tail -8 predict_series.txt
for width in 16 64; do
  $S train my_video_array data.path=videos.npy --out runs/videos_$width --max-steps 30 \
    model.hidden=$width 2>&1 >/dev/null | grep -E "parameters|a step"
done

#!/usr/bin/env bash
# Every benchmark on one CUDA GPU, in fp32, TF32 and bf16, in one table.
#
#   bash benchmarks/gpu.sh                  # on a CUDA machine, from the repository root
#   bash benchmarks/gpu.sh --out DIR        # keep the JSON results and logs in DIR
#   bash benchmarks/gpu.sh --dry-run        # the same logic on CPU at --quick sizes (a test)
#
# Runs, for each precision (fp32, tf32, bf16):
#   * benchmarks/train_step.py: the training step of the paper's 1-AF, SLVM and SLVM w/ 1-AF
#     (64x64 frames, batch 16, 13 frames) with the conv peak of the same precision, and bf16
#     with a channels-last model (bf16_cl: cuDNN's tensor cores prefer NHWC);
#   * benchmarks/evaluate.py and benchmarks/sample.py, when present, called as
#     `--device DEVICE --precision {32,tf32,bf16} [--quick] --json FILE`;
# then prints one table from their JSON files. Python: $PYTHON, else .venv/bin/python, else
# python3; seqflows is installed from this checkout (pip install --no-deps -e .) if missing.
# One process per benchmark and model (the GPU's peak memory is reset for each mode). The GPU
# run should take a few minutes on an H100-class GPU: give it a 10-minute limit.
set -uo pipefail

dry_run=0
out=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) dry_run=1 ;;
        --out) shift; out="${1:-}" ;;
        -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
            exit 0 ;;
        *) echo "gpu.sh: error: unknown option '$1' (use --dry-run, --out DIR)" >&2; exit 2 ;;
    esac
    shift
done

root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root" || exit 2
python="${PYTHON:-}"
if [ -z "$python" ]; then
    if [ -x .venv/bin/python ]; then python=.venv/bin/python; else python=python3; fi
fi
if ! "$python" -c "import seqflows" 2>/dev/null; then
    echo "gpu.sh: installing seqflows from $root" >&2
    "$python" -m pip install -q --no-deps --no-build-isolation -e . || exit 2
fi

if [ "$dry_run" = 1 ]; then
    device=cpu
    quick=(--quick)
    train_models=(1af slvm_1af)
else
    device=cuda
    quick=()
    train_models=(1af slvm slvm_1af)
    if ! "$python" -c "import torch, sys; sys.exit(not torch.cuda.is_available())"; then
        echo "gpu.sh: error: torch sees no CUDA device here; run with --dry-run on CPU" >&2
        exit 2
    fi
fi
if [ -z "$out" ]; then out="$(mktemp -d "${TMPDIR:-/tmp}/seqflows-gpu.XXXXXX")"; fi
mkdir -p "$out" || exit 2

"$python" - "$device" <<'EOF'
import sys, torch
device = sys.argv[1]
name = torch.cuda.get_device_name() if device == "cuda" else "CPU"
print(f"gpu.sh: torch {torch.__version__}, device {device} ({name})", flush=True)
EOF

failed=()
run() {  # run NAME LOG COMMAND...: runs one benchmark, its output in LOG
    local name="$1" log="$2"
    shift 2
    echo "gpu.sh: $name" >&2
    if ! "$@" >"$log" 2>&1; then
        failed+=("$name")
        echo "gpu.sh: $name failed; the end of $log:" >&2
        tail -n 20 "$log" >&2
    fi
}

for model in "${train_models[@]}"; do
    run "train_step $model" "$out/train_step_$model.log" \
        "$python" benchmarks/train_step.py --device "$device" --model "$model" \
        --modes fp32,tf32,bf16,bf16_cl --steps 10 --warmup 3 "${quick[@]}" --no-isolate \
        --json "$out/train_step_$model.json"
done

for bench in evaluate sample; do
    if [ ! -f "benchmarks/$bench.py" ]; then
        echo "gpu.sh: benchmarks/$bench.py is not in this checkout: skipped" >&2
        continue
    fi
    for precision in 32 tf32 bf16; do
        run "$bench $precision" "$out/${bench}_$precision.log" \
            "$python" "benchmarks/$bench.py" --device "$device" --precision "$precision" \
            "${quick[@]}" --json "$out/${bench}_$precision.json"
    done
done

"$python" - "$out" <<'EOF'
import json, sys
from pathlib import Path

PRECISION = {"32": "fp32"}  # evaluate.py and sample.py say 32, train_step.py fp32


def first(row, *keys):
    for key in keys:
        if isinstance(row.get(key), (int, float)):
            return row[key]
    return None


def cell(value, form):
    return "-" if value is None else format(value, form)


rows = []
for path in sorted(Path(sys.argv[1]).glob("*.json")):
    bench, _, rest = path.stem.partition("_")
    if bench == "train":
        bench = "train_step"
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        rows.append((bench, path.stem, "?", None, None, None, None, None))
        continue
    results = data.get("results", []) if isinstance(data, dict) else data
    for result in results if isinstance(results, list) else []:
        if not isinstance(result, dict):
            continue
        precision = result.get("mode") or result.get("precision") or rest.rpartition("_")[2]
        peak = result.get("peak")
        rows.append((
            bench,
            str(result.get("model") or result.get("label") or "-"),
            PRECISION.get(str(precision), str(precision)),
            first(result, "seconds_per_step", "seconds_per_generated_step", "seconds"),
            first(result, "frames_per_s", "frames_per_second", "samples_per_s"),
            first(result, "gflops_per_s"),
            first(result, "ratio", "ratio_to_peak"),
            first(result, "peak_memory_mib"),
        ))
header = (
    f"{'benchmark':<11} {'model':<10} {'precision':<9} {'s/step':>8} {'frames/s':>9} "
    f"{'GFLOP/s':>9} {'ratio':>6} {'memory MiB':>10}"
)
print(header)
print("-" * len(header))
for bench, model, precision, seconds, rate, gflops, ratio, memory in rows:
    print(
        f"{bench:<11} {model:<10} {precision:<9} {cell(seconds, '8.4f')} {cell(rate, '9.1f')} "
        f"{cell(gflops, '9.1f')} {cell(ratio, '6.1%')} {cell(memory, '10.0f')}"
    )
print(f"ratio: achieved over the conv peak of the same precision; JSON and logs in {sys.argv[1]}")
EOF
table=$?

if [ ${#failed[@]} -gt 0 ]; then
    echo "gpu.sh: error: failed: ${failed[*]} (logs in $out)" >&2
    exit 1
fi
exit "$table"

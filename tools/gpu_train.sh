#!/usr/bin/env bash
# The default weights' next training run on a lent GPU, in one device call (docs/training.md,
# "Training the default weights on a lent GPU"). Prepare here, on the CPU:
#
#   bash tools/make_training_data.sh runs/data          # real-pl and real-ho, if not made yet
#   python tools/pack_gpu_carry.py --pseudolabels runs/data/real-pl \
#       --mesh ../shared/assets/hand-mesh/webxr-generic-hand \
#       --boxes ../shared/data/real-hands/boxes.csv --holdout runs/data/real-ho --out .carry
#
# then run on the device: command "bash tools/gpu_train.sh", carry [".carry"], timeout_s 600.
#
# On the device (nothing but the repository and .carry; no mediapipe needed): the training
# composites from the carried training labels (COMPOSITES, in parallel processes), the held-out
# composites from the carried held-out photos (COMP2_HO of the model card: same photos, seed and
# one process), synthetic validation renders, then `dfl-train fit` from the committed weights
# with the losses and the guards of the last CPU run (run 12, weights/README.md) for MINUTES of
# training, and the guarded best save in fp16 into $OUT/fp16 with the run's metrics beside it.
# Sizes and the device come from the environment, so that the same script is checked here first
# with a 2-step CPU run (docs/training.md gives the command).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$repo"
out="${OUT:?set OUT (the device sets it)}"
carry="${CARRY:-.carry}"
work="${WORK:-/tmp/dfl-gpu}"
device="${DEVICE:-cuda}"
steps="${STEPS:-6000}"           # the learning-rate schedule's horizon (a guess: no GPU run yet)
minutes="${MINUTES:-6}"          # training stops, with a save, after this long
batch="${BATCH:-64}"
lr="${LR:-1e-4}"
ema="${EMA:-0.999}"
save_every="${SAVE_EVERY:-500}"
workers="${WORKERS:-5}"          # data-loading processes per source (three sources)
composites="${COMPOSITES:-6000}"
composite_workers="${COMPOSITE_WORKERS:-14}"
ho_composites="${HO_COMPOSITES:-300}"
val_renders="${VAL_RENDERS:-200}"
for need in "$carry/real" "$carry/real-ho" "$carry/mesh"; do
    if [ ! -d "$need" ]; then
        echo "gpu_train: $need is missing (tools/pack_gpu_carry.py ... --holdout ...)" >&2
        exit 2
    fi
done
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
train() { python3 -m dfl_infer.training.cli "$@"; }
step() { echo "[$(date -u +%H:%M:%S)] $*"; }
rm -rf "$work"
mkdir -p "$work" "$out"

step "data: $composites training composites, $ho_composites held-out ones, $val_renders renders"
train composite --data "$carry/real" --split train --out "$work/comp" --n "$composites" \
    --seed 7 --workers "$composite_workers" &
pids=($!)
train composite --data "$carry/real-ho" --split test --out "$work/comp2-ho" --n "$ho_composites" \
    --seed 20241 &
pids+=($!)
train synth --n "$val_renders" --split val --mesh "$carry/mesh" --backgrounds "$carry/real" \
    --out "$work/synth-val" &
pids+=($!)
for pid in "${pids[@]}"; do
    wait "$pid"
done

step "fit: $minutes minutes at most, batch $batch, lr $lr, on $device"
# The guards are version 7's own figures (one pass, GT crops): the composites' error may not
# grow, the real hands' presence and the composites' both-found rate keep their floors.
train fit --init weights --pair-loss matched --upright --attn-loss 1 --freeze-trunk none \
    --mix-batches --data "synth@1,folder:$work/comp@4,folder:$carry/real@3" \
    --synth-mesh "$carry/mesh" --synth-backgrounds "$carry/real" \
    --hand-crops 0.3 --partial-share 0.5 --steps "$steps" --stop-after-minutes "$minutes" \
    --batch-size "$batch" --lr "$lr" --ema "$ema" --save-every "$save_every" \
    --val "$carry/real-ho:test" --val "$work/comp2-ho:test" --val "$work/synth-val:val" \
    --best-guard 2:mean_2d_box_pct:8.90 --best-guard '1:handedness_acc:>=0.955' \
    --best-guard '2:both_found:>=0.95' --device "$device" --num-workers "$workers" \
    --log-every 50 --no-progress --out "$work/run"

step "export: the guarded best save in fp16"
best="$work/run/best"
[ -f "$best/model.safetensors" ] || best="$work/run"
python3 - "$best" "$out/fp16" <<'PY'
import sys

import torch

from dfl_infer.model import DFLModel

DFLModel.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[2], dtype=torch.float16)
PY
cp "$work/run/metrics.jsonl" "$out/metrics.jsonl"
python3 tools/val_table.py "$work/run/metrics.jsonl" | tee "$out/val_table.md"
step "done: $out/fp16 (from $best), $out/metrics.jsonl, $out/val_table.md"

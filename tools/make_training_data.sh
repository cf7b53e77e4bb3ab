#!/usr/bin/env bash
# Makes every dataset the default weights are trained and checked on, with the commands and seeds
# of docs/training.md and the model card (weights/README.md, "Training data" and "Figures"), into
# one folder (default runs/data, git-ignored). Each set is skipped when its folder already holds
# annotations, so a stopped run picks up where it was. Needs ../shared (the real-hands photos and
# the hand mesh) and `dfl-infer fetch-detector` (MediaPipe labels the real photos).
#
#   bash tools/make_training_data.sh [OUT] [SHARED]
#
# Sets (names as in the model card): real-bg (training photos outside their hand boxes: synthetic
# backgrounds), real-pl (REAL_PL: pseudo-labelled training photos), real-ho (REAL_HO: the 150
# held-out photos), synth (SYNTH, 6,000 renders, seed 0), synth-val (SYNTH_VAL, 200, seed 1),
# synth-test (SYNTH_TEST, 400, seed 20240), comp2 (COMP2, 6,000 composites, seed 7), comp2-ho
# (COMP2_HO, 300 held-out composites, seed 20241). On 2 CPU cores (AMD EPYC, 2026-12-05) the
# whole list took 8 minutes, 6 of them the 6,000 composites (5) and 6,000 renders (1).
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
out="${1:-$repo/runs/data}"
shared="${2:-$repo/../shared}"
images="$shared/data/real-hands/images"
mesh="$shared/assets/hand-mesh/webxr-generic-hand"
if [ ! -d "$images" ] || [ ! -d "$mesh" ]; then
    echo "make_training_data: needs $images and $mesh (../shared)" >&2
    exit 2
fi
mkdir -p "$out"

# True when the set SPLIT of folder DIR is already written (its annotation file exists).
done_set() {
    compgen -G "$1/annotations/$2/*_data.json" >/dev/null
}

step() {
    echo "[$(date -u +%H:%M:%S)] $*" >&2
}

if [ ! -f "$out/real-bg/boxes.csv" ]; then
    step "real-bg: backgrounds (training photos only) and the held-out list"
    mkdir -p "$out/real-ho"
    dfl-train holdout --images "$images" --backgrounds-out "$out/real-bg" \
        --list-out "$out/real-ho/held_out.txt"
fi
if ! done_set "$out/real-pl" train; then
    step "real-pl: MediaPipe pseudo-labels of the training photos"
    dfl-train pseudolabel --images "$images" --out "$out/real-pl" --split train --subset train
fi
if ! done_set "$out/real-ho" test; then
    step "real-ho: MediaPipe labels of the 150 held-out photos"
    dfl-train pseudolabel --images "$images" --out "$out/real-ho" --split test --subset holdout
fi
if ! done_set "$out/comp2-ho" test; then
    step "comp2-ho: 300 held-out composites"
    dfl-train composite --data "$out/real-ho" --split test --out "$out/comp2-ho" --n 300 \
        --seed 20241
fi
if ! done_set "$out/synth-val" val; then
    step "synth-val: 200 renders"
    dfl-train synth --n 200 --split val --mesh "$mesh" --backgrounds "$out/real-bg" \
        --out "$out/synth-val"
fi
if ! done_set "$out/synth-test" test; then
    step "synth-test: 400 renders"
    dfl-train synth --n 400 --split test --mesh "$mesh" --backgrounds "$out/real-bg" \
        --out "$out/synth-test"
fi
if ! done_set "$out/comp2" train; then
    step "comp2: 6,000 training composites"
    dfl-train composite --data "$out/real-pl" --split train --out "$out/comp2" --n 6000 --seed 7
fi
if ! done_set "$out/synth" train; then
    step "synth: 6,000 training renders"
    dfl-train synth --n 6000 --split train --mesh "$mesh" --backgrounds "$out/real-bg" \
        --out "$out/synth"
fi
step "all sets in $out"

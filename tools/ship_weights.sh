#!/usr/bin/env bash
# Ships a trained weights folder as the default model and runs every check the model card quotes
# (docs/training.md, "Training the default weights"; weights/README.md, "Figures"):
#
#   bash tools/ship_weights.sh RUN_WEIGHTS [DATA] [OUT]
#
# RUN_WEIGHTS: a `dfl-train fit` output (OUT or OUT/best). DATA: the sets of
# tools/make_training_data.sh (default runs/data). OUT: where the figures go (default
# runs/ship, git-ignored). Steps: the weights in fp16 into weights/ (the metadata of
# weights/config.json is kept: edit it for the new version by hand), the reference outputs and the
# ONNX graph re-made (tools/make_reference.py), `dfl-train evaluate` on the held-out sets with and
# without the per-hand pass and with the flip test, the composites' error split, the whole
# predictor on the held-out photos (also with the flip test), the examples report and the wild
# contact sheet (docs/wild_overlays.png). 3 minutes on 2 idle CPU cores (AMD EPYC, 2026-12-06)
# before the flip test's runs were added. Commit weights/, tests/data/ and docs/wild_overlays.png
# afterwards.
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="${1:?usage: ship_weights.sh RUN_WEIGHTS [DATA] [OUT]}"
data="${2:-$repo/runs/data}"
out="${3:-$repo/runs/ship}"
cd "$repo"
for set in synth-test real-ho comp2-ho; do
    if [ ! -d "$data/$set" ]; then
        echo "ship_weights: $data/$set is missing (bash tools/make_training_data.sh)" >&2
        exit 2
    fi
done
mkdir -p "$out"
step() {
    echo "[$(date -u +%H:%M:%S)] $*" >&2
}

step "fp16 weights from $src into weights/ (metadata of weights/config.json kept)"
python - "$src" <<'PY'
import dataclasses
import json
import sys
from pathlib import Path

import torch

from dfl_infer.model import DFLModel

src, dest = Path(sys.argv[1]), Path("weights")
shipped = json.loads((dest / "config.json").read_text()).get("metadata", {})
model = DFLModel.from_pretrained(src)
metadata = {**shipped, "pair_loss": model.config.metadata.get("pair_loss", shipped.get("pair_loss"))}
model.config = dataclasses.replace(model.config, metadata=metadata)
model.save_pretrained(dest, dtype=torch.float16)
PY
step "reference outputs and model.onnx"
python tools/make_reference.py

# One pass; with the per-hand pass (the predictor's default); with it and the flip test.
for run in "eval|" "eval-pass|--hand-pass" "eval-pass-flip|--hand-pass --flip-test"; do
    name="${run%%|*}"
    options="${run#*|}"
    for set in synth:synth-test folder:real-ho folder:comp2-ho; do
        kind="${set%%:*}"
        folder="${set#*:}"
        step "evaluate $folder $options"
        # shellcheck disable=SC2086  # the options are separate words
        dfl-train evaluate --weights weights --data "$kind:$data/$folder" --split test $options \
            --out "$out/$name/$folder/metrics.json"
    done
done

step "composites' error split"
python tools/composite_errors.py --composites "$data/comp2-ho:test" \
    --sources "$data/real-ho:test" | tee "$out/composite_errors.txt"

step "the whole predictor on the held-out photos"
python benchmarks/crop_planning.py --data "$data/real-ho" --plans default --json "$out/crop_planning.json" \
    | tee "$out/crop_planning.txt"
python benchmarks/crop_planning.py --data "$data/real-ho" --plans default --flip-test \
    --json "$out/crop_planning_flip.json" | tee "$out/crop_planning_flip.txt"

step "examples"
python tools/examples_report.py --overlays "$out/examples" | tee "$out/examples.txt"

if [ -d "$repo/../shared/data/wild" ]; then
    step "wild contact sheet"
    python tools/wild_contact_sheet.py --images "$repo/../shared/data/wild" \
        --out docs/wild_overlays.png
fi
step "done: figures in $out"

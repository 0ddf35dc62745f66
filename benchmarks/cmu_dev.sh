#!/usr/bin/env bash
# The CMU two-person development benchmark (README "Results on real mocap"): build the pair set from the
# dev trial, fit it without and with the (noisy, LVLM-like) contact maps, evaluate both against the truth.
# Usage: bash benchmarks/cmu_dev.sh [OUT_DIR] [extra apu fit flags...]
set -euo pipefail
out=${1:-runs/cmu_dev}
shift || true
data=${APU_CMU_DEV:-../shared/data/cmu/pairs/dev/18_19_01}
mkdir -p "$out"
apu synth "$data/18_01.bvh" "$data/19_01.bvh" --out "$out/pairs.npz" --seed 0 --json > "$out/synth.json"
apu fit "$out/pairs.npz" --out "$out/fits_no_contact" --no-contact --json "$@" > "$out/fit_no_contact.json"
apu fit "$out/pairs.npz" --out "$out/fits_contact" --json "$@" > "$out/fit_contact.json"
apu eval "$out/fits_no_contact" "$out/fits_contact" --pairs "$out/pairs.npz" --json > "$out/eval.json"
apu eval "$out/fits_no_contact" "$out/fits_contact" --pairs "$out/pairs.npz"

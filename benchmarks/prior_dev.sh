#!/usr/bin/env bash
# The pair prior on the CMU development trial (docs/PRIOR.md "Results"): a TEMPORAL split of the one dev
# trial (18_01 + 19_01, "walk, shake hands"), because there is only one development trial of one interaction
# type; the held-out set is not for development. Steps:
#   1. apu synth the trial (more frames than the default), split the pairs by mocap frame: earlier frames
#      (approach + handshake) = train part, later frames (release, walking apart) = test part;
#   2. fit the train part with the noisy contact maps: the filtered fits are the pseudo-ground truth;
#   3. train a small conditional prior on them; draw unconditional samples and measure their contact and
#      interpenetration (and the same statistics of the training fits and of the ground truth);
#   4. fit the test part without contacts, with the noisy contacts, and prior-guided; apu eval all three;
#   5. print the markdown table.
# Usage: bash benchmarks/prior_dev.sh [OUT_DIR]   (rerunnable: fits and training resume, synth is kept)
# Knobs (environment): ITERS=60,30 STEPS=1000 SPLIT_FRAME=130 MAX_FRAMES=40 MIN_CHANGE_MM=10
#   NEAR_FRACTION=0.5 CAMERAS=4 SEED=0 EVAL_TRAIN=1 (also fit the train part without contacts and with the
#   prior, an in-sample check of the prior) GT_PRIOR=1 (also train a prior on the ground truth of the train
#   frames instead of the fits, and fit the test part with it: is the prior or its pseudo-ground truth the
#   limit?).
set -euo pipefail
out=${1:-runs/prior_dev}
data=${APU_CMU_DEV:-../shared/data/cmu/pairs/dev/18_19_01}
iters=${ITERS:-60,30}
steps=${STEPS:-1000}
split_frame=${SPLIT_FRAME:-130}
eval_train=${EVAL_TRAIN:-1}
here=$(cd "$(dirname "$0")" && pwd)
py=${PYTHON:-python}
mkdir -p "$out"
{
    echo "commit $(git -C "$here" rev-parse HEAD)"
    git -C "$here" status --short --untracked-files=no | sed 's/^/dirty /'
    echo "iters $iters steps $steps split_frame $split_frame date $(date -u +%FT%TZ)"
} > "$out/run_info.txt"
t0=$(date +%s)
stamp() { echo "[$(($(date +%s) - t0)) s] $*" | tee -a "$out/run_info.txt" >&2; }

# 1. pair set and temporal split
if [ ! -f "$out/pairs.npz" ]; then
    apu synth "$data/18_01.bvh" "$data/19_01.bvh" --out "$out/pairs.npz" --seed "${SEED:-0}" \
        --max-frames "${MAX_FRAMES:-40}" --min-change-mm "${MIN_CHANGE_MM:-10}" \
        --near-fraction "${NEAR_FRACTION:-0.5}" --cameras "${CAMERAS:-4}" --json > "$out/synth.json"
fi
stamp synth
$py -m apu_jax.prior.split "$out/pairs.npz" --frame "$split_frame" \
    --train "$out/train.npz" --test "$out/test.npz" --json > "$out/split.json"
label=$($py -c "import json,sys; print(json.load(open(sys.argv[1]))['test']['labels'][0])" "$out/split.json")

# 2. pseudo-ground truth: the train part fitted with the noisy contact maps (default weights)
apu fit "$out/train.npz" --out "$out/fits_train_contact" --iters "$iters" --json > "$out/fit_train_contact.json"
stamp fit train contact

# 3. the prior, its samples, and reference statistics
apu prior train "$out/fits_train_contact" --out "$out/prior.npz" --steps "$steps" --json > "$out/prior_train.json"
stamp prior train
if [ ! -f "$out/prior_sample.json" ]; then
    apu prior sample "$out/prior.npz" --n 64 --seed 0 --out "$out/samples.npz" --json > "$out/prior_sample.json"
    stamp prior sample
fi
if [ ! -f "$out/quality_reference.json" ]; then
    $py "$here/prior_report.py" quality "$out/fits_train_contact" "$out/train.npz" "$out/test.npz" \
        --out "$out/quality_reference.json"
    stamp reference quality
fi

# 4. the test part: no contacts (GMM), noisy contacts, prior-guided
apu fit "$out/test.npz" --out "$out/fits_test_no_contact" --no-contact --iters "$iters" --json \
    > "$out/fit_test_no_contact.json"
apu fit "$out/test.npz" --out "$out/fits_test_contact" --iters "$iters" --json > "$out/fit_test_contact.json"
apu fit "$out/test.npz" --out "$out/fits_test_prior" --prior "$out/prior.npz" --iters "$iters" --json \
    > "$out/fit_test_prior.json"
stamp fits test
test_fits=("$out/fits_test_no_contact" "$out/fits_test_contact" "$out/fits_test_prior")
gt_flag=()
if [ "${GT_PRIOR:-0}" = 1 ]; then
    apu prior train "$out/train.npz" --out "$out/prior_gt.npz" --steps "$steps" --json > "$out/prior_gt_train.json"
    if [ ! -f "$out/prior_gt_sample.json" ]; then
        apu prior sample "$out/prior_gt.npz" --n 64 --seed 0 --json > "$out/prior_gt_sample.json"
    fi
    apu fit "$out/test.npz" --out "$out/fits_test_prior_gt" --prior "$out/prior_gt.npz" --iters "$iters" --json \
        > "$out/fit_test_prior_gt.json"
    stamp GT prior
    test_fits+=("$out/fits_test_prior_gt")
    gt_flag=(--sample-gt "$out/prior_gt_sample.json")
fi
apu eval "${test_fits[@]}" --pairs "$out/test.npz" --json > "$out/eval_test.json"
train_flag=()
if [ "$eval_train" = 1 ]; then
    apu fit "$out/train.npz" --out "$out/fits_train_no_contact" --no-contact --iters "$iters" --json \
        > "$out/fit_train_no_contact.json"
    apu fit "$out/train.npz" --out "$out/fits_train_prior" --prior "$out/prior.npz" --iters "$iters" --json \
        > "$out/fit_train_prior.json"
    stamp fits train
    apu eval "$out/fits_train_no_contact" "$out/fits_train_contact" "$out/fits_train_prior" \
        --pairs "$out/train.npz" --json > "$out/eval_train.json"
    train_flag=(--train "$out/eval_train.json")
fi

# 5. the table
$py "$here/prior_report.py" table --label "$label" --test "$out/eval_test.json" "${train_flag[@]}" \
    --sample "$out/prior_sample.json" "${gt_flag[@]}" --quality "$out/quality_reference.json" | tee "$out/table.md"
stamp done

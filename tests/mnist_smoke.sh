#!/usr/bin/env bash
# Smoke test: the MNIST demo trains the resnet on a 5000-image slice for one
# epoch and must reach at least 90% on the first 1000 test images.
# Usage: mnist_smoke.sh MNIST_BINARY DATA_DIR
set -euo pipefail
bin=$1 data=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" --data "$data" --net resnet --epochs 1 --limit 5000 --test-limit 1000 --out "$out" | tee "$out/log"
last=$(tail -n 1 "$out/log")
acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' <<<"$last")
[ -n "$acc" ] || { echo "smoke: the last line is not 'test accuracy: NN.NN%': $last"; exit 1; }
awk -v a="$acc" 'BEGIN { exit !(a >= 90) }' || { echo "smoke: accuracy $acc% is below 90%"; exit 1; }
[ -s "$out/mnist_errors.png" ] && [ -s "$out/mnist_filters.png" ] || { echo "smoke: pictures missing"; exit 1; }
echo "smoke: $acc% >= 90%"

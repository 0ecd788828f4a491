#!/usr/bin/env bash
# Smoke test: the Fashion-MNIST demo (blocks of its own: inverted residual and
# squeeze-excitation) trains one epoch on a 6000-image slice and must reach at
# least 70% on 1000 test images (it reaches 77.5%), printing its confusion
# matrix and ending with 'test accuracy: NN.NN%'.
# Usage: fashion_smoke.sh FASHION_BINARY [DATA_DIR]
set -euo pipefail
bin=$1 data=${2:-/usr/share/datasets/fashion-mnist}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
"$bin" --data "$data" --epochs 1 --limit 6000 --test-limit 1000 --warmup 50 | tee "$out/log"
last=$(tail -n 1 "$out/log")
acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' <<<"$last")
[ -n "$acc" ] || { echo "smoke: the last line is not 'test accuracy: NN.NN%': $last"; exit 1; }
grep -q "^confusion matrix" "$out/log" || { echo "smoke: no confusion matrix"; exit 1; }
grep -q "^7  *inverted_residual" "$out/log" || { echo "smoke: the summary lacks the block"; exit 1; }
awk -v a="$acc" 'BEGIN { exit !(a >= 70) }' || { echo "smoke: accuracy $acc% is below 70%"; exit 1; }
echo "smoke: $acc% >= 70%"

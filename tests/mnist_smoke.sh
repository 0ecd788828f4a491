#!/usr/bin/env bash
# Smoke test: the MNIST demo trains the resnet on a 5000-image slice for one
# epoch and must reach at least 90% on the first 1000 test images, in float32
# and with --precision medium; a run whose loss diverges (--lr 1e30) must stop
# with a message and a non-zero exit.
# Usage: mnist_smoke.sh MNIST_BINARY DATA_DIR
set -euo pipefail
bin=$1 data=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
# lr 0.02: a run of 79 steps peaks lower than the full run's 0.05 (with 0.05 it ends at 90.5%, with 0.02 at 94.3%)
"$bin" --data "$data" --net resnet --epochs 1 --limit 5000 --test-limit 1000 --lr 0.02 --out "$out" | tee "$out/log"
last=$(tail -n 1 "$out/log")
acc=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' <<<"$last")
[ -n "$acc" ] || { echo "smoke: the last line is not 'test accuracy: NN.NN%': $last"; exit 1; }
awk -v a="$acc" 'BEGIN { exit !(a >= 90) }' || { echo "smoke: accuracy $acc% is below 90%"; exit 1; }
[ -s "$out/mnist_errors.png" ] && [ -s "$out/mnist_filters.png" ] || { echo "smoke: pictures missing"; exit 1; }
echo "smoke: $acc% >= 90%"

# the same with the convolutions in bf16 (tg_set_float32_matmul_precision("medium"); float32 on a CPU without
# bf16 products): it trains as well
"$bin" --data "$data" --net resnet --epochs 1 --limit 5000 --test-limit 1000 --lr 0.02 --precision medium \
  --out "$out" | tee "$out/log16"
grep -q "^resnet: .*, precision medium$" "$out/log16" || { echo "smoke: no 'precision medium' in the header"; exit 1; }
acc16=$(sed -n 's/^test accuracy: \([0-9.]*\)%$/\1/p' <<<"$(tail -n 1 "$out/log16")")
awk -v a="$acc16" 'BEGIN { exit !(a >= 90) }' ||
  { echo "smoke: precision medium: accuracy '$acc16' is below 90%"; exit 1; }
echo "smoke: precision medium: $acc16% >= 90% (float32: $acc%)"

# a run that diverges stops at the first non-finite step, says so, and exits non-zero
if "$bin" --data "$data" --net lenet --epochs 1 --limit 512 --test-limit 100 --lr 1e30 --out "$out" >"$out/div" 2>&1; then
  echo "smoke: a diverging run (--lr 1e30) exited 0"; cat "$out/div"; exit 1
fi
grep -q "^mnist: training step: \(the loss is .*nan\|model: the .* holds\|sgd: the gradient of .* holds\)" "$out/div" ||
  { echo "smoke: a diverging run did not name the non-finite loss or gradient:"; cat "$out/div"; exit 1; }
echo "smoke: a diverging run stops: $(grep '^mnist:' "$out/div")"

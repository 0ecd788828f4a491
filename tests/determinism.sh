#!/usr/bin/env bash
# Determinism: the same seed gives the same weights and the same loss curve,
# run after run and whatever the thread count (conv splits work over images,
# GEMM over tiles of the output, and every sum keeps its order).
# Usage: determinism.sh MNIST_BINARY DATA_DIR
set -euo pipefail
bin=$1 data=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
run() { # name threads seed
  "$bin" --data "$data" --net resnet --epochs 2 --limit 1000 --test-limit 500 --threads "$2" --seed "$3" \
    --save "$out/$1.ckpt" --out "$out" >"$out/$1.log"
  # the loss curve and accuracies, without the timings
  sed -E 's/ [0-9.]+ img\/s.*//; s/\([0-9.]+ s\)//' "$out/$1.log" | grep -E '^epoch' >"$out/$1.curve"
}
run a 2 7
run b 2 7
run c 1 7
run d 2 8
cmp "$out/a.ckpt" "$out/b.ckpt" || { echo "determinism: two runs with seed 7 and 2 threads differ"; exit 1; }
cmp "$out/a.curve" "$out/b.curve" || { echo "determinism: loss curves differ"; exit 1; }
cmp "$out/a.ckpt" "$out/c.ckpt" || { echo "determinism: 1 and 2 threads give different weights"; exit 1; }
cmp "$out/a.curve" "$out/c.curve" || { echo "determinism: 1 and 2 threads give different loss curves"; exit 1; }
if cmp -s "$out/a.ckpt" "$out/d.ckpt"; then echo "determinism: seeds 7 and 8 give the same weights"; exit 1; fi
cat "$out/a.curve"
echo "determinism: identical weights ($(stat -c %s "$out/a.ckpt") bytes) and loss curves over runs and thread counts"

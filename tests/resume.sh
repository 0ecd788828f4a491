#!/usr/bin/env bash
# Exact resume: a run stopped after any step and resumed ends with the same
# checkpoint, bit for bit (weights, batch-norm statistics, optimizer moments,
# schedule position, tape random state), as the run that never stopped. The
# resnet has batch norm and dropout; augmentation is on; the pieces run on
# different thread counts; stops fall mid-epoch and on an epoch's last step.
# Usage: resume.sh MNIST_BINARY DATA_DIR
set -euo pipefail
bin=$1 data=$2
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
common=(--data "$data" --net resnet --limit 640 --test-limit 200 --epochs 2 --warmup 5 --augment --out "$out")
run() { # log-name extra-args...
  local name=$1
  shift
  "$bin" "${common[@]}" "$@" >"$out/$name.log" 2>&1 || { echo "resume: run $name failed:"; tail -20 "$out/$name.log"; exit 1; }
}
same() { # a b what
  cmp "$out/$1" "$out/$2" || {
    echo "resume: $3"
    for f in "$out"/*.log; do echo "== $(basename "$f")"; grep -E "^(epoch [0-9]+:|stopped|resuming|test acc)" "$f"; done
    exit 1
  }
}
for optim in sgd adamw; do
  run "$optim-whole" --optim "$optim" --threads 2 --save "$out/$optim-whole.ckpt"
  run "$optim-1" --optim "$optim" --threads 1 --save "$out/$optim-part.ckpt" --stop-after 7
  grep -q "stopped after step 7 of 20" "$out/$optim-1.log"
  run "$optim-2" --optim "$optim" --threads 2 --resume "$out/$optim-part.ckpt" --save "$out/$optim-part.ckpt" --stop-after 10
  grep -q "resuming .* after step 7 of 20 (epoch 1)" "$out/$optim-2.log"
  run "$optim-3" --optim "$optim" --threads 1 --resume "$out/$optim-part.ckpt" --save "$out/$optim-part.ckpt"
  grep -q "resuming .* after step 10 of 20 (epoch 2)" "$out/$optim-3.log"
  same "$optim-whole.ckpt" "$optim-part.ckpt" "$optim: stopped after steps 7 and 10 and resumed, the run ends elsewhere than the run that never stopped"
  # the last epoch's test accuracy is the same line in both
  a=$(grep "^test accuracy" "$out/$optim-whole.log") b=$(grep "^test accuracy" "$out/$optim-3.log")
  [ "$a" = "$b" ] || { echo "resume: $optim: '$a' then '$b' after resuming"; exit 1; }
  echo "resume $optim: stopped after 7 and 10 of 20 steps, resumed on other thread counts: the same $(stat -c %s "$out/$optim-whole.ckpt")-byte checkpoint; $a"
done
# a resume with other settings is refused, naming them
if "$bin" "${common[@]}" --batch 32 --resume "$out/sgd-part.ckpt" >"$out/bad.log" 2>&1; then
  echo "resume: --batch 32 on a batch-64 checkpoint was not refused"; exit 1
fi
grep -q "was saved by a run of batch 64, 640 images, 2 epochs, seed 42; this one is batch 32" "$out/bad.log" || { cat "$out/bad.log"; exit 1; }
echo "resume: exact for sgd and adamw; other settings refused"

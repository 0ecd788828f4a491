#!/usr/bin/env bash
# PyTorch interop, both ways, for the demo's three nets (tests/interop.py is the PyTorch side):
#   1. tapegrad trains 10 steps and saves safetensors (demos/mnist --save); PyTorch loads the
#      file into the same net written in PyTorch (load_state_dict(strict=True)) and its
#      evaluation-mode logits on 100 test images equal tapegrad's to 1e-5;
#   2. PyTorch trains 10 steps and writes safetensors (F32, num_batches_tracked as I64),
#      tapegrad loads it and its logits equal PyTorch's to 1e-5;
#   3. the same PyTorch weights as F16 and as BF16: tapegrad converts them to float32 on
#      load, and its logits equal those of PyTorch's net with the weights so rounded; and
#      tapegrad's F16 and BF16 files hold what PyTorch's .half() and .bfloat16() give;
#   4. demos/predict and demos/mnist --load take PyTorch's file as they take tapegrad's.
# Usage: interop.sh INTEROP_EXE MNIST_EXE PREDICT_EXE MNIST_DIR TESTS_DIR
set -euo pipefail
abs() { cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"; }
interop=$(abs "$1") mnist=$(abs "$2") predict=$(abs "$3") data=$(abs "$4") here=$(abs "$5")
py=/usr/bin/python3 # Debian's, with python3-torch (not whatever python3 comes first on PATH)
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "interop: FAILED: $*; the files stay in $out" >&2; trap - EXIT; exit 1; }
cd "$out"
"$interop" data "$data" 640 100 . || fail "tapegrad could not write the images"
for net in mlp lenet resnet; do
  # 1. tapegrad -> PyTorch
  "$mnist" --data "$data" --net "$net" --epochs 1 --limit 640 --test-limit 100 --threads 2 \
    --save "$net.tapegrad.safetensors" >"$net.log" 2>&1 || { cat "$net.log"; fail "$net: demos/mnist"; }
  "$interop" logits "$net" "$net.tapegrad.safetensors" test_x.f32 100 "$net.tapegrad.logits" || fail "$net: logits"
  "$py" "$here/interop.py" from-tapegrad "$net" "$net.tapegrad.safetensors" test_x.f32 "$net.tapegrad.logits" 10 ||
    fail "$net: tapegrad -> PyTorch"
  for kind in f16 bf16; do
    "$interop" half "$net" "$net.tapegrad.safetensors" "$net.tapegrad.$kind.safetensors" $kind || fail "$net: $kind"
    "$py" "$here/interop.py" half "$net.tapegrad.safetensors" "$net.tapegrad.$kind.safetensors" $kind ||
      fail "$net: tapegrad's $kind file"
  done
  # 2. and 3. PyTorch -> tapegrad
  "$py" "$here/interop.py" from-torch "$net" . || fail "$net: PyTorch's training"
  for kind in f32 f16 bf16; do
    "$interop" logits "$net" "$net.torch.$kind.safetensors" test_x.f32 100 "$net.torch.$kind.tapegrad.logits" ||
      fail "$net: tapegrad cannot load PyTorch's $kind file"
    "$py" "$here/interop.py" compare "$net ($kind): PyTorch -> tapegrad" "$net.torch.$kind.logits" \
      "$net.torch.$kind.tapegrad.logits" || fail "$net: PyTorch ($kind) -> tapegrad"
  done
  # 4. the demos read PyTorch's file
  "$predict" "$net.torch.f32.safetensors" "$here/fuzz/corpus/image/digit.png" >"$net.predict" 2>&1 &&
    grep -q "$net, " "$net.predict" || { cat "$net.predict"; fail "$net: demos/predict on PyTorch's file"; }
  "$mnist" --data "$data" --net "$net" --epochs 0 --test-limit 100 --load "$net.torch.f32.safetensors" \
    >"$net.load" 2>&1 || { cat "$net.load"; fail "$net: demos/mnist --load on PyTorch's file"; }
  echo "$net: demos/predict and demos/mnist --load read PyTorch's file: $(tail -1 "$net.load")"
done
echo "interop: all three nets, both ways"

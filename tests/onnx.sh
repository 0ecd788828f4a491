#!/usr/bin/env bash
# ONNX export, checked by ONNX itself and run by ONNX Runtime:
#   1. demos/mnist trains mlp, lenet and resnet briefly and exports each (--onnx) and saves it
#      (--save); demos/predict --onnx exports the same checkpoint to the same bytes; the
#      resnet is exported again with its batch norms folded (onnx_export fold);
#   2. a net of custom blocks covering the other ops (tests/onnx_export.c), plain, folded and
#      with the softmax option;
#   3. Debian's python3-onnx checks every file (tests/onnx_check.py: check_model with
#      full_check, strict shape inference equal to the value_info written, IR 8, opset 17);
#   4. ONNX Runtime (onnxruntime-node, tests/onnx_run.js) runs each on 100 test images at once
#      and on 7, and its outputs equal tapegrad's evaluation to 1e-4; the largest difference
#      per net is printed.
# Usage: onnx.sh INTEROP_EXE ONNX_EXPORT_EXE MNIST_EXE PREDICT_EXE MNIST_DIR TESTS_DIR
set -euo pipefail
abs() { cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"; }
interop=$(abs "$1") export=$(abs "$2") mnist=$(abs "$3") predict=$(abs "$4") data=$(abs "$5") here=$(abs "$6")
py=/usr/bin/python3 # Debian's, with python3-onnx
ort_version=1.30.0
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "onnx: FAILED: $*; the files stay in $out" >&2; trap - EXIT; exit 1; }

# ONNX Runtime for node, pinned, in a cache outside the source tree. --ignore-scripts: its install
# script only fetches GPU libraries from elsewhere; the CPU binaries are in the package itself.
command -v node >/dev/null && command -v npm >/dev/null || bash "$here/../scripts/install-deps.sh" nodejs npm
ort=${XDG_CACHE_HOME:-${HOME:-/tmp}/.cache}/tapegrad/onnxruntime
if ! grep -qs "\"version\": \"$ort_version\"" "$ort/node_modules/onnxruntime-node/package.json"; then
  mkdir -p "$ort"
  (cd "$ort" && npm install --ignore-scripts --no-audit --no-fund --loglevel=error "onnxruntime-node@$ort_version") ||
    fail "npm could not install onnxruntime-node $ort_version into $ort"
fi
export NODE_PATH="$ort/node_modules"

cd "$out"
"$interop" data "$data" 640 100 . || fail "tapegrad could not write the images"
models=()
for net in mlp lenet resnet; do
  "$mnist" --data "$data" --net "$net" --epochs 1 --limit 640 --test-limit 100 --threads 2 \
    --save "$net.safetensors" --onnx "$net.onnx" >"$net.log" 2>&1 || { cat "$net.log"; fail "$net: demos/mnist --onnx"; }
  "$interop" logits "$net" "$net.safetensors" test_x.f32 100 "$net.logits" || fail "$net: logits"
  "$predict" --onnx "$net.predict.onnx" "$net.safetensors" >"$net.predict" 2>&1 || { cat "$net.predict"; fail "$net: demos/predict --onnx"; }
  cmp "$net.onnx" "$net.predict.onnx" || fail "$net: demos/predict --onnx wrote other bytes than demos/mnist --onnx"
  models+=("$net:$net.onnx:$net.logits")
done
"$export" fold resnet resnet.safetensors resnet_fold.onnx || fail "resnet: the folded export"
models+=("resnet folded:resnet_fold.onnx:resnet.logits")
"$export" custom test_x.f32 100 . || fail "the custom net"
models+=("custom:custom.onnx:custom.logits" "custom folded:custom_fold.onnx:custom.logits"
  "custom softmax:custom_softmax.onnx:custom_softmax.logits")

# what each file must hold: batch norms (plain) or none (folded), and the ops the net is to cover
"$py" "$here/onnx_check.py" mlp.onnx Flatten,Gemm,Relu || fail "mlp: onnx's checks"
"$py" "$here/onnx_check.py" lenet.onnx Conv,Relu,MaxPool,Flatten,Gemm || fail "lenet: onnx's checks"
"$py" "$here/onnx_check.py" resnet.onnx Conv,BatchNormalization,Relu,Add,MaxPool,Flatten,Gemm BatchNormalization=6 ||
  fail "resnet: onnx's checks"
"$py" "$here/onnx_check.py" resnet_fold.onnx Conv,Relu,Add,MaxPool,Flatten,Gemm -BatchNormalization ||
  fail "resnet folded: onnx's checks"
ops=Conv,ConvTranspose,BatchNormalization,Relu,Sigmoid,Tanh,Mul,Sub,Add,HardSwish,Clip,Concat,AveragePool,MaxPool
ops=$ops,Resize,LayerNormalization,Reshape,Flatten,MatMul,GlobalAveragePool,Gemm
# three batch norms, two after a conv (folded) and one of (N,C) after an add (kept)
"$py" "$here/onnx_check.py" custom.onnx "$ops" BatchNormalization=3 || fail "custom: onnx's checks"
"$py" "$here/onnx_check.py" custom_fold.onnx "$ops" BatchNormalization=1 || fail "custom folded: onnx's checks"
"$py" "$here/onnx_check.py" custom_softmax.onnx "$ops,Softmax" || fail "custom softmax: onnx's checks"

node "$here/onnx_run.js" test_x.f32 100 "${models[@]}" || fail "ONNX Runtime's outputs"
echo "onnx: the three demo nets, the folded resnet and the custom net pass onnx's checks and ONNX Runtime"

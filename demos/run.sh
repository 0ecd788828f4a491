#!/usr/bin/env bash
# Installs what is missing, fetches MNIST, builds tapegrad (release) and trains
# the MNIST demo; arguments go to the demo (e.g. --net lenet --epochs 2).
# Usage: bash demos/run.sh [mnist options]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
bash scripts/fetch-mnist.sh
[ -f build/build.ninja ] || meson setup build --buildtype=release >/dev/null
ninja -C build >/dev/null
exec build/demos/mnist "$@"

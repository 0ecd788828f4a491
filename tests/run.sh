#!/usr/bin/env bash
# Runs every test: the whole suite built with AddressSanitizer and
# UndefinedBehaviorSanitizer (LeakSanitizer on), then the quick unit tests
# again under valgrind on a plain build, where the sanitizers' own runtime
# could hide something. Installs whatever a fresh Debian 12 machine lacks and
# fetches MNIST for the smoke test. Ends with "N passed, N failed".
# Usage: bash tests/run.sh [meson test options, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/.."
# graphviz: dot renders tape dumps (tests/test_dump.c); clang and its runtime: the fuzz targets;
# python3-torch: the PyTorch interop test (tests/interop.sh); chromium: the report in a browser (tests/report.sh);
# python3-onnx: the ONNX export's checks (tests/onnx.sh, which installs node's ONNX Runtime itself)
bash scripts/install-deps.sh graphviz valgrind clang libclang-rt-14-dev dataset-fashion-mnist python3-torch chromium \
  python3-onnx
bash scripts/fetch-mnist.sh
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0

asan=build-test
[ -f "$asan/build.ninja" ] ||
  meson setup "$asan" --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
ninja -C "$asan" >/dev/null
meson test -C "$asan" --print-errorlogs "$@" || status=$?

logs=("$asan/meson-logs/testlog.json")
if [ $# -eq 0 ]; then
  vg=build-valgrind
  [ -f "$vg/build.ninja" ] || meson setup "$vg" --buildtype=debugoptimized >/dev/null
  ninja -C "$vg" >/dev/null
  meson test -C "$vg" --print-errorlogs --suite tapegrad:unit \
    --wrapper 'valgrind -q --error-exitcode=1 --leak-check=full --errors-for-leak-kinds=definite,indirect' || status=$?
  logs+=("$vg/meson-logs/testlog-valgrind.json") # meson names the log after the wrapper
fi

python3 - "${logs[@]}" <<'PY'
import json, sys
ok = bad = 0
for log in sys.argv[1:]:
    for line in open(log):
        r = json.loads(line)
        if r["result"] in ("OK", "EXPECTEDFAIL"): ok += 1
        elif r["result"] != "SKIP": bad += 1
print(f"{ok} passed, {bad} failed")
PY
exit $status

#!/usr/bin/env bash
# Builds tapegrad with AddressSanitizer and UndefinedBehaviorSanitizer and runs
# every test; installs whatever a fresh Debian 12 machine lacks.
# Usage: bash tests/run.sh [meson test options, e.g. a test name]
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh graphviz # dot renders tape dumps (tests/test_dump.c)
bash scripts/fetch-mnist.sh
build=build-test
if [ ! -f "$build/build.ninja" ]; then
  meson setup "$build" --buildtype=debugoptimized -Db_sanitize=address,undefined -Db_lundef=false >/dev/null
fi
ninja -C "$build" >/dev/null
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
status=0
meson test -C "$build" --print-errorlogs "$@" || status=$?
python3 - "$build/meson-logs/testlog.json" <<'PY'
import json, sys
ok = bad = 0
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["result"] in ("OK", "EXPECTEDFAIL"): ok += 1
    elif r["result"] != "SKIP": bad += 1
print(f"{ok} passed, {bad} failed")
PY
exit $status

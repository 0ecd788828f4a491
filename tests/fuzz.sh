#!/usr/bin/env bash
# Builds a libFuzzer target (clang -fsanitize=fuzzer,address,undefined) and runs
# it from its seed corpus in tests/fuzz/corpus/TARGET, with the regression
# inputs kept there. New inputs go to a scratch folder.
#   RUNS (a number): that many inputs from a fixed seed, the same inputs on every
#     machine and every run, so a test either always passes or always fails (CI);
#   SECONDS followed by s (600s): exploring from a fresh random seed for that
#     long, to find new inputs (by hand; add what it finds to the corpus).
# Usage: bash tests/fuzz.sh idx|checkpoint|image [RUNS | SECONDSs, default 20000] [BUILD_DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
target=$1 budget=${2:-20000} build=${3:-$root/build-fuzz}
case $budget in
  *s) limit=(-max_total_time="${budget%s}") ;;
  *) limit=(-seed=1 -runs="$budget" -reload=0) ;;
esac
bash "$root/scripts/install-deps.sh" clang libclang-rt-14-dev >/dev/null
mkdir -p "$build"
exe=$build/fuzz_$target
# the library's sources, built into each target (no OpenMP: one thread is what a fuzzer wants)
srcs=("$root"/engine/*.c "$root"/ops/*.c "$root"/ops/kernels/*.c "$root"/nn/*.c)
# the image target goes on into the demos' digit (demos/digit.c), as predict does
[ "$target" = image ] && srcs+=("$root/demos/digit.c")
clang -std=c11 -D_POSIX_C_SOURCE=200809L -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
  -Wno-unknown-pragmas -I"$root/engine" -I"$root/ops" -I"$root/ops/kernels" -I"$root/nn" -I"$root/demos" -I/usr/include/stb \
  "$here/fuzz/fuzz_$target.c" "${srcs[@]}" -o "$exe" -lz -lstb -lcjson -lm
# a fixed seed alone is not enough: libFuzzer rereads its corpus folder every second
# (-reload=0 above), and its comparison dictionary picks up
# pointer values, which differ from run to run with address randomisation
norand=()
case $budget in *s) ;; *) if setarch -R true 2>/dev/null; then norand=(setarch -R); else limit+=(-use_cmp=0); fi ;; esac
work=$(mktemp -d)
log=$build/fuzz_$target.log # kept after the run: a failure's evidence
# on a failure, or when the test's time limit stops it: the log's end, and the inputs that failed
report() {
  echo "fuzz $target: ${norand[*]:-} $exe ${limit[*]}"
  tail -40 "$log"
  for a in "$work"/crash-* "$work"/leak-* "$work"/oom-* "$work"/timeout-* "$work"/slow-unit-*; do
    [ -e "$a" ] && cp "$a" "$here/fuzz/" && echo "fuzz: kept $(basename "$a") in tests/fuzz/: add it to the corpus once fixed"
  done
  return 0
}
trap 'rm -rf "$work"' EXIT
trap 'echo "fuzz $target: stopped by a signal; the log is $log"; report; exit 1' TERM INT
# -rss_limit_mb catches a huge allocation; -max_len keeps inputs small enough to be quick
ASAN_OPTIONS=detect_leaks=1:allocator_may_return_null=1:quarantine_size_mb=32 \
  "${norand[@]}" "$exe" "${limit[@]}" -rss_limit_mb=512 -malloc_limit_mb=256 -max_len=8192 -timeout=10 \
  -report_slow_units=2 -artifact_prefix="$work/" "$work" "$here/fuzz/corpus/$target" 2>"$log" || {
  report
  exit 1
}
grep -E "^#[0-9]+.*DONE|Done [0-9]+ runs" "$log" | tail -1
echo "fuzz $target: no crash, leak or huge allocation in ${limit[*]}${norand:+ (under ${norand[*]})}"

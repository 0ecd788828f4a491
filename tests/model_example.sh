#!/usr/bin/env bash
# The README's model examples: each ```c block under "## Models" is a piece of
# demos/model_example.c, word for word; the program trains, evaluates, saves,
# loads into a fresh model and must score the same (it exits 1 otherwise).
# Usage: model_example.sh MODEL_EXAMPLE_BINARY DATA_DIR SOURCE_ROOT
set -euo pipefail
bin=$1 data=$2 root=$3
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
python3 - "$root/README.md" "$root/demos/model_example.c" <<'PY'
import re, sys
readme, source = open(sys.argv[1]).read(), open(sys.argv[2]).read()
section = readme.split("\n## Models", 1)[1].split("\n## ", 1)[0]
blocks = re.findall(r"```c\n(.*?)```", section, re.S)
assert blocks, "README: no ```c block under ## Models"
for b in blocks:
    if b not in source:
        sys.exit("README: this block is not in demos/model_example.c as written:\n" + b)
print(f"README: {len(blocks)} model examples are demos/model_example.c's own lines")
PY
"$bin" "$data" "$out/example.ckpt" | tee "$out/log"
grep -q "^test accuracy .*, loaded into a fresh model" "$out/log"

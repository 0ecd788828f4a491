#!/usr/bin/env bash
# meson install puts the library, the headers and tapegrad.pc where another
# project finds them: build demos/mlp_step.c with pkg-config against a staged
# install, shared and static, and run it.
# Usage: install.sh BUILD_DIR SOURCE_DIR
set -euo pipefail
build=$1 src=$2
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
meson install -C "$build" --destdir "$stage" --no-rebuild --quiet
pcfile=$(find "$stage" -name tapegrad.pc | head -n 1)
[ -n "$pcfile" ] || { echo "install: no tapegrad.pc installed"; exit 1; }
pc=$(dirname "$pcfile")
# a sanitized build's library needs the same sanitizers in the program that links it
san=$(meson introspect --buildoptions "$build" | python3 -c \
  'import json,sys; print(next(o["value"] for o in json.load(sys.stdin) if o["name"] == "b_sanitize"))')
flags=()
[ "$san" = none ] || flags=(-fsanitize="$san")
export PKG_CONFIG_PATH=$pc PKG_CONFIG_SYSROOT_DIR=$stage
cc "${flags[@]}" "$src/demos/mlp_step.c" $(pkg-config --cflags --libs tapegrad) -o "$stage/mlp_shared"
LD_LIBRARY_PATH=$(dirname "$(find "$stage" -name 'libtapegrad.so' | head -n 1)") "$stage/mlp_shared"
cc "${flags[@]}" "$src/demos/mlp_step.c" $(pkg-config --cflags tapegrad) -o "$stage/mlp_static" \
  $(pkg-config --libs --static tapegrad | sed 's/-ltapegrad/-l:libtapegrad.a/')
"$stage/mlp_static"
echo "install: headers, libraries and tapegrad.pc work for a program outside the project (shared and static)"

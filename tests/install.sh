#!/usr/bin/env bash
# meson install puts the library, the headers and tapegrad.pc where another
# project finds them: build demos/mlp_step.c with pkg-config against a staged
# install, shared and static, and run it; build and gradcheck an op of a user's
# own against tapegrad_op.h; check that the shared library exports exactly the
# functions the installed headers mark TG_API (all tg_, no tg__ helper).
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
so=$(find "$stage" -name 'libtapegrad.so' | head -n 1)
LD_LIBRARY_PATH=$(dirname "$so") "$stage/mlp_shared"
cc "${flags[@]}" "$src/demos/mlp_step.c" $(pkg-config --cflags tapegrad) -o "$stage/mlp_static" \
  $(pkg-config --libs --static tapegrad | sed 's/-ltapegrad/-l:libtapegrad.a/')
"$stage/mlp_static"

# an op of one's own (tapegrad_op.h's example), gradchecked through the shared library
cat > "$stage/square.c" <<'END'
#include <stdio.h>
#include <tapegrad_op.h>
static int square_shape(tg_node *n, int *ndim, int *shape) {
    *ndim = n->in[0]->ndim;
    for (int i = 0; i < *ndim; i++) shape[i] = n->in[0]->shape[i];
    return 0;
}
static int square_forward(tg_tape *t, tg_node *n) {
    (void)t;
    const float *x = n->in[0]->data;
    for (int64_t i = 0; i < n->out->size; i++) n->out->data[i] = x[i] * x[i];
    return 0;
}
static int square_vjp(tg_tape *t, tg_node *n) { /* dx += dy * 2x */
    (void)t;
    const float *x = n->in[0]->data, *dy = n->out->grad;
    for (int64_t i = 0; i < n->out->size; i++) n->in[0]->grad[i] += dy[i] * 2 * x[i];
    return 0;
}
static const tg_op square_op = {.name = "square", .shape = square_shape, .forward = square_forward,
                                .vjp = square_vjp};
static tg_tensor *square(tg_tape *t, tg_tensor **x, void *ctx) {
    (void)ctx;
    return tg_apply(t, &square_op, x, 1, NULL);
}
int main(void) {
    tg_tensor *x = tg_param_new(1, (int[]){5});
    for (int i = 0; i < 5; i++) x->data[i] = (float)i - 2.5f;
    double rel;
    int rc = tg_gradcheck(square, &x, 1, NULL, NULL, &rel);
    printf("install: an op of its own, square: %s maxrel=%.2e %s\n", rc ? "FAIL" : "ok", rel, tg_last_error());
    tg_tensor_free(x);
    return rc != 0;
}
END
cc "${flags[@]}" -std=c11 -Wall -Wextra -Werror "$stage/square.c" $(pkg-config --cflags --libs tapegrad) -o "$stage/square"
LD_LIBRARY_PATH=$(dirname "$so") "$stage/square"

# what the shared library exports: every function the installed headers declare (each marked TG_API),
# and nothing else (all tg_, no tg__ helper, no test hook). The linker's own symbols and version nodes aside.
exported=$(nm -D --defined-only "$so" | awk '$2 != "A" {print $3}' | grep -vxE '_init|_fini|_edata|_end|__bss_start' | sort)
declared=$(cat "$(dirname "$(find "$stage" -name tapegrad_op.h | head -n 1)")"/tapegrad*.h |
  grep -oE '^[a-zA-Z_][a-zA-Z0-9_ ]*[ *]tg_[a-z0-9_]+[(]' | grep -oE 'tg_[a-z0-9_]+[(]$' | tr -d '(' | sort)
[ -n "$declared" ] || { echo "install: found no function declared in the installed headers"; exit 1; }
fail=0
if grep -vE '^tg_[a-z0-9]' <<<"$exported"; then
  echo "install: $so exports the symbols above: only tg_ names, and no tg__ helper, may leave it"; fail=1
fi
if comm -23 <(echo "$exported") <(echo "$declared") | grep .; then
  echo "install: $so exports the symbols above, which no installed header declares"; fail=1
fi
if comm -13 <(echo "$exported") <(echo "$declared") | grep .; then
  echo "install: the installed headers declare the functions above, and $so does not export them (no TG_API?)"; fail=1
fi
for f in tg_tape_new tg_backward tg_conv2d tg_gradcheck tg_apply tg_tape_rng tg_model_new tg_sgd_step; do
  grep -qx "$f" <<<"$exported" || { echo "install: $so does not export $f"; fail=1; }
done
for f in tg__alloc_count tg_op_table tg__malloc tg__op_mul; do
  ! grep -qx "$f" <<<"$exported" || { echo "install: $so exports the private $f"; fail=1; }
done
[ "$fail" = 0 ] || exit 1
echo "install: $so exports $(wc -l <<<"$exported") symbols, exactly the functions tapegrad.h, tapegrad_op.h and tapegrad_nn.h declare"
echo "install: headers, libraries and tapegrad.pc work for a program outside the project (shared and static)"

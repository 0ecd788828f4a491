#!/usr/bin/env bash
# Photos of handwritten digits read by demos/predict. tests/photos.c makes them: MNIST test digits
# written on paper and photographed badly (the sheet rotated, the table showing at an edge, shaded
# and unevenly lit paper, camera noise, specks, JPEG), and pictures with no digit (a dot, specks on
# blank paper, the sheet's edge). The net is a small resnet kept in tests/digits-resnet.safetensors
# (`mnist --net resnet --epochs 4 --augment --threads 1 --save FILE`: 99.45% on MNIST's test set;
# the optimizer's state left out). Passes when at least 95 of the 100 digits are named right and
# at least 8 of the 10 pictures without one are said to hold none (an error for a blank picture
# counts as saying so); then a 24-megapixel photo (6000x4000, a phone's) is read, not refused.
# Usage: photos.sh PHOTOS_EXE PREDICT_EXE MNIST_DIR TESTS_DIR
set -euo pipefail
abs() { cd "$(dirname "$1")" && echo "$(pwd)/$(basename "$1")"; }
photos=$(abs "$1") predict=$(abs "$2") data=$(abs "$3") here=$(abs "$4")
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
fail() { echo "photos: FAILED: $*; the pictures and predict's answers stay in $out" >&2; trap - EXIT; exit 1; }
"$photos" "$data" "$out" 100 10 6000x4000 || fail "the generator"
cd "$out"
# predict exits 1 when a picture cannot be classified (a blank one): the answers are what counts
"$predict" "$here/digits-resnet.safetensors" $(cut -d' ' -f1 labels.txt) >answers.txt 2>errors.txt || true
# one line per picture: "FILE: D (P%) ..." or "FILE: not a digit: ..." or "predict: image FILE: blank..."
read -r right digits refused blanks < <(awk '
  NR == FNR { label[$1] = $2; next }
  { f = ($1 == "predict:") ? $3 : $1; sub(":$", "", f); if (!(f in label)) next
    said = ($1 == "predict:" || $2 == "not") ? -1 : $2
    if (label[f] >= 0) { digits++; if (said == label[f]) right++; else print "wrong: " $0 " (it is a " label[f] ")" > "/dev/stderr" }
    else { blanks++; if (said == -1) refused++; else print "named: " $0 " (no digit)" > "/dev/stderr" } }
  END { print right + 0, digits + 0, refused + 0, blanks + 0 }' labels.txt answers.txt errors.txt)
echo "photos: $right of $digits digits named right, $refused of $blanks pictures without a digit said to hold none"
[ "$digits" -eq 100 ] && [ "$blanks" -eq 10 ] || fail "predict answered for $digits digits and $blanks blanks, not 100 and 10"
[ "$right" -ge 95 ] || fail "only $right of 100 digits right"
[ "$refused" -ge 8 ] || fail "only $refused of 10 pictures without a digit said to hold none"
# the phone's photo: the first test digit, a 7
big=$("$predict" "$here/digits-resnet.safetensors" big.jpg 2>&1) || fail "big.jpg: $big"
echo "$big"
case $big in *"big.jpg: 7 ("*) ;; *) fail "big.jpg is not read as a 7" ;; esac

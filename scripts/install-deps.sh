#!/usr/bin/env bash
# Installs the Debian packages tapegrad needs, only those missing.
# Usage: scripts/install-deps.sh [extra package...]
set -euo pipefail
# fonts-dejavu-core: the pictures' labels (demos/pictures.c; a built-in font without it)
pkgs=(gcc meson ninja-build pkg-config libstb-dev zlib1g-dev libcjson-dev python3 fonts-dejavu-core "$@")
missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
$sudo apt-get update -q
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -q --no-install-recommends "${missing[@]}"

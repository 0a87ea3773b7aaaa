#!/usr/bin/env bash
# The Debian packages the tests and tools use beyond pip: Chromium for the browser tests, and the
# fonts of tools/make_diverse_captchas.py. `--missing` lists only those not installed yet.
#   sudo apt-get install $(bash tools/system_packages.sh)
set -euo pipefail
packages=(chromium fonts-dejavu-core fonts-liberation2 fonts-freefont-ttf fonts-noto-core fonts-comic-neue
          fonts-quicksand fonts-courier-prime fonts-lato fonts-urw-base35 fonts-go fonts-cantarell
          fonts-crosextra-carlito fonts-linuxlibertine)
if [ "${1:-}" = "--missing" ]; then
  for package in "${packages[@]}"; do
    dpkg -s "$package" >/dev/null 2>&1 || printf '%s ' "$package"
  done
else
  printf '%s ' "${packages[@]}"
fi
echo

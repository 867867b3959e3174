#!/usr/bin/env bash
# Install the DICOM tools the tests drive the C-STORE door with: dcmtk's storescu and echoscu
# (Debian package dcmtk). Only the tests need them, so `make serve` does not install them.
#
# Idempotent: exits 0 at once when storescu is on the PATH; refreshes the package lists only
# when apt has none yet.
set -euo pipefail

if command -v storescu >/dev/null 2>&1 && command -v echoscu >/dev/null 2>&1; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)" ]; then
    $sudo apt-get update
fi
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends dcmtk

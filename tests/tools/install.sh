#!/usr/bin/env bash
# Install the software nobody here wrote that the tests talk to, from Debian's packages:
# - dcmtk's storescu, echoscu and dcmdump: the PACS side of the C-STORE door's tests;
# - Orthanc with its DICOMweb plugin: the peer DICOMweb answers are compared with (the tests run
#   it in a loopback-only network namespace; the package's own service is not used);
# - Chromium and ChromeDriver: the real headless browser of the web pages' tests, and Noto CJK
#   so that its screenshots of the Chinese pages show Chinese, not empty boxes (a patient's
#   phone has such a font; the container has none).
# Only the tests need them, so `make serve` does not install them.
#
# Idempotent: exits 0 at once when every command is on the PATH; refreshes the package lists
# only when apt has none yet.
set -euo pipefail

needed=(storescu echoscu dcmdump Orthanc chromium chromedriver)
missing=0
for command in "${needed[@]}"; do
    command -v "$command" >/dev/null 2>&1 || missing=1
done
if [ "$missing" -eq 0 ] && [ -e /usr/share/orthanc/plugins/libOrthancDicomWeb.so ] \
    && [ -e /usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then
    sudo="sudo"
fi
if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null)" ]; then
    $sudo apt-get update
fi
# The tests never use the package's own Orthanc service: they start theirs inside a network
# namespace of their own, so a system service (where one starts) cannot take its ports.
$sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    dcmtk orthanc orthanc-dicomweb chromium chromium-driver fonts-noto-cjk

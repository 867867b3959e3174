#!/usr/bin/env bash
# Install the local S3 test server (OpenStack Swift + s3api) into its own venv.
#
# Used by tests/s3/server.py (LocalS3Server). Swift lives in a separate venv
# because it pins eventlet, greenlet, lxml, ... which must not disturb the
# project's own venv.
#
#   MUTUALREC_S3_VENV    venv to create/use      (default: <repo>/.venv-s3)
#   MUTUALREC_S3_PYTHON  interpreter for the venv (default: python3)
#
# Idempotent: exits 0 at once when the venv already holds exactly these pins.
# Only PyPI is used (every package below ships a manylinux wheel, including
# pyeclib with liberasurecode bundled), so no apt packages are needed.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
venv="${MUTUALREC_S3_VENV:-$repo_root/.venv-s3}"
python="${MUTUALREC_S3_PYTHON:-python3}"
# Keep in sync with _MARKER_NAME in tests/s3/server.py.
marker="$venv/.mutualrec-s3-installed"

# The full resolved set, pinned so every machine runs the same server.
pins=(
    swift==2.38.3
    eventlet==0.41.3
    greenlet==3.5.6
    PasteDeploy==3.1.0
    lxml==6.1.3
    xattr==1.3.0
    pyeclib==1.8.0
    requests==2.34.2
    cryptography==50.0.2
    dnspython==2.9.2
    cffi==2.1.1
    pycparser==3.12
    certifi==2026.10.18
    charset-normalizer==3.5.2
    idna==3.20
    urllib3==2.8.0
)
wanted="${pins[*]}"

if [[ -f "$marker" && "$(cat "$marker")" == "$wanted" && -x "$venv/bin/python" ]]; then
    exit 0
fi

# Never wipe a directory that is not a venv (e.g. a mistyped MUTUALREC_S3_VENV).
if [[ -e "$venv" && ! -f "$venv/pyvenv.cfg" ]]; then
    if [[ -n "$(ls -A "$venv")" ]]; then
        echo "install.sh: $venv exists and is not a virtualenv; refusing to touch it" >&2
        exit 1
    fi
fi

echo "install.sh: installing Swift S3 test server into $venv" >&2
rm -f "$marker"
# --clear: a venv with other pins (or a half-finished install) starts afresh.
"$python" -m venv --clear "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${pins[@]}"

# Prove the pieces LocalS3Server starts actually import before declaring success.
"$venv/bin/python" -c '
import pyeclib.ec_iface, xattr
import swift.account.server, swift.container.server, swift.obj.server
import swift.proxy.server, swift.common.middleware.s3api.s3api
import swift.common.middleware.tempauth, swift.common.middleware.slo
'
for name in account container object proxy; do
    [[ -f "$venv/bin/swift-$name-server" ]] || {
        echo "install.sh: $venv/bin/swift-$name-server missing after install" >&2
        exit 1
    }
done

printf '%s' "$wanted" >"$marker"
echo "install.sh: done" >&2

"""Install the OHIF Viewer (v3, npm's ``@ohif/app``, whose tarball ships a prebuilt ``dist/``)
for the HTTP door to serve under ``/viewer/``; ``make install`` runs it.

``python -m mutualrec.viewer_install [DIR]`` fetches the pinned tarball from the npm registry,
checks it against the sha512 the registry publishes for that version (pinned here too: a
registry answering otherwise is refused), unpacks ``dist/`` into ``DIR`` (by default
``.venv/ohif/<version>``) and adapts it: the build assumes the site root, so its absolute paths
move under ``/viewer/``; its inline scripts become a file (the door's Content-Security-Policy
allows no inline script); ``app-config.js`` is ours, pointing at our ``/dicomweb``; and its
scripts, styles and codecs get gzip copies, sent to browsers that accept them.
Idempotent: an installed version is left as it is.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import re
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path

OHIF_PACKAGE = "@ohif/app"
OHIF_VERSION = "3.13.2"
# The registry's dist.integrity of that version.
OHIF_INTEGRITY = (
    "sha512-"
    "WZdxmpmG7rqFgW9ZJLcbgr3XCtLi1KDNPoMaeY5PPe6j4G4fjEjjkycZM6C6Zk2F87BKxFfpq+jd5xXZB9E8EA=="
)
REGISTRY = "https://registry.npmjs.org"
MOUNT = "/viewer/"
# Written last: its presence says the directory is complete.
INSTALLED_MARK = ".mutualrec-installed"
BOOT_SCRIPT = "mutualrec-boot.js"
INDEX = "index.html"
CONFIG = "app-config.js"
# The files written for this server (rewritten by every install): never compressed ahead, a
# copy could go stale.
OURS = frozenset({INDEX, CONFIG, BOOT_SCRIPT})
# The release's files kept gzip-compressed beside themselves (``NAME.gz``), sent so to a browser
# that accepts gzip: its scripts are about 30 MB, 6 MB compressed, most of a first open's wait on
# a hospital's link to the regional server. Compressed once here, not on every request.
GZIPPED = ".gz"
_COMPRESSIBLE = frozenset({".js", ".css", ".wasm", ".json", ".map", ".svg", ".txt", ".xml"})
# A copy that saves less than this share of a file is not worth a second variant.
_WORTH_COMPRESSING = 0.9

APP_CONFIG = """\
/** mutualrec's OHIF configuration: one DICOMweb data source, this server's /dicomweb, read
 * with the browser's session cookie (same origin). Written by mutualrec.viewer_install. */
(function () {
  var dicomweb = window.location.origin + '/dicomweb';
  window.config = {
    name: 'mutualrec',
    routerBasename: '/viewer',
    extensions: [],
    modes: [],
    // No first-visit tour: its eleven English tooltips open over the image in every new
    // browser, so a doctor opening a recognized CT from a check saw "Scrolling Through
    // Images" on the film before the film.
    customizationService: { 'ohif.tours': { $set: [] } },
    showStudyList: true,
    maxNumberOfWebWorkers: 3,
    showWarningMessageForCrossOrigin: false,
    showCPUFallbackMessage: true,
    showLoadingIndicator: true,
    strictZSpacingForVolumeViewport: true,
    investigationalUseDialog: { option: 'never' },
    defaultDataSourceName: 'mutualrec',
    dataSources: [
      {
        namespace: '@ohif/extension-default.dataSourcesModule.dicomweb',
        sourceName: 'mutualrec',
        configuration: {
          friendlyName: 'mutualrec',
          name: 'mutualrec',
          qidoRoot: dicomweb,
          wadoRoot: dicomweb,
          wadoUriRoot: dicomweb,
          qidoSupportsIncludeField: false,
          imageRendering: 'wadors',
          thumbnailRendering: 'wadors',
          enableStudyLazyLoad: true,
          supportsFuzzyMatching: false,
          supportsWildcard: false,
          staticWado: false,
          singlepart: false,
          bulkDataURI: { enabled: true, relativeResolution: 'studies' },
          omitQuotationForMultipartRequest: true,
        },
      },
    ],
  };
})();
"""

# What the build's inline scripts did, as a file the page loads.
BOOT = f"""\
function browserImportFunction(n) {{ return import(n); }}
window.PUBLIC_URL = "{MOUNT}";
"""


def default_dir() -> Path:
    """Where the pinned version goes beside the running interpreter's virtualenv."""
    return Path(sys.prefix) / "ohif" / OHIF_VERSION


def check_integrity(data: bytes, integrity: str = OHIF_INTEGRITY) -> None:
    """Refuse (ValueError) bytes whose sha512 is not the Subresource-Integrity value."""
    algorithm, _, expected = integrity.partition("-")
    if algorithm != "sha512":
        raise ValueError(f"unsupported integrity algorithm {algorithm!r}")
    actual = base64.b64encode(hashlib.sha512(data).digest()).decode("ascii")
    if actual != expected:
        raise ValueError(f"the {OHIF_PACKAGE} tarball's sha512 is {actual}, not {expected}")


def _fetch(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=120) as response:
        data: bytes = response.read()
    return data


def fetch_tarball() -> bytes:
    """The pinned tarball, its integrity checked against the registry's and the pinned one."""
    metadata = json.loads(_fetch(f"{REGISTRY}/{OHIF_PACKAGE}/{OHIF_VERSION}"))
    published = metadata["dist"]["integrity"]
    if published != OHIF_INTEGRITY:
        raise ValueError(f"the registry publishes {published} for {OHIF_VERSION}, not the pin")
    data = _fetch(metadata["dist"]["tarball"])
    check_integrity(data, published)
    return data


def extract_dist(tarball: Path, target: Path) -> None:
    """Unpack the tarball's ``package/dist/`` into ``target`` (regular files and folders only,
    none outside it)."""
    with tarfile.open(tarball, "r:gz") as archive:
        for member in archive.getmembers():
            name = member.name
            if not name.startswith("package/dist/") or not (member.isfile() or member.isdir()):
                continue
            relative = Path(name.removeprefix("package/dist/"))
            if relative.is_absolute() or ".." in relative.parts:
                raise ValueError(f"unsafe path in the tarball: {name!r}")
            destination = target / relative
            if member.isdir():
                destination.mkdir(parents=True, exist_ok=True)
                continue
            destination.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file
            with source, destination.open("wb") as out:
                shutil.copyfileobj(source, out)


_INLINE_SCRIPT = re.compile(r"<script>[^<]*</script>")
_SERVICE_WORKER = re.compile(r'<script[^>]*src="/init-service-worker\.js"[^>]*></script>')


def rewrite_index(html: str) -> str:
    """``index.html`` under :data:`MOUNT`: root paths moved, inline scripts replaced by the
    boot script, no service worker (the viewer has nothing to cache offline)."""
    html = _SERVICE_WORKER.sub("", html)
    html = _INLINE_SCRIPT.sub("", html)
    html = re.sub(r'(href|src|content)="/(?!/)', rf'\1="{MOUNT}', html)
    return html.replace("<title>", f'<script src="{MOUNT}{BOOT_SCRIPT}"></script><title>', 1)


def adapt(directory: Path) -> None:
    """Make an unpacked ``dist/`` work under :data:`MOUNT` with our configuration."""
    index = directory / INDEX
    index.write_text(rewrite_index(index.read_text(encoding="utf-8")), encoding="utf-8")
    for script in directory.glob("*.js"):
        text = script.read_text(encoding="utf-8", errors="surrogateescape")
        # webpack's public path, fixed at build time to the root: where chunks and workers load.
        moved = text.replace('__webpack_require__.p = "/";', f'__webpack_require__.p = "{MOUNT}";')
        if moved != text:
            script.write_text(moved, encoding="utf-8", errors="surrogateescape")
    # The web app manifests and tile configuration name their icons by root paths too.
    for manifest in (
        directory / "manifest.json",
        directory / "assets" / "yandex-browser-manifest.json",
        directory / "assets" / "browserconfig.xml",
    ):
        if manifest.is_file():
            text = manifest.read_text(encoding="utf-8")
            manifest.write_text(re.sub(r'"/(?!/)', f'"{MOUNT}', text), encoding="utf-8")
    for sheet in directory.glob("*.css"):
        text = sheet.read_text(encoding="utf-8")
        sheet.write_text(text.replace("url(/", f"url({MOUNT}"), encoding="utf-8")
    write_ours(directory)


def write_ours(directory: Path) -> None:
    """Our configuration and boot script, as this code has them."""
    (directory / CONFIG).write_text(APP_CONFIG, encoding="utf-8")
    (directory / BOOT_SCRIPT).write_text(BOOT, encoding="utf-8")


def compress_release(directory: Path) -> int:
    """Write ``NAME.gz`` beside each of the release's compressible files that has none (gzip at
    its best level, no timestamp: the same bytes on every machine); how many were written."""
    written = 0
    for path in sorted(directory.rglob("*")):
        if path.suffix not in _COMPRESSIBLE or path.name in OURS or not path.is_file():
            continue
        packed_path = path.with_name(path.name + GZIPPED)
        if packed_path.exists():
            continue
        data = path.read_bytes()
        packed = gzip.compress(data, compresslevel=9, mtime=0)
        if len(packed) > len(data) * _WORTH_COMPRESSING:
            continue
        partial = packed_path.with_name(packed_path.name + ".part")
        partial.write_bytes(packed)
        partial.replace(packed_path)
        written += 1
    return written


def install(target: Path) -> bool:
    """Install the pinned viewer at ``target``; False when it was installed already (its
    configuration is then rewritten, so a changed one reaches an installed viewer)."""
    if (target / INSTALLED_MARK).is_file():
        write_ours(target)
        compress_release(target)  # a viewer installed before its files were compressed
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        tarball = Path(scratch) / "app.tgz"
        tarball.write_bytes(fetch_tarball())
        unpacked = Path(scratch) / "dist"
        extract_dist(tarball, unpacked)
        adapt(unpacked)
        compress_release(unpacked)
        (unpacked / INSTALLED_MARK).write_text(f"{OHIF_PACKAGE}@{OHIF_VERSION}\n")
        if target.exists():
            shutil.rmtree(target)  # an interrupted earlier install
        unpacked.rename(target)
    return True


def main(argv: list[str] | None = None) -> int:
    """Install into the given folder or :func:`default_dir`; a network failure is reported
    and leaves the server without a viewer, never half a viewer."""
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0]) if args else default_dir()
    try:
        installed = install(target)
    except OSError as error:
        print(f"viewer not installed ({OHIF_PACKAGE}@{OHIF_VERSION}): {error}", file=sys.stderr)
        return 0
    state = "installed" if installed else "already installed"
    print(f"OHIF viewer {OHIF_VERSION} {state} at {target}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

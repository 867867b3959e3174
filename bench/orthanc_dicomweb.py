"""Orthanc with its DICOMweb plugin, the peer DICOMweb answers are compared and measured
against. Orthanc listens on every interface whatever its settings say of remote access, so
callers start it only inside a loopback-only network namespace (``unshare --net``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

PLUGIN = Path("/usr/share/orthanc/plugins/libOrthancDicomWeb.so")
START_TIMEOUT = 60.0


def in_loopback_namespace() -> bool:
    """Whether this process's network namespace holds only ``lo``."""
    lines = Path("/proc/self/net/dev").read_text().splitlines()[2:]
    return sorted(line.split(":", 1)[0].strip() for line in lines) == ["lo"]


class OrthancDicomWeb:
    """Orthanc on a free port, fresh storage, DICOMweb under ``/dicom-web``."""

    def __init__(self, run_dir: Path, port: int) -> None:
        if not in_loopback_namespace():
            raise RuntimeError("Orthanc listens on every interface: run it in `unshare --net`")
        exe = shutil.which("Orthanc") or "/usr/sbin/Orthanc"
        run_dir.mkdir(parents=True, exist_ok=True)
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        config = {
            "Name": "mutualrec-dicomweb-peer",
            "StorageDirectory": str(run_dir / "storage"),
            "IndexDirectory": str(run_dir / "index"),
            "HttpPort": port,
            "RemoteAccessAllowed": False,
            "AuthenticationEnabled": False,
            "DicomServerEnabled": False,
            "HttpCompressionEnabled": False,
            "StorageCompression": False,
            "Plugins": [str(PLUGIN)],
            "DicomWeb": {"Enable": True, "Root": "/dicom-web/", "EnableWado": False},
        }
        config_path = run_dir / "orthanc.json"
        config_path.write_text(json.dumps(config), encoding="utf-8")
        self._log = (run_dir / "orthanc.log").open("w", encoding="utf-8")
        self.process = subprocess.Popen(
            [exe, str(config_path)],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ},
        )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                with urllib.request.urlopen(self.url + "/system", timeout=5) as reply:
                    self.version = str(json.loads(reply.read()).get("Version", ""))
                    break
            except (OSError, urllib.error.URLError):
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise RuntimeError(
                        f"Orthanc did not start; see {run_dir / 'orthanc.log'}"
                    ) from None
                time.sleep(0.2)

    def store(self, data: bytes) -> None:
        """Store one DICOM file over REST (POST /instances)."""
        request = urllib.request.Request(
            self.url + "/instances",
            data=data,
            method="POST",
            headers={"Content-Type": "application/dicom"},
        )
        with urllib.request.urlopen(request, timeout=60) as reply:
            reply.read()

    def stop(self) -> None:
        """Stop Orthanc (SIGTERM, then SIGKILL after 20 s)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        self._log.close()

"""DICOMweb (PS3.18) on the HTTP door: STOW-RS, QIDO-RS and WADO-RS."""

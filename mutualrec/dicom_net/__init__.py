"""The DICOM C-STORE door (pynetdicom): associations -> the same study upload service."""

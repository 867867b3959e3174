"""Patients' imaging history: listing, thumbnails, downloads, share links."""

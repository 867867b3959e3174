"""The HTTP door: an ASGI app (Starlette) beside gRPC, in the same process and event loop.

Thin like the gRPC door: every route admits its caller (:mod:`.admission`), calls
:mod:`mutualrec.services`, and maps domain errors to problem bodies in one place
(:mod:`.problems`). CDS Hooks and DICOMweb (QIDO-RS, WADO-RS) live here; the web pages are to come.
"""

"""The application layer: one module per use case, the only code that opens index sessions or
touches the object store on a caller's behalf. Every door (gRPC, HTTP, DICOM, CLI) calls these
with typed requests and a principal, and gets typed results or a domain error
(:mod:`mutualrec.violations`) back."""

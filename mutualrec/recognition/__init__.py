"""Recognition as a service: reference data, the index kept by ingest, checks and decisions."""

"""Persistence: the object store for blobs and the SQL index for metadata."""

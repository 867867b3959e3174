"""Ingest: parsing, validating and normalizing what hospitals push, and storing it."""

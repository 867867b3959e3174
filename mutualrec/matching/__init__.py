"""Recognition logic: pure functions over records and catalog data (no gRPC, no SQL)."""

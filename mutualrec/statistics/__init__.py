"""Savings statistics for regulators: periods, counters and report rows, pure logic (no SQL)."""

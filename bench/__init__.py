"""Sluice benchmarks (`make bench`): plain scripts, outside the test suite."""

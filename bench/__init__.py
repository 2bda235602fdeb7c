"""Benchmarks and load generation for recdrill."""

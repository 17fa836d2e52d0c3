"""Chaos: faults injected on purpose, each bounded in time and reverted from a journal."""

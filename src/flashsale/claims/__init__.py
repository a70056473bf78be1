"""The claim engine: how claims reach the database (strategies, coalescing)."""

"""Helpers for testing code that uses icechunk-prefect (fault injection: :mod:`.faults`)."""

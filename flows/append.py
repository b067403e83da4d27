"""Deployment entry point: ``flows/append.py:append_dataset`` (scheduled)."""

from icechunk_prefect.operations import append_dataset

__all__ = ["append_dataset"]

"""Deployment entry point: ``flows/maintenance.py:maintain_repository`` (scheduled)."""

from icechunk_prefect.operations import maintain_repository

__all__ = ["maintain_repository"]

"""Deployment entry point: ``flows/backfill.py:backfill_dataset`` (triggered from the UI or CLI)."""

from icechunk_prefect.operations import backfill_dataset

__all__ = ["backfill_dataset"]

"""Deployment entry point: ``flows/create.py:create_dataset``."""

from icechunk_prefect.operations import create_dataset

__all__ = ["create_dataset"]

"""Where repositories live and how tasks reach them.

- :mod:`~icechunk_prefect.storage.local`: :class:`~icechunk_prefect.storage.local.RepositorySource`
  (what every source is) and :class:`~icechunk_prefect.storage.local.LocalRepository`
- :mod:`~icechunk_prefect.storage.block`: the ``IcechunkRepository`` Prefect Block (S3, GCS, Azure)
- :mod:`~icechunk_prefect.storage.credentials`: secrets resolved where the repository is opened
- :mod:`~icechunk_prefect.storage.resolve`: from a path or a block name to a source
"""

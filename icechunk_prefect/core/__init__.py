"""The write steps as plain functions, with no Prefect import (a test enforces it).

- :mod:`~icechunk_prefect.core.datasets`: what a Dataset holds (lazy or eager variables, sizes)
- :mod:`~icechunk_prefect.core.planning`: the write plan, regions, chunk-aligned partitions
- :mod:`~icechunk_prefect.core.spec`: the options of one write (``WriteSpec``)
- :mod:`~icechunk_prefect.core.validation`: bad input refused before anything is written
- :mod:`~icechunk_prefect.core.steps`: the steps (metadata, eager, partitions, whole graph)
- :mod:`~icechunk_prefect.core.arrays`: plain dask arrays into existing Zarr arrays (``store_dask``)
- :mod:`~icechunk_prefect.core.sessions`: merging forks and committing once
- :mod:`~icechunk_prefect.core.integrity`: what a fork wrote, and whether it is still readable
- :mod:`~icechunk_prefect.core.checks`: the validation gate before the commit
- :mod:`~icechunk_prefect.core.metadata`: the commit-metadata keys and their values
- :mod:`~icechunk_prefect.core.cluster`: bounded waits on a Dask cluster

:mod:`icechunk_prefect.tasks` wraps these functions as Prefect tasks.
"""

"""What a write shows while it runs and after it commits.

- :mod:`~icechunk_prefect.reporting.progress`: step logs and the progress artifact
- :mod:`~icechunk_prefect.reporting.summary`: what a commit wrote
- :mod:`~icechunk_prefect.reporting.publish`: the commit's log line, artifact and event
- :mod:`~icechunk_prefect.reporting.assets`: the commit as an asset materialization
- :mod:`~icechunk_prefect.reporting.history`: a branch's commits with their run metadata
"""

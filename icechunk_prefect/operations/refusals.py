"""Refusals of bad input in a flow run's logs: one clear line, not a traceback.

Prefect logs an exception that ends a flow run with its traceback, twice
("Encountered exception during execution: ..." from the run, then "Engine
execution exited with unexpected exception" from the engine). For refusals of bad
input (this package's :class:`~icechunk_prefect.errors.InputValidationError` and
:class:`~icechunk_prefect.errors.ConfigurationError` and their subclasses, and
Prefect's ``ParameterTypeError`` for parameters refused by the flow's
validation), whose message already says what was wrong, the value seen and what
to do, the tracebacks only hide that line: :func:`log_refusals_in_one_line` keeps
the first record as one line and drops the engine's repeat (the exception itself,
and the run's Failed state, are unchanged). Any other exception keeps its
tracebacks.

Example:
    ```python
    import logging
    import sys

    from icechunk_prefect.errors import RegionError
    from icechunk_prefect.operations.refusals import RefusalFilter

    try:
        raise RegionError("Backfill range 2024-03-01 .. 2024-03-31 lies outside the extent.")
    except RegionError:
        record = logging.LogRecord("prefect.flow_runs", 40, "", 0, "failed", None, sys.exc_info())
    RefusalFilter().filter(record)
    assert record.exc_info is None
    print(record.getMessage())  # Refused: RegionError: Backfill range ... outside the extent.
    ```
"""

from __future__ import annotations

import logging
from collections import deque

from prefect.exceptions import ParameterTypeError

from icechunk_prefect.errors import ConfigurationError, InputValidationError

__all__ = ["FLOW_RUN_LOGGER", "RefusalFilter", "log_refusals_in_one_line"]

FLOW_RUN_LOGGER = "prefect.flow_runs"
"""The logger Prefect's flow engine reports a run's exception on."""

REFUSALS = (InputValidationError, ConfigurationError, ParameterTypeError)
"""The exceptions that are refusals of bad input."""

_ENGINE_REPEAT = "Engine execution exited with unexpected exception"


class RefusalFilter(logging.Filter):
    """Turn a log record carrying a refusal of bad input into its one-line message."""

    def __init__(self) -> None:
        super().__init__()
        self._said: deque[int] = deque(maxlen=64)  # ids of the refusals logged already

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, REFUSALS):
            if str(record.msg).startswith(_ENGINE_REPEAT) and id(exc) in self._said:
                return False  # the run logged this refusal already
            self._said.append(id(exc))
            record.msg = f"Refused: {type(exc).__name__}: {exc}"
            record.args = None
            record.exc_info = None
            record.exc_text = None
        return True


def log_refusals_in_one_line() -> None:
    """Install :class:`RefusalFilter` on Prefect's flow-run logger (once per process)."""
    logger = logging.getLogger(FLOW_RUN_LOGGER)
    if not any(isinstance(f, RefusalFilter) for f in logger.filters):
        logger.addFilter(RefusalFilter())

"""Facts about the machine and the libraries a benchmark ran with."""

from __future__ import annotations

import os
import platform
import sys
import time
from importlib import metadata
from typing import Any

import psutil

LIBRARIES = (
    "icechunk-prefect",
    "icechunk",
    "zarr",
    "xarray",
    "dask",
    "distributed",
    "prefect",
    "prefect-dask",
    "numpy",
    "numcodecs",
)


def versions() -> dict[str, str]:
    """Installed versions of the libraries on the write path."""
    out = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    return out


def load() -> str:
    """Load average (1, 5, 15 min) and current CPU use of the whole machine."""
    one, five, fifteen = os.getloadavg()
    return f"{one:.2f} / {five:.2f} / {fifteen:.2f}"


def facts() -> dict[str, Any]:
    """Cores, memory, load, OS and library versions, as a flat mapping for the report."""
    mem = psutil.virtual_memory()
    disk = psutil.disk_usage("/tmp")
    return {
        "date (UTC)": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "host": platform.node(),
        "os": f"{platform.system()} {platform.release()} ({platform.machine()})",
        "cores (physical / logical / usable)": (
            f"{psutil.cpu_count(logical=False)} / {psutil.cpu_count()} / "
            f"{len(os.sched_getaffinity(0))}"
        ),
        "memory (total / available)": (
            f"{mem.total / 2**30:.1f} GiB / {mem.available / 2**30:.1f} GiB"
        ),
        "/tmp free": f"{disk.free / 2**30:.0f} GiB",
        "load average at start (1 / 5 / 15 min)": load(),
        "python executable": sys.executable,
        **{f"version: {k}": v for k, v in versions().items()},
    }

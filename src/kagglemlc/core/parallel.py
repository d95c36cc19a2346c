"""How many threads independent numpy and I/O work may use."""

from __future__ import annotations

import os


def workers() -> int:
    """Threads for independent numpy work (sorts, parquet reads and writes, hashes release the GIL): the cores
    this process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1

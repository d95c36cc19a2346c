"""Short, readable numbers for tables and picture labels; every formatter shows a missing value as "—".

    fmt(0.71234) == "0.7123"    count(1_234_567) == "1.2M"    duration(123) == "2m 03s"
    megabytes(1500.4) == "1,500 MB"    short(0.71234) == "0.712"    short(61.5) == "61.5"

The report's tables, the HTML page's cells and the pictures' value labels all read numbers through these.
"""

from __future__ import annotations

import math
from typing import Any

MISSING = "—"


def number(value: Any) -> float | None:
    """A finite float, or None for None, NaN, infinities, empty cells and anything that is not a number."""
    if value is None or isinstance(value, bool) or value == "":
        return None
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def fmt(value: float | None, spec: str = ".4f") -> str:
    return MISSING if value is None else format(value, spec)


def megabytes(mb: float | None) -> str:
    return MISSING if mb is None else f"{mb:,.0f} MB"


def count(n: float | None) -> str:
    """1.2M, 22.7k, 950: parameter and row counts."""
    if n is None:
        return MISSING
    for size, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(n) >= size:
            return f"{n / size:.1f}{suffix}"
    return f"{n:.0f}"


def duration(seconds: float | None) -> str:
    if seconds is None:
        return MISSING
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, secs = divmod(round(seconds), 60)
    return f"{minutes}m {secs:02d}s" if minutes < 60 else f"{minutes // 60}h {minutes % 60:02d}m"


def short(value: float | None) -> str:
    """A value label that fits on a bar or a heatmap cell: three decimals below 10, one below 1,000, then 1.2k."""
    if value is None:
        return MISSING
    if abs(value) >= 1000:
        return count(value)
    return f"{value:.1f}" if abs(value) >= 10 else f"{value:.3f}"


def percent(value: float | None) -> str:
    return MISSING if value is None else f"{value:.1%}"

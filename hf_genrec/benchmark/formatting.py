"""Number formatting shared by the benchmark's report tables (`report`) and its claim verdict (`verdict`)."""

from __future__ import annotations

import math

__all__ = ["format_pct"]


def format_pct(value: float | None) -> str:
    """A % change as the tables print it: signed, one decimal (`+1.5`), "–" for None or NaN.

    Below 0.1 in magnitude (judge-score changes can be that small) it keeps two significant digits in fixed
    notation (`+0.00040`), so that an interval off 0 does not print as [+0.0, +0.0].
    """
    if value is None or math.isnan(value):
        return "–"
    if value == 0 or abs(value) >= 0.1:
        return f"{value:+.1f}"
    decimals = 1 - math.floor(math.log10(abs(value)))
    return f"{value:+.{decimals}f}"

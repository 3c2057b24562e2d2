"""Percentiles, and how the tables write times, ratios and sizes."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from bench.scenario import EditResult


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (numpy's default); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latencies(edits: Sequence[EditResult]) -> list[float]:
    """The latencies of the edits that were not missed."""
    return [e.latency_s for e in edits if e.latency_s is not None]


def p50(edits: Sequence[EditResult]) -> float | None:
    """Median latency of the edits that were not missed."""
    return percentile(latencies(edits), 50)


def seconds(value: float | None) -> str:
    """'89 ms' or '1.34 s'; '–' for none."""
    if value is None:
        return "–"
    return f"{value * 1000:.0f} ms" if value < 1 else f"{value:.2f} s"


def ratio(value: float | None, base: float | None) -> str:
    """'0.42×'; '–' when either is missing."""
    if value is None or not base:
        return "–"
    return f"{value / base:.2f}×"


def megabytes(kb: int | None) -> str:
    """'312 MB' from kB; '–' for none."""
    return "–" if kb is None else f"{kb / 1024:,.0f} MB"


def missed(edits: Sequence[EditResult], skipped: int = 0) -> str:
    """'1 of 12', with the skipped ones if any."""
    text = f"{sum(e.missed for e in edits)} of {len(edits)}"
    return text + f" ({skipped} more skipped)" if skipped else text


def failures(failed: Counter[str], requests: int) -> str:
    """'3 of 9,107 (refused 2, reset 1)'."""
    total = sum(failed.values())
    text = f"{total} of {requests:,}"
    if total:
        text += f" ({', '.join(f'{kind} {n}' for kind, n in failed.most_common())})"
    return text

"""Text formatting shared by the run report and the run comparison: numbers, percentages, intervals, tables.

Values read from ``metrics.json`` may be missing, ``None`` or not finite; every formatter here
prints those as ``n/a`` instead of failing, so a report of a partial run still renders. Tables
come as GitHub-flavoured Markdown (`md_table`, pipes in cells escaped) or fixed-width text
for terminals (`text_table`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "METRICS",
    "fmt_ci",
    "fmt_mean_std",
    "fmt_num",
    "fmt_pct",
    "inline_params",
    "is_number",
    "md_table",
    "text_table",
]

#: The headline metrics, ``(key in metrics.json, display name)``, in table order.
METRICS = (("wa", "WA"), ("ua", "UA"), ("macro_f1", "Macro-F1"))


def is_number(value: Any) -> bool:
    """Whether ``value`` is a finite int or float (numpy scalars too; a bool is not a number here)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and math.isfinite(value)


def fmt_num(value: Any, digits: int = 3) -> str:
    """``value`` with ``digits`` decimals, or ``n/a`` when it is no finite number."""
    return f"{float(value):.{digits}f}" if is_number(value) else "n/a"


def fmt_pct(fraction: Any) -> str:
    """A fraction as a percentage; tiny non-zero shares are not rounded down to 0 %."""
    if not is_number(fraction):
        return "n/a"
    if 0 < fraction < 0.01:
        return "<1 %"
    return f"{100 * float(fraction):.0f} %"


def fmt_mean_std(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``mean ± std`` of a metrics.json statistic (``{"mean", "std", ...}``), ``n/a`` for what is missing."""
    stat = stat or {}
    return f"{fmt_num(stat.get('mean'), digits)} ± {fmt_num(stat.get('std'), digits)}"


def fmt_ci(stat: Mapping[str, Any] | None, digits: int = 3) -> str:
    """``[lo, hi]`` of a statistic's ``ci95``, or ``n/a`` without a two-value interval."""
    interval = (stat or {}).get("ci95")
    if not isinstance(interval, Sequence) or len(interval) != 2:
        return "n/a"
    return f"[{fmt_num(interval[0], digits)}, {fmt_num(interval[1], digits)}]"


def _cell(value: Any) -> str:
    # a pipe or newline inside a cell would break the Markdown table
    return str(value).replace("|", "\\|").replace("\n", " ")


def md_table(header: Sequence[str], rows: Iterable[Sequence[Any]], align: str | None = None) -> str:
    """A GitHub-flavoured Markdown table; ``align`` has one of ``l``/``r`` per column."""
    align = align or "l" * len(header)
    rule = ["---:" if a == "r" else "---" for a in align]
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "| " + " | ".join(rule) + " |"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def text_table(header: Sequence[str], rows: Sequence[Sequence[Any]], align: str | None = None) -> str:
    """A fixed-width plain-text table for terminals."""
    align = align or "l" * len(header)
    cells = [[str(h) for h in header]] + [[str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]

    def line(row: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if a == "r" else v.ljust(w) for v, w, a in zip(row, widths, align)).rstrip()

    return "\n".join([line(cells[0]), "  ".join("-" * w for w in widths), *(line(r) for r in cells[1:])])


def inline_params(params: Mapping[str, Any] | None, skip: Iterable[str] = ()) -> str:
    """Settings as inline code, ``key=value`` (JSON, cut at 60 characters), or ``defaults`` when none are left after ``skip``."""
    skipped = set(skip)
    items = [(k, v) for k, v in (params or {}).items() if k not in skipped]
    if not items:
        return "defaults"
    parts = []
    for key, value in items:
        text = json.dumps(value, sort_keys=True, default=str)
        parts.append(f"`{key}={text if len(text) <= 60 else text[:57] + '...'}`")
    return ", ".join(parts)

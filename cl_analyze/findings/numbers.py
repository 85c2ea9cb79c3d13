"""Numbers as the findings write them: percentages, points, p-values; never "-0.00"."""

from __future__ import annotations

import math


def _no_negative_zero(text: str) -> str:
    """'-0.00' (a tiny negative rounded away) reads as a decline of nothing: show '0.00'."""
    return text[1:] if text.startswith("-") and not any(c in "123456789" for c in text) else text


def percent(fraction: float) -> str:
    """0.9890 -> '98.90%'."""
    return _no_negative_zero(f"{100 * fraction:.2f}") + "%"


def points(fraction: float) -> str:
    """A difference of accuracies in percentage points: 0.004 -> '0.40'."""
    return _no_negative_zero(f"{100 * fraction:.2f}")


def p_value_text(p: float) -> str:
    """'p = 0.031'; 'p < 0.001' below that (1,000 simulations cannot resolve less)."""
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def share_text(p: float) -> str:
    """How often, in words: 'fewer than 1 in 1,000 cases', '3.1% of cases'."""
    if p < 0.001:
        return "fewer than 1 in 1,000 cases"
    return _no_negative_zero(f"{100 * p:.1f}") + "% of cases"


def number(value: float) -> str:
    """Three significant digits, or thousands separators for large values."""
    if not math.isfinite(value):
        return str(value)
    text = f"{value:.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return _no_negative_zero(text)

"""``tables.tex``: the report's summary and metrics tables for a paper (booktabs, via pandas).

pandas' ``Styler.to_latex`` writes the tabular and escapes LaTeX's special characters; each table
gets a ``table`` float with a caption and a label, ready for ``\\input{tables.tex}`` (preamble:
``\\usepackage{booktabs}``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import pandas as pd

from cl_analyze.report.document import Table
from cl_analyze.report.run import metrics_table, summary_table
from cl_analyze.report.runs import RunData


def latex_table(table: Table, caption: str, label: str) -> str:
    """One booktabs table float; every cell and header escaped for LaTeX."""
    frame = pd.DataFrame(list(table.rows), columns=list(table.columns))
    styler = frame.style.hide(axis="index")
    # Our own escaping: pandas' leaves < and >, which a default (OT1) font prints as ¡ and ¿.
    styler = styler.format(latex_escape).format_index(latex_escape, axis=1)
    return styler.to_latex(
        hrules=True,  # \toprule, \midrule, \bottomrule
        column_format="l" * len(table.columns),
        caption=latex_escape(caption),
        label=label,
        position="t",
        position_float="centering",
    )


def latex_escape(text: object) -> str:
    """Literal text in LaTeX's text mode."""
    return re.sub(r"([\\%&$#_{}~^<>])", lambda m: _SPECIAL[m[1]], str(text))


_SPECIAL = {
    "\\": r"\textbackslash{}",
    "%": r"\%",
    "&": r"\&",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "<": r"$<$",
    ">": r"$>$",
}


def tables_tex(runs: Sequence[RunData]) -> str:
    """The summary (peak, last epoch, decline, verdict) and, per run with metrics, its metrics
    at the peak and at the last epoch."""
    parts = [
        "% Written by cl-analyze report. Needs \\usepackage{booktabs}.",
        latex_table(
            summary_table(runs),
            "Test accuracy: the peak, the last epoch and the decline between them.",
            "tab:cl-summary",
        ),
    ]
    for index, run in enumerate(runs):
        if run.metrics.empty:
            continue
        parts.append(
            latex_table(
                metrics_table(run),
                f"{run.label}: feature geometry at the peak and at the last epoch.",
                f"tab:cl-metrics-{index}",
            )
        )
    return "\n".join(parts)

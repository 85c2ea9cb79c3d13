"""`cl-analyze report`: a self-contained folder per write-up (index.html, report.md,
summary.json, metrics.csv, figures/) built from one or more run stores, or a sweep.

``document`` holds the page model and its two renderers; ``runs`` reads each run once;
``run`` and ``figures`` write the sections on runs, ``sweep`` those on a sweep; ``build``
assembles and swaps the folder in whole.
"""

from cl_analyze.report.build import build_report
from cl_analyze.report.context import ReportOptions

__all__ = ["ReportOptions", "build_report"]

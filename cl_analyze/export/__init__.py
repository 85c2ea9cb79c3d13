"""``cl-analyze export``: a run opened where people already look: TensorBoard (scalars and the
embedding projector) and Weights & Biases (scalars, embedding tables, the report's figures)."""

from cl_analyze.export.content import (
    EXPORT_TARGETS,
    ExportOptions,
    parse_export_epochs,
    projector_points,
    run_scalars,
)
from cl_analyze.export.run_export import export_run

__all__ = [
    "EXPORT_TARGETS",
    "ExportOptions",
    "export_run",
    "parse_export_epochs",
    "projector_points",
    "run_scalars",
]

"""Optional dependencies: imported when a feature needs them, a one-line fix when they are not
installed (``pip install 'cl-analyze[tensorboard]'``)."""

from __future__ import annotations

import importlib
from types import ModuleType

from cl_analyze.errors import CLAnalyzeError


def require_extra(module: str, extra: str, feature: str) -> ModuleType:
    """``module`` imported, or a ``CLAnalyzeError`` naming the extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise CLAnalyzeError(
            f"{feature} needs {module.split('.')[0]}, which is not installed:"
            f" pip install 'cl-analyze[{extra}]'"
        ) from None

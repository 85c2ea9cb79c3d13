"""Sweeps: one ordinary training run per combination of a grid of train options.

A sweep folder holds ``sweep.json`` (the grid, the fixed options and each run's state; see
``state``), one run folder per combination (``center-weight=0.01_seed=2/``, readable by every
other command) and ``logs/<run>.log`` (each worker's training output). Only the coordinating
process (``driver``) writes ``sweep.json``; workers (``task``) write their own run folders,
locally (``local``) or as Ray tasks (``ray``). Rerunning a sweep skips complete runs and resumes
interrupted ones from their ``last.pt``.
"""

import importlib
from typing import Any

# Resolved on first use, so that `cl-analyze --help` reading `sweep.grid` does not load torch.
_EXPORTS = {
    "SWEEP_JSON": "state",
    "SweepInfo": "state",
    "SweepResult": "state",
    "SweepRun": "state",
    "load_sweep": "state",
    "SweepSpec": "grid",
    "sweep_spec": "grid",
    "run_sweep": "driver",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)

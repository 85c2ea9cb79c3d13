"""Sweeps: one ordinary training run per combination of a grid of train options.

A sweep folder holds ``sweep.json`` (the grid, the fixed options and each run's state; see
``state``), one run folder per combination (``center-weight=0.01_seed=2/``, readable by every
other command) and ``logs/<run>.log`` (each worker's training output). Only the coordinating
process (``driver``) writes ``sweep.json``; workers (``task``) write their own run folders,
locally (``local``) or as Ray tasks (``ray``). Rerunning a sweep skips complete runs and resumes
interrupted ones from their ``last.pt``.
"""

from cl_analyze.sweep.driver import run_sweep
from cl_analyze.sweep.grid import SweepSpec, sweep_spec
from cl_analyze.sweep.state import SWEEP_JSON, SweepInfo, SweepResult, SweepRun, load_sweep

__all__ = [
    "SWEEP_JSON",
    "SweepInfo",
    "SweepResult",
    "SweepRun",
    "SweepSpec",
    "load_sweep",
    "run_sweep",
    "sweep_spec",
]

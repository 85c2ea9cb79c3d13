"""Training: the epoch loop (``loop``), the whole run around it (``fit``: folder, store,
checkpoints, resume), stop signals, checkpoints, and embedding with a trained checkpoint.

``fit`` is both a module and its main function: ``from cl_analyze.training.fit import fit``.
"""

from cl_analyze.training.fit import HISTORY_NAMES, stored_config
from cl_analyze.training.loop import TrainState, evaluate, resolve_device, train_one_epoch
from cl_analyze.training.run_folder import check_run_folder, next_run_dir

__all__ = [
    "HISTORY_NAMES",
    "TrainState",
    "check_run_folder",
    "evaluate",
    "next_run_dir",
    "resolve_device",
    "stored_config",
    "train_one_epoch",
]

"""The run store: one HDF5 file per run holding every epoch's embeddings, centers and scalars.

Schema (version 2; see docs/store.md; version-1 stores, without /classifier, are still read):

    /                       attrs: format, schema_version, epochs_complete, config (JSON),
                                   dataset, class_names (JSON), num_classes, feat_dim,
                                   package_version, torch_version, created, device, hardware
    /epochs                 (E,)       int32    epoch number of each row (0 = before training)
    /<split>/labels         (N,)       int32    split in {train, test}
    /<split>/indices        (N,)       int64    position of each sample in the original split
    /<split>/features       (E, N, D)  float32  chunked one epoch per chunk
    /<split>/predictions    (E, N)     int32
    /centers                (E, C, D)  float32  learned centers (center loss only)
    /classifier/weight      (E, C, D)  float32  the last layer per epoch (version 2 on)
    /classifier/bias        (E, C)     float32
    /history/<scalar>       (E,)       float64  per-epoch scalars (NaN where not applicable)

Rows ``[0, epochs_complete)`` are complete; anything beyond is an epoch being written. The writer
uses HDF5 SWMR, so a reader can open the file while training appends to it, and a killed writer
leaves a file whose completed epochs read back intact.
"""

from cl_analyze.store.hdf5 import check_not_truncated, flagged_open_for_write
from cl_analyze.store.lock import (
    LOCK_NAME,
    file_lock,
    lock_holder,
    lock_path_of,
    run_lock,
    writer_alive,
)
from cl_analyze.store.reader import RunStore
from cl_analyze.store.repair import clear_write_flag, rebuild
from cl_analyze.store.schema import (
    FORMAT,
    SCHEMA_VERSION,
    SPLITS,
    STORE_NAME,
    is_run_file,
    remove_stale_partials,
    store_path,
)
from cl_analyze.store.writer import (
    RunWriter,
    create_classifier_datasets,
    create_epoch_datasets,
)

__all__ = [
    "FORMAT",
    "LOCK_NAME",
    "SCHEMA_VERSION",
    "SPLITS",
    "STORE_NAME",
    "RunStore",
    "RunWriter",
    "check_not_truncated",
    "clear_write_flag",
    "create_classifier_datasets",
    "create_epoch_datasets",
    "file_lock",
    "flagged_open_for_write",
    "is_run_file",
    "lock_holder",
    "lock_path_of",
    "rebuild",
    "remove_stale_partials",
    "run_lock",
    "store_path",
    "writer_alive",
]

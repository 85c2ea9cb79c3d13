"""HDF5 dimension scales and labels, so generic tools (h5netcdf/xarray, HDFView, h5dump) see the
named dimensions epoch, sample, class and dim of a store's arrays.

``/epochs`` is the scale of every per-epoch array's first axis and ``/<split>/indices`` that of a
split's samples; the class and feature axes get labels only (no dataset holds them). Scales live
in attributes holding object references, which a copy into another file cannot carry: a rebuilt
store gets them again from ``label_dimensions``. They are written before the writer switches to
SWMR (no attribute is created while a run trains); resizing a dataset keeps them.
"""

from __future__ import annotations

import h5py

from cl_analyze.store.schema import SPLITS

# The attributes HDF5's dimension-scale API owns: never copied between files.
SCALE_ATTRIBUTES = frozenset(
    {"CLASS", "NAME", "DIMENSION_LIST", "REFERENCE_LIST", "DIMENSION_LABELS"}
)


def _name_axes(
    dataset: h5py.Dataset, names: tuple[str, ...], scales: dict[str, h5py.Dataset]
) -> None:
    for axis, name in enumerate(names):
        dims = dataset.dims[axis]
        if dims.label != name:
            dims.label = name
        scale = scales.get(name)
        if scale is not None and scale != dataset and len(dims) == 0:
            dims.attach_scale(scale)


def label_dimensions(handle: h5py.File) -> None:
    """Name the axes of every array in ``handle`` (idempotent; the file open for writing, not
    yet in SWMR mode)."""
    epochs = handle.get("epochs")
    if not isinstance(epochs, h5py.Dataset):
        return
    if not epochs.is_scale:
        epochs.make_scale("epoch")
    _name_axes(epochs, ("epoch",), {})
    for split in SPLITS:
        group = handle.get(split)
        if not isinstance(group, h5py.Group) or not isinstance(group.get("indices"), h5py.Dataset):
            continue
        indices = group["indices"]
        if not indices.is_scale:
            indices.make_scale("sample")
        _name_axes(indices, ("sample",), {})
        scales = {"epoch": epochs, "sample": indices}
        for name, axes in (
            ("labels", ("sample",)),
            ("features", ("epoch", "sample", "dim")),
            ("predictions", ("epoch", "sample")),
        ):
            item = group.get(name)
            if isinstance(item, h5py.Dataset):
                _name_axes(item, axes, scales)
    centers = handle.get("centers")
    if isinstance(centers, h5py.Dataset):
        _name_axes(centers, ("epoch", "class", "dim"), {"epoch": epochs})
    history = handle.get("history")
    if isinstance(history, h5py.Group):
        for item in history.values():
            if isinstance(item, h5py.Dataset):
                _name_axes(item, ("epoch",), {"epoch": epochs})

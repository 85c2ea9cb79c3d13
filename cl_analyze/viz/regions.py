"""Decision regions: the stored classifier's argmax over the scatter's plane, as a light
background under the points (`--regions`). Defined only for 2-D features, where the scatter's
plane is the feature space itself (a projection of D > 2 features has no regions of its own)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.image import AxesImage

from cl_analyze.store import RunStore
from cl_analyze.viz.style import Limits

# Grid cells per axis: at a panel's size (about 2 inches at 100-200 dpi) finer adds nothing.
REGION_RESOLUTION = 200
REGION_ALPHA = 0.14


@dataclass(frozen=True)
class Regions:
    """A run's classifier per row: ``weight`` (E, C, 2), ``bias`` (E, C); NaN rows have none."""

    weight: np.ndarray
    bias: np.ndarray


def load_regions(run: Path | str, *, rows: int | None = None) -> Regions | None:
    """The run's per-epoch classifier, or None when its store has none (a version-1 store) or
    its features are not 2-D."""
    with RunStore(run, rows=rows) as store:
        if not store.has_classifier or store.feat_dim != 2:
            return None
        handle = store.hdf5
        weight = np.asarray(handle["classifier/weight"][: store.rows], dtype=np.float64)
        bias = np.asarray(handle["classifier/bias"][: store.rows], dtype=np.float64)
    return Regions(weight, bias)


def region_classes(
    weight: np.ndarray, bias: np.ndarray, limits: Limits, resolution: int = REGION_RESOLUTION
) -> np.ndarray | None:
    """(resolution, resolution) argmax class at the centre of each cell, row 0 at the bottom;
    None for a classifier with non-finite values."""
    if not (np.isfinite(weight).all() and np.isfinite(bias).all()):
        return None
    (x0, x1), (y0, y1) = limits
    xs = x0 + (np.arange(resolution) + 0.5) * (x1 - x0) / resolution
    ys = y0 + (np.arange(resolution) + 0.5) * (y1 - y0) / resolution
    grid = np.stack(np.meshgrid(xs, ys), axis=-1).reshape(-1, 2)
    return (grid @ weight.T + bias).argmax(axis=1).reshape(resolution, resolution)


class RegionLayer:
    """One panel's region image; ``show(row)`` repaints it for a row."""

    def __init__(
        self,
        axes: Axes,
        regions: Regions,
        limits: Limits,
        colors: np.ndarray,
        *,
        animated: bool = False,
    ) -> None:
        self.regions = regions
        self.limits = limits
        self.rgba = np.concatenate([colors, np.full((len(colors), 1), REGION_ALPHA)], axis=1)
        (x0, x1), (y0, y1) = limits
        self.image: AxesImage = axes.imshow(
            np.zeros((2, 2, 4)),
            extent=(x0, x1, y0, y1),
            origin="lower",
            interpolation="nearest",
            aspect="auto",
            zorder=0,
            animated=animated,
        )
        axes.set_xlim(x0, x1)
        axes.set_ylim(y0, y1)

    def show(self, row: int) -> None:
        classes = region_classes(self.regions.weight[row], self.regions.bias[row], self.limits)
        if classes is None:
            self.image.set_data(np.zeros((2, 2, 4)))
            return
        self.image.set_data(self.rgba[np.minimum(classes, len(self.rgba) - 1)])

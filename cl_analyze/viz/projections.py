"""Non-linear 2-D maps of features with D > 2, one per epoch, kept comparable across epochs:
UMAP (umap-learn's ``AlignedUMAP``: each epoch's map is pulled toward its neighbours', the same
samples being related from one epoch to the next) and t-SNE (openTSNE: one map fitted on the
last epoch, every epoch's points placed into that fixed map). PCA, the linear default, is
``runs.fit_projection``; these need ``pip install 'cl-analyze[umap]'``.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence

import numpy as np

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.extras import require_extra

PROJECTIONS = ("pca", "umap", "tsne")
AXIS_LABELS = {"umap": ("UMAP 1", "UMAP 2"), "tsne": ("t-SNE 1", "t-SNE 2")}


def check_projection(name: str) -> str:
    if name not in PROJECTIONS:
        raise CLAnalyzeError(f"--projection {name!r}: pick one of {', '.join(PROJECTIONS)}")
    return name


def _finite(rows: Sequence[np.ndarray]) -> list[np.ndarray]:
    arrays = [np.asarray(row, dtype=np.float64) for row in rows]
    for epoch_row, array in enumerate(arrays):
        if not np.isfinite(array).all():
            raise CLAnalyzeError(
                f"row {epoch_row} holds NaN or infinite features (a diverged run):"
                " draw it with --projection pca"
            )
    return arrays


def umap_epochs(rows: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """(E, n, 2): the same n samples at each of E epochs, mapped with AlignedUMAP."""
    umap = require_extra("umap", "umap", "--projection umap")
    arrays = _finite(rows)
    n = len(arrays[0])
    neighbours = max(2, min(15, n - 1))
    if len(arrays) == 1:
        single = umap.UMAP(n_neighbors=neighbours, random_state=seed)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
            return np.asarray(single.fit_transform(arrays[0]), dtype=np.float32)[None]
    identity = {i: i for i in range(n)}  # the same sample in consecutive epochs
    aligned = umap.AlignedUMAP(n_neighbors=neighbours, random_state=seed)
    with warnings.catch_warnings():
        # A seed (the same map every time) means one thread; umap says so once per epoch.
        warnings.filterwarnings("ignore", message="n_jobs value", category=UserWarning)
        aligned.fit(arrays, relations=[identity] * (len(arrays) - 1))
    return np.stack([np.asarray(e, dtype=np.float32) for e in aligned.embeddings_])


def tsne_epochs(rows: Sequence[np.ndarray], seed: int = 0) -> np.ndarray:
    """(E, n, 2): one openTSNE map fitted on the last epoch; every epoch placed into it."""
    open_tsne = require_extra("openTSNE", "umap", "--projection tsne")
    arrays = _finite(rows)
    perplexity = float(max(2, min(30, (len(arrays[-1]) - 1) // 3)))
    reference = open_tsne.TSNE(perplexity=perplexity, random_state=seed, n_jobs=1).fit(arrays[-1])
    fixed = np.array(reference)
    placed = []
    for array in arrays[:-1]:
        placed.append(np.asarray(reference.transform(array), dtype=np.float32))
        reference[:] = fixed  # openTSNE 1.0's transform moves the reference points too
    return np.stack([*placed, fixed.astype(np.float32)])


def project_epochs(rows: Sequence[np.ndarray], method: str, seed: int = 0) -> np.ndarray:
    """(E, n, 2) of the E arrays (n, D) with ``method`` ('umap' or 'tsne')."""
    if method == "umap":
        return umap_epochs(rows, seed)
    if method == "tsne":
        return tsne_epochs(rows, seed)
    raise CLAnalyzeError(f"--projection {method!r}: a non-linear map is umap or tsne")

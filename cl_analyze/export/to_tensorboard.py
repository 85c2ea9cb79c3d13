"""A run as a TensorBoard log folder: scalars with the epoch as step, and the embedding
projector (features, label / prediction / correct metadata, a sprite of the digits) for the
chosen epochs. Written with torch's ``SummaryWriter``, which needs the ``tensorboard`` package."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from cl_analyze.export.content import (
    METADATA_HEADER,
    ExportOptions,
    chosen_epochs,
    digit_images,
    projector_points,
    run_scalars,
    sample_rows,
)
from cl_analyze.extras import require_extra
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore


def projector_tag(split: str, epoch: int) -> str:
    return f"{split}_epoch_{epoch:03d}"


def write_tensorboard(
    run: Path, folder: Path, options: ExportOptions, reporter: Reporter | None = None
) -> list[int]:
    """Fill ``folder`` (new, empty); returns the epochs given to the projector."""
    require_extra("tensorboard", "tensorboard", "--to tensorboard")
    import torch
    from torch.utils.tensorboard import SummaryWriter

    series = run_scalars(run, metrics=options.metrics, reporter=reporter)
    writer = SummaryWriter(log_dir=str(folder))
    try:
        for tag, (steps, values) in series.items():
            for epoch, value in zip(steps.tolist(), values.tolist(), strict=True):
                writer.add_scalar(tag, value, global_step=epoch)
        with RunStore(run) as store:
            epochs = chosen_epochs(store, options.epochs)
            rows = sample_rows(store.labels(options.split), options.max_points)
            images = None
            if options.sprite:
                digits = digit_images(store, options.split, options.data_dir)[rows]
                # (N, 1, H, W) in [0, 1], dark digits on white as people draw them.
                images = 1.0 - torch.from_numpy(digits).float().unsqueeze(1) / 255.0
            for epoch in epochs:
                points = projector_points(store, options.split, epoch, rows)
                writer.add_embedding(
                    np.ascontiguousarray(points.features, dtype=np.float32),
                    metadata=points.metadata(),
                    metadata_header=list(METADATA_HEADER),
                    label_img=images,
                    global_step=epoch,
                    tag=projector_tag(options.split, epoch),
                )
    finally:
        writer.close()
    return epochs

"""A run as a Weights & Biases run, offline by default (``WANDB_MODE=offline``; ``wandb sync``
uploads it later): the scalars with the epoch as step, a ``wandb.Table`` of the embeddings of
each chosen epoch, and the report's figures (accuracy, losses, metrics, scatters)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cl_analyze.export.content import (
    ExportOptions,
    chosen_epochs,
    projector_points,
    run_scalars,
    sample_rows,
)
from cl_analyze.extras import require_extra
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore


def _figures(run: Path, epochs: list[int], split: str) -> dict[str, Any]:
    """The report's figures of this run, as matplotlib Figures by key."""

    from cl_analyze.viz import (
        accuracy_figure,
        load_plot_run,
        loss_figure,
        metric_figure,
        scatter_figure,
    )

    plotted = load_plot_run(run, max_points=2000)
    figures: dict[str, Any] = {
        "figures/accuracy": accuracy_figure([plotted]),
        "figures/losses": loss_figure([plotted]),
    }
    metric = metric_figure([plotted])
    if metric is not None:
        figures["figures/metrics"] = metric
    splits = [split] if split in plotted.splits else None
    for epoch in epochs:
        row = plotted.row_at(epoch)
        figures[f"figures/scatter_epoch_{epoch:03d}"] = scatter_figure(
            [plotted], [row], splits=splits
        )
    return figures


def write_wandb(
    run: Path, out: Path, options: ExportOptions, reporter: Reporter | None = None
) -> Path:
    """Log the run into a new wandb run under ``out``; returns wandb's folder of that run."""
    wandb = require_extra("wandb", "wandb", "--to wandb")
    import matplotlib.pyplot as plt

    series = run_scalars(run, metrics=options.metrics, reporter=reporter)
    with RunStore(run) as store:
        name, config = store.name, dict(store.config)
        epochs = chosen_epochs(store, options.epochs)
        rows = sample_rows(store.labels(options.split), options.max_points)
        tables = {
            epoch: wandb.Table(
                dataframe=projector_points(store, options.split, epoch, rows).frame()
            )
            for epoch in epochs
        }
        all_epochs = [int(e) for e in store.epochs.tolist()]
    by_epoch: dict[int, dict[str, Any]] = {epoch: {} for epoch in all_epochs}
    for tag, (steps, values) in series.items():
        for epoch, value in zip(steps.tolist(), values.tolist(), strict=True):
            by_epoch[int(epoch)][tag] = value
    for epoch, table in tables.items():
        by_epoch[epoch][f"embeddings/{options.split}_epoch_{epoch:03d}"] = table
    figures = _figures(run, epochs, options.split) if options.figures else {}
    out.mkdir(parents=True, exist_ok=True)
    logged = wandb.init(
        project=os.environ.get("WANDB_PROJECT", "cl-analyze"),
        name=name,
        config=config,
        dir=str(out),
        mode=os.environ.get("WANDB_MODE", "offline"),
    )
    try:
        for epoch in all_epochs:
            entry = by_epoch[epoch]
            if epoch == all_epochs[-1]:
                entry.update({key: wandb.Image(figure) for key, figure in figures.items()})
            logged.log(entry, step=epoch)
    finally:
        for figure in figures.values():
            plt.close(figure)
        logged.finish()
        folder = Path(logged.dir).parent
        # Wait for wandb's service process to write everything and exit: the offline run is
        # then complete on disk when export returns (and no process outlives the command).
        wandb.teardown()
    return folder

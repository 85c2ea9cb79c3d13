"""The runs a report is about, each read once from its store."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.findings import (
    PeakDecline,
    RunNumbers,
    RunWarning,
    SeedRun,
    metrics_at,
    peak_and_decline,
    run_warnings,
)
from cl_analyze.progress import Reporter
from cl_analyze.store import RunStore, store_path, writer_alive

if TYPE_CHECKING:  # imported where used: matplotlib and the sweep module are slow to load
    pass


@dataclass
class RunData:
    """Everything the report needs from one run, read once while its store is open.

    ``epochs`` is the snapshot: the rows complete when the report started. Every later read of
    the store (metrics, figures, animation) passes ``rows=len(epochs)``, so a run that is still
    training shows the same epochs in every table, figure and frame.
    """

    label: str
    run_dir: Path
    dataset: str
    config: dict[str, Any]
    attrs: dict[str, Any]
    class_names: list[str]
    feat_dim: int
    split_sizes: dict[str, int]
    epochs: np.ndarray
    history: dict[str, np.ndarray]
    training: bool
    has_centers: bool
    result: PeakDecline
    num_classes: int = 0
    metrics: pd.DataFrame = field(default_factory=pd.DataFrame)
    metrics_problem: str | None = None  # why metrics are missing, when they are
    warnings: list[RunWarning] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.epochs)

    @property
    def n_test(self) -> int | None:
        return self.split_sizes.get("test")

    @property
    def degenerate(self) -> bool:
        """At chance, diverged or collapsed: left out of every comparison."""
        return bool(self.warnings)

    @property
    def seed_run(self) -> SeedRun:
        return SeedRun(
            self.label,
            self.config,
            self.epochs,
            self.history["test_accuracy"],
            self.n_test or 1,
        )

    @property
    def at_peak(self) -> dict[str, float]:
        return metrics_at(self.metrics, self.result.peak_epoch)

    @property
    def at_last(self) -> dict[str, float]:
        return metrics_at(self.metrics, self.result.final_epoch)

    @property
    def numbers(self) -> RunNumbers:
        return RunNumbers(self.label, self.result, self.at_peak, self.at_last)


def run_labels(run_dirs: Sequence[Path]) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    names = [path.resolve().name for path in run_dirs]
    labels = []
    for path, name in zip(run_dirs, names, strict=True):
        duplicate = names.count(name) > 1
        labels.append(f"{path.resolve().parent.name}/{name}" if duplicate else name)
    for index, label in enumerate(labels):
        if labels.count(label) > 1:
            labels[index] = f"{label} #{index + 1}"
    return labels


def read_run(
    run_dir: Path,
    label: str,
    *,
    last_k: int,
    threshold: float,
    reporter: Reporter | None = None,
) -> RunData:
    if not store_path(run_dir).is_file():
        raise CLAnalyzeError(
            f"no run store in {run_dir} (no {store_path(run_dir).name}):"
            " pass a run folder written by `cl-analyze train`"
        )
    with RunStore(run_dir) as store:
        epochs = store.epochs
        history = store.history
        if store.rows == 0 or "test_accuracy" not in history:
            raise CLAnalyzeError(
                f"{run_dir} has no completed epoch yet: report it once epoch 0 is written"
            )
        split_sizes = {split: len(store.labels(split)) for split in store.splits}
        result = peak_and_decline(
            epochs,
            history["test_accuracy"],
            last_k=last_k,
            threshold=threshold,
            n_test=split_sizes.get("test"),
        )
        data = RunData(
            label=label,
            run_dir=run_dir,
            dataset=store.dataset,
            config=dict(store.config),
            attrs=dict(store.attrs),
            class_names=list(store.class_names),
            feat_dim=store.feat_dim,
            split_sizes=split_sizes,
            epochs=epochs,
            history=history,
            training=writer_alive(store.run_dir),
            has_centers=store.has_centers,
            result=result,
            num_classes=store.num_classes,
        )
    data.metrics, data.metrics_problem = load_run_metrics(run_dir, reporter, rows=data.rows)
    data.warnings = run_warnings(
        label,
        epochs,
        history,
        num_classes=data.num_classes,
        n_test=data.n_test or 0,
        feature_norm=_feature_norms(data.metrics),
    )
    return data


def _feature_norms(metrics: pd.DataFrame) -> dict[int, float]:
    """Mean test feature norm per epoch (empty without metrics)."""
    if metrics.empty:
        return {}
    rows = metrics[
        (metrics["split"] == "test")
        & (metrics["metric"] == "feature_norm")
        & (metrics["class"] == "")
    ]
    return {int(e): float(v) for e, v in zip(rows["epoch"], rows["value"], strict=True)}


def load_run_metrics(
    run_dir: Path, reporter: Reporter | None = None, *, rows: int | None = None
) -> tuple[pd.DataFrame, str | None]:
    """The tidy metrics of a run and, when they are unavailable, why (the report goes on)."""
    empty = pd.DataFrame(columns=["epoch", "split", "metric", "class", "value"])
    from cl_analyze.metrics.cache import load_metrics

    try:
        frame = load_metrics(run_dir, reporter=reporter, rows=rows)
    except CLAnalyzeError as error:
        return empty, str(error)
    return frame.reset_index(drop=True), None


def check_datasets(runs: Sequence[RunData], allow_mixed: bool) -> None:
    datasets = {run.dataset for run in runs}
    if len(datasets) > 1 and not allow_mixed:
        listed = ", ".join(f"{run.label}: {run.dataset}" for run in runs)
        raise CLAnalyzeError(
            f"runs on different datasets ({listed}): report them separately, or pass --allow-mixed"
        )

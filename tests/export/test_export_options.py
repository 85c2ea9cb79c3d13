"""Export's choices without any extra installed: epochs, stratified points, missing extras."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from cl_analyze.errors import CLAnalyzeError
from cl_analyze.export import ExportOptions, export_run, parse_export_epochs
from cl_analyze.export.content import chosen_epochs, sample_rows
from cl_analyze.store import RunStore


def test_epoch_words_and_numbers(center_run: Path) -> None:
    assert parse_export_epochs(None) == ("first", "peak", "last")
    assert parse_export_epochs("0, peak,all") == (0, "peak", "all")
    with pytest.raises(CLAnalyzeError, match="'x' is not an epoch"):
        parse_export_epochs("1,x")
    with RunStore(center_run) as store:
        epochs = store.epochs.tolist()
        accuracy = store.history["test_accuracy"]
        assert chosen_epochs(store, ("all",)) == epochs
        peak = epochs[int(np.nanargmax(accuracy))]  # the first of equal highest accuracies
        assert chosen_epochs(store, ("peak",)) == [peak]
        assert chosen_epochs(store, ("last", "first", 1)) == sorted({epochs[-1], epochs[0], 1})


def test_sample_rows_keep_every_class_in_proportion() -> None:
    labels = np.repeat([0, 1, 2], [50, 30, 20])
    rows = sample_rows(labels, 10)
    assert np.bincount(labels[rows]).tolist() == [5, 3, 2]
    assert sample_rows(labels, None).tolist() == list(range(100))


def test_a_missing_extra_is_one_line(
    center_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # as if not installed
    options = ExportOptions(out=tmp_path / "tb")
    with pytest.raises(CLAnalyzeError, match=r"pip install 'cl-analyze\[tensorboard\]'"):
        export_run(center_run, options)
    assert not (tmp_path / "tb").exists()
    monkeypatch.setitem(sys.modules, "wandb", None)
    with pytest.raises(CLAnalyzeError, match=r"pip install 'cl-analyze\[wandb\]'"):
        export_run(center_run, ExportOptions(target="wandb", out=tmp_path / "wb"))

"""``cl-analyze export --to tensorboard``: the folder read back with TensorBoard's own readers."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cl_analyze import cli
from cl_analyze.data import load_dataset
from cl_analyze.metrics import load_metrics
from cl_analyze.store import RunStore

pytest.importorskip("tensorboard", reason="pip install 'cl-analyze[tensorboard]'")

from tensorboard.backend.event_processing.event_accumulator import (
    EventAccumulator,
)


def run_main(monkeypatch: pytest.MonkeyPatch, *args: str) -> int:
    monkeypatch.setattr("sys.argv", ["cl-analyze", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    return int(exit_info.value.code or 0)


def projector_embeddings(config: str) -> list[dict[str, list[str]]]:
    """The ``embeddings { ... }`` entries of a projector_config.pbtxt: field -> values."""
    entries = []
    for block in re.findall(r"embeddings \{(.*?)\n\}", config, flags=re.S):
        fields: dict[str, list[str]] = {}
        for key, value in re.findall(r"(\w+): \"?([^\"\n]*)\"?", block):
            fields.setdefault(key, []).append(value)
        entries.append(fields)
    return entries


def scalars(folder: Path) -> dict[str, dict[int, float]]:
    events = EventAccumulator(str(folder), size_guidance={"scalars": 0})
    events.Reload()
    return {
        tag: {event.step: event.value for event in events.Scalars(tag)}
        for tag in events.Tags()["scalars"]
    }


def test_export_to_tensorboard(
    center_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "center"
    shutil.copytree(center_run, run)
    out = tmp_path / "tb"
    assert run_main(monkeypatch, "export", str(run), "--out", str(out), "--quiet") == 0
    logged = scalars(out)

    # Every history scalar and every cached metric, the epoch as step (float32 in the events).
    with RunStore(run) as store:
        history, epochs = store.history, store.epochs.tolist()
        labels = store.labels("test")
        indices = store.indices("test")
        features = {int(e): store.features("test", row) for row, e in enumerate(epochs)}
        predictions = {int(e): store.predictions("test", row) for row, e in enumerate(epochs)}
        names = store.class_names
        accuracy = history["test_accuracy"]
    for name, values in history.items():
        expected = {e: v for e, v in zip(epochs, values.tolist(), strict=True) if np.isfinite(v)}
        assert logged[f"history/{name}"] == pytest.approx(expected, rel=1e-6), name
    metrics = load_metrics(run)
    whole = metrics[(metrics["class"] == "") & (metrics.split == "test")]
    for metric, group in whole.groupby("metric"):
        expected = dict(zip(group.epoch.tolist(), group.value.tolist(), strict=True))
        assert logged[f"metrics/test/{metric}"] == pytest.approx(expected, rel=1e-6, abs=1e-7)
    some_class = metrics[metrics["class"] != ""].iloc[0]
    tag = f"metrics/{some_class.split}/{some_class.metric}/{some_class['class']}"
    assert logged[tag][int(some_class.epoch)] == pytest.approx(some_class.value, rel=1e-6)

    # The projector: one embedding per chosen epoch (first, peak, last) with its files.
    embeddings = projector_embeddings((out / "projector_config.pbtxt").read_text())
    peak = epochs[int(np.nanargmax(accuracy))]
    chosen = sorted({epochs[0], peak, epochs[-1]})
    names_logged = [e["tensor_name"][0] for e in embeddings]
    assert names_logged == [f"test_epoch_{e:03d}:{e:05d}" for e in chosen]
    dataset = load_dataset("mnist-5k").test
    position = {int(i): k for k, i in enumerate(dataset.indices.tolist())}
    digits = dataset.images.numpy()[[position[int(i)] for i in indices]]
    for embedding, epoch in zip(embeddings, chosen, strict=True):
        tensor = np.loadtxt(out / embedding["tensor_path"][0], delimiter="\t", ndmin=2)
        np.testing.assert_allclose(tensor, features[epoch], rtol=1e-6)
        rows = (out / embedding["metadata_path"][0]).read_text().splitlines()
        assert rows[0].split("\t") == ["label", "prediction", "correct"]
        for line, label, prediction in zip(rows[1:], labels, predictions[epoch], strict=True):
            assert line.split("\t") == [
                names[label],
                names[prediction],
                str(bool(label == prediction)),
            ]
        # The sprite: the digits in store order, row by row, dark on white.
        assert embedding["single_image_dim"] == ["28", "28"]
        sprite = np.asarray(Image.open(out / embedding["image_path"][0]).convert("L"))
        per_row = int(np.ceil(np.sqrt(len(labels))))
        for k in (0, len(labels) - 1):
            r, c = divmod(k, per_row)
            tile = sprite[r * 28 : (r + 1) * 28, c * 28 : (c + 1) * 28].astype(int)
            assert np.abs(tile - (255 - digits[k].astype(int))).max() <= 1


def test_export_refuses_an_existing_folder_and_bad_epochs(
    center_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys
) -> None:
    out = tmp_path / "taken"
    out.mkdir()
    (out / "mine.txt").write_text("keep")
    assert run_main(monkeypatch, "export", str(center_run), "--out", str(out)) == 2
    assert "exists and is not empty" in capsys.readouterr().err
    assert (out / "mine.txt").read_text() == "keep"
    assert (
        run_main(
            monkeypatch, "export", str(center_run), "--out", str(tmp_path / "x"), "--epochs", "7"
        )
        == 2
    )
    assert "epoch 7 is not in" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
    assert not list(tmp_path.glob(".x.partial-*"))  # the partial folder went too


def test_export_a_stratified_sample_without_sprites(
    center_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = tmp_path / "center"
    shutil.copytree(center_run, run)
    out = tmp_path / "tb"
    args = ("--out", str(out), "--epochs", "last", "--max-points", "10", "--no-sprite")
    assert run_main(monkeypatch, "export", str(run), "--no-metrics", "--quiet", *args) == 0
    (embedding,) = projector_embeddings((out / "projector_config.pbtxt").read_text())
    assert "image_path" not in embedding
    tensor = np.loadtxt(out / embedding["tensor_path"][0], delimiter="\t", ndmin=2)
    with RunStore(run) as store:
        labels, features = store.labels("test"), store.features("test", -1)
    assert len(tensor) == 10
    # Each exported point is one of the stored points, and every class keeps its share.
    rows = [int(np.flatnonzero((features == point).all(axis=1))[0]) for point in tensor]
    assert np.bincount(labels[rows], minlength=10).tolist() == [1] * 10
    assert not any(tag.startswith("metrics/") for tag in scalars(out))

"""``cl-analyze export --to wandb``: an offline run (no network), read back from its files."""

from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest

from cl_analyze.export import ExportOptions, export_run
from cl_analyze.store import RunStore

wandb = pytest.importorskip("wandb", reason="pip install 'cl-analyze[wandb]'")


def offline_history(folder: Path) -> dict[int, dict[str, object]]:
    """step -> logged values (nested keys joined by '/'), from the run's ``.wandb`` log:
    LevelDB-style blocks of 32 KiB, records with a 7-byte header (crc32, length, type) holding
    wandb's Record protobufs (wandb ships no reader of its own in Python)."""
    from wandb.proto import wandb_internal_pb2

    data = next(folder.glob("*.wandb")).read_bytes()
    position, block, payload, records = 7, 32768, b"", []  # 7: the file's header "W&B" + ...
    while position + 7 <= len(data):
        left_in_block = block - position % block
        if left_in_block < 7:
            position += left_in_block
            continue
        _, length, kind = struct.unpack("<IHB", data[position : position + 7])
        chunk = data[position + 7 : position + 7 + length]
        position += 7 + length
        if kind in (1, 2):  # full, first
            payload = chunk
        elif kind in (3, 4):  # middle, last
            payload += chunk
        else:
            continue
        if kind in (1, 4):
            records.append(payload)
    steps: dict[int, dict[str, object]] = {}
    for raw in records:
        record = wandb_internal_pb2.Record()
        record.ParseFromString(raw)
        if record.WhichOneof("record_type") != "history":
            continue
        items = {
            item.key or "/".join(item.nested_key): json.loads(item.value_json)
            for item in record.history.item
        }
        steps[int(items["_step"])] = items
    return steps


def test_export_to_wandb_offline(
    center_run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    run = tmp_path / "center"
    shutil.copytree(center_run, run)
    folder = export_run(run, ExportOptions(target="wandb", out=tmp_path / "wb"))
    assert folder.parent == tmp_path / "wb" / "wandb" and folder.name.startswith("offline-run-")
    history = offline_history(folder)
    with RunStore(run) as store:
        epochs = store.epochs.tolist()
        accuracy = store.history["test_accuracy"]
        labels = store.labels("test")
        last_features = store.features("test", -1)
        names = store.class_names
    assert sorted(history) == epochs
    for epoch, value in zip(epochs, accuracy.tolist(), strict=True):
        assert history[epoch]["history/test_accuracy"] == pytest.approx(value)
    # The table of the last epoch: one row per test sample, its label and features.
    table_key = f"embeddings/test_epoch_{epochs[-1]:03d}"
    table = json.loads((folder / "files" / history[epochs[-1]][f"{table_key}/path"]).read_text())
    assert table["columns"] == ["label", "prediction", "correct", "f0", "f1"]
    assert [row[0] for row in table["data"]] == [names[k] for k in labels]
    np.testing.assert_allclose([row[3:] for row in table["data"]], last_features, rtol=1e-6)
    # The report's figures, logged as images at the last epoch.
    last = history[epochs[-1]]
    assert last["figures/accuracy/_type"] == "image-file"
    assert (folder / "files" / last["figures/accuracy/path"]).stat().st_size > 0
    assert {f"figures/scatter_epoch_{e:03d}/path" for e in (epochs[0], epochs[-1])} <= set(last)

"""`cl-analyze embed` on the tiny trained runs: it reproduces what training stored."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import tiny_config
from PIL import Image
from typer.testing import CliRunner

from cl_analyze.analysis import load_metrics
from cl_analyze.cli import app
from cl_analyze.data import load_dataset
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore
from cl_analyze.training.embed import EmbedConfig, embed
from cl_analyze.training.fit import fit

runner = CliRunner()


def test_embed_last_checkpoint_reproduces_stored_features(center_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "last.h5"
    result = runner.invoke(
        app, ["embed", str(center_run), "--checkpoint", "last", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    with RunStore(out) as embedded, RunStore(center_run) as trained:
        assert embedded.epochs.tolist() == [int(trained.epochs[-1])]
        assert embedded.splits == ("test",)
        np.testing.assert_allclose(
            embedded.features("test", 0), trained.features("test", -1), atol=1e-5
        )
        np.testing.assert_array_equal(
            embedded.predictions("test", 0), trained.predictions("test", -1)
        )
        np.testing.assert_array_equal(embedded.labels("test"), trained.labels("test"))
        centers, trained_centers = embedded.centers(0), trained.centers(-1)
        assert centers is not None and trained_centers is not None
        np.testing.assert_allclose(centers, trained_centers, atol=1e-6)
        assert embedded.history["test_accuracy"][0] == pytest.approx(
            trained.history["test_accuracy"][-1]
        )
    # A one-row store is an ordinary run store for the metrics.
    metrics = load_metrics(out)
    assert set(metrics.epoch) == {2}
    assert set(metrics.split) == {"test"}


def test_embed_image_folder_matches_dataset_pass(center_run: Path, tmp_path: Path) -> None:
    test = load_dataset("mnist-5k", limit_test=100).test
    folder = tmp_path / "images"
    for position in range(0, 100, 7):
        digit = int(test.labels[position])
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(test.images[position].numpy(), mode="L")
        image.save(folder / str(digit) / f"{position:03d}.png")
    out = embed(EmbedConfig(run=center_run, images=folder, out=tmp_path / "images.h5"))
    with RunStore(out) as embedded, RunStore(center_run) as trained:
        # Images are read class folder by class folder, file names in order.
        order = sorted(range(0, 100, 7), key=lambda p: (str(int(test.labels[p])), f"{p:03d}"))
        np.testing.assert_allclose(
            embedded.features("test", 0), trained.features("test", -1)[order], atol=1e-5
        )
        np.testing.assert_array_equal(embedded.labels("test"), test.labels[order].numpy())
        assert embedded.class_names == trained.class_names


def test_all_checkpoints_rebuilds_a_no_embed_run(center_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "no-embed"
    fit(tiny_config(loss="center", embed=False, keep_checkpoints="all"), run)
    with RunStore(run) as store:
        assert not store.has_features("train")
    assert set(load_metrics(run).split) == {"test"}  # cached without train
    result = runner.invoke(app, ["embed", str(run), "--all-checkpoints", "--quiet"])
    assert result.exit_code == 0, result.output
    assert set(load_metrics(run).split) == {"train", "test"}  # the stale cache was dropped
    with RunStore(run) as rebuilt, RunStore(center_run) as trained:
        assert rebuilt.has_features("train")
        np.testing.assert_allclose(rebuilt.features("train"), trained.features("train"), atol=1e-5)
        np.testing.assert_array_equal(rebuilt.predictions("train"), trained.predictions("train"))
        np.testing.assert_allclose(
            rebuilt.history["train_accuracy_eval"], trained.history["train_accuracy_eval"]
        )
    again = runner.invoke(app, ["embed", str(run), "--all-checkpoints", "--quiet"])
    assert again.exit_code == 0
    assert "nothing to do" in again.output


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["embed", "{tmp}/missing"], "no run folder"),
        (["embed", "{run}", "--checkpoint", "77"], "no checkpoint for epoch 77"),
        (["embed", "{run}", "--checkpoint", "newest"], "unknown checkpoint"),
        (["embed", "{run}", "--images", "{tmp}/bad-images"], "class folders but the model has"),
    ],
)
def test_bad_input_is_one_line_error(
    center_run: Path, tmp_path: Path, arguments: list[str], message: str
) -> None:
    for name in ("cat", "dog", "emu"):
        (tmp_path / "bad-images" / name).mkdir(parents=True)
    argv = [a.format(tmp=tmp_path, run=center_run) for a in arguments]
    result = runner.invoke(app, [*argv, "--quiet"])
    assert result.exit_code != 0
    assert isinstance(result.exception, CLAnalyzeError)
    assert message in str(result.exception)
    assert "\n" not in str(result.exception)


def test_images_of_the_wrong_size_do_not_fit() -> None:
    import torch

    from cl_analyze.data import Split
    from cl_analyze.training.embed import Images, _check_fits

    split = Split(
        torch.zeros(2, 32, 32, dtype=torch.uint8),
        torch.zeros(2, dtype=torch.int64),
        torch.arange(2),
    )
    with pytest.raises(CLAnalyzeError, match="the model takes"):
        _check_fits(Images("cifar", split, tuple("0123456789"), 0.5, 0.5), 10)
    split = Split(
        torch.zeros(2, 28, 28, dtype=torch.uint8),
        torch.zeros(2, dtype=torch.int64),
        torch.arange(2),
    )
    with pytest.raises(CLAnalyzeError, match="3 classes, the model 10"):
        _check_fits(Images("abc", split, ("a", "b", "c"), 0.5, 0.5), 10)

"""`cl-analyze embed` on the tiny trained runs: it reproduces what training stored."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import TINY, tiny_config
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
    test = load_dataset("mnist-5k", limit_test=TINY["limit_test"]).test
    folder = tmp_path / "images"
    for position in range(0, len(test), 7):
        digit = int(test.labels[position])
        (folder / str(digit)).mkdir(parents=True, exist_ok=True)
        image = Image.fromarray(test.images[position].numpy(), mode="L")
        image.save(folder / str(digit) / f"{position:03d}.png")
    out = embed(EmbedConfig(run=center_run, images=folder, out=tmp_path / "images.h5"))
    with RunStore(out) as embedded, RunStore(center_run) as trained:
        # Images are read class folder by class folder, file names in order.
        order = sorted(range(0, len(test), 7), key=lambda p: (str(int(test.labels[p])), f"{p:03d}"))
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


# --- embed --images: what the folder holds -----------------------------------------------------

DIGITS = tuple("0123456789")


def save_image(path: Path, pixels: np.ndarray, mode: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8), mode=mode).save(path)


def test_colour_images_become_grey_with_the_luma_formula(tmp_path: Path) -> None:
    from cl_analyze.data import load_image_folder

    rgb = np.random.default_rng(0).integers(0, 256, (28, 28, 3))
    save_image(tmp_path / "3" / "colour.png", rgb, "RGB")
    split, names = load_image_folder(tmp_path, DIGITS)
    # ITU-R 601-2 luma, as the PIL documentation gives it: L = R*299/1000 + G*587/1000 + B*114/1000
    expected = (rgb[..., 0] * 299 + rgb[..., 1] * 587 + rgb[..., 2] * 114) / 1000
    assert np.abs(split.images[0].numpy() - expected).max() <= 1.0  # integer rounding
    assert names == DIGITS and split.labels.tolist() == [3]


def test_larger_images_are_resized_to_28x28(tmp_path: Path) -> None:
    from cl_analyze.data import load_image_folder

    halves = np.zeros((56, 56))
    halves[:, 28:] = 200  # dark left half, bright right half, twice the model's size
    save_image(tmp_path / "7" / "big.png", halves, "L")
    split, _ = load_image_folder(tmp_path, DIGITS)
    image = split.images[0].numpy()
    assert image.shape == (28, 28)
    # Away from the edge a smooth resize keeps each half's value exactly.
    assert (image[:, :12] == 0).all() and (image[:, 16:] == 200).all()
    assert ((image[:, 12:16] >= 0) & (image[:, 12:16] <= 200)).all()


@pytest.mark.parametrize(
    ("layout", "message"),
    [
        ({"3/broken.png": b"not a png"}, "cannot read image"),
        ({"loose.png": None}, "no class subfolders"),
        ({"3/a.png": None, "cat/b.png": None}, "3 are classes of the model but cat are not"),
        ({"3/notes.txt": b"no images here"}, "holds no images"),
    ],
)
def test_image_folder_problems_are_one_line(
    center_run: Path, tmp_path: Path, layout: dict[str, bytes | None], message: str
) -> None:
    folder = tmp_path / "images"
    for name, content in layout.items():
        path = folder / name
        if content is None:
            save_image(path, np.zeros((28, 28)), "L")
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    result = runner.invoke(app, ["embed", str(center_run), "--images", str(folder), "--quiet"])
    assert result.exit_code != 0
    assert isinstance(result.exception, CLAnalyzeError), result.output
    assert message in str(result.exception) and "\n" not in str(result.exception)


def test_folders_named_otherwise_are_labelled_in_sorted_order_and_said_so(
    center_run: Path, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    names = [f"class-{letter}" for letter in "jihgfedcba"]  # not the model's 0..9
    for name in names:
        save_image(folder / name / "x.png", np.zeros((28, 28)), "L")
    out = tmp_path / "named.h5"
    result = runner.invoke(
        app, ["embed", str(center_run), "--images", str(folder), "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    assert "not the model's classes" in result.output and "sorted order" in result.output
    with RunStore(out) as store:
        assert store.class_names == sorted(names)
        assert store.labels("test").tolist() == list(range(10))  # class-a is 0, class-j is 9


def model_features(run: Path, images: np.ndarray) -> np.ndarray:
    """The checkpoint's features of uint8 images, computed here directly."""
    import torch

    from cl_analyze.data import normalise
    from cl_analyze.training.checkpoints import load_checkpoint, model_from_checkpoint

    model, _ = model_from_checkpoint(load_checkpoint(run / "last.pt"))
    model.eval()
    with torch.no_grad():
        features, _ = model(normalise(torch.from_numpy(images), 0.1307, 0.3081))
    return features.numpy()


def test_split_train_embeds_the_runs_own_training_subset(center_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "train.h5"
    result = runner.invoke(
        app, ["embed", str(center_run), "--split", "train", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    with RunStore(out) as embedded, RunStore(center_run) as trained:
        assert embedded.splits == ("train",)
        np.testing.assert_array_equal(embedded.indices("train"), trained.indices("train"))
        np.testing.assert_allclose(
            embedded.features("train", 0), trained.features("train", -1), atol=1e-5
        )
        assert embedded.history["train_accuracy_eval"][0] == pytest.approx(
            trained.history["train_accuracy_eval"][-1]
        )


def test_limit_takes_a_stratified_subset_of_the_runs_split(
    center_run: Path, tmp_path: Path
) -> None:
    out = tmp_path / "limited.h5"
    result = runner.invoke(
        app, ["embed", str(center_run), "--limit", "20", "--out", str(out), "--quiet"]
    )
    assert result.exit_code == 0, result.output
    with RunStore(out) as embedded, RunStore(center_run) as trained:
        labels = embedded.labels("test")
        assert len(labels) == 20 and np.bincount(labels).tolist() == [2] * 10
        # A smaller stratified subset is a prefix of the run's: the same images, same features.
        position = {int(i): row for row, i in enumerate(trained.indices("test"))}
        rows = [position[int(i)] for i in embedded.indices("test")]
        np.testing.assert_allclose(
            embedded.features("test", 0), trained.features("test", -1)[rows], atol=1e-5
        )


def test_another_dataset_from_an_idx_folder(center_run: Path, tmp_path: Path) -> None:
    from test_data import write_mnist_folder

    arrays = write_mnist_folder(tmp_path / "idx", compress=True, n_train=30, n_test=20)
    out = tmp_path / "mnist.h5"
    arguments = ["embed", str(center_run), "--dataset", "mnist", "--data-dir"]
    arguments += [str(tmp_path / "idx"), "--out", str(out), "--quiet"]
    result = runner.invoke(app, arguments)
    assert result.exit_code == 0, result.output
    images = arrays["t10k-images-idx3-ubyte"].astype(np.uint8)
    with RunStore(out) as store:
        assert store.dataset == "mnist"
        assert store.labels("test").tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
        np.testing.assert_allclose(
            store.features("test", 0), model_features(center_run, images), atol=1e-4
        )


def test_out_never_replaces_a_file(center_run: Path, tmp_path: Path) -> None:
    taken = tmp_path / "taken.h5"
    taken.write_bytes(b"someone's file")
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    for out, message in (
        (taken, "already exists"),
        (elsewhere / "run.h5", "would replace a run's store"),
    ):
        result = runner.invoke(app, ["embed", str(center_run), "--out", str(out), "--quiet"])
        assert isinstance(result.exception, CLAnalyzeError), result.output
        assert message in str(result.exception)
    assert taken.read_bytes() == b"someone's file"
    assert not (elsewhere / "run.h5").exists()
    # The default name is taken by the first call: a second one is refused, not overwritten.
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    first = runner.invoke(app, ["embed", str(run), "--quiet"])
    assert first.exit_code == 0, first.output
    written = Path(first.output.strip().splitlines()[-1])
    assert written == run / "embed-mnist-5k-test-epoch2.h5"
    content = written.read_bytes()
    again = runner.invoke(app, ["embed", str(run), "--quiet"])
    assert isinstance(again.exception, CLAnalyzeError) and "already exists" in str(again.exception)
    assert written.read_bytes() == content


def test_all_checkpoints_rebuilds_the_embed_train_limit_subset(tmp_path: Path) -> None:
    config = tiny_config(
        loss="softmax", epochs=1, limit_train=100, embed_train_limit=20, keep_checkpoints="all"
    )
    fit(config, tmp_path / "full")
    fit(config.replace(embed=False), tmp_path / "lean")
    result = runner.invoke(app, ["embed", str(tmp_path / "lean"), "--all-checkpoints", "--quiet"])
    assert result.exit_code == 0, result.output
    with RunStore(tmp_path / "lean") as rebuilt, RunStore(tmp_path / "full") as trained:
        assert rebuilt.features("train").shape == (2, 20, 2)
        np.testing.assert_array_equal(rebuilt.indices("train"), trained.indices("train"))
        np.testing.assert_allclose(rebuilt.features("train"), trained.features("train"), atol=1e-5)

"""Training end to end on the embedded mnist-5k: complete stores, determinism, resume after kill."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY, offline_data, tiny_config

from cl_analyze.config import TrainConfig
from cl_analyze.errors import CLAnalyzeError
from cl_analyze.store import RunStore, rebuild
from cl_analyze.training import next_run_dir
from cl_analyze.training.checkpoints import load_checkpoint
from cl_analyze.training.fit import fit


def test_center_run_writes_a_complete_store(center_run: Path) -> None:
    config = tiny_config(loss="center")
    with RunStore(center_run) as store:
        assert store.rows == config.epochs + 1
        assert store.epochs.tolist() == [0, 1, 2]
        assert store.features("train").shape == (3, config.limit_train, 2)
        assert store.features("test").shape == (3, config.limit_test, 2)
        assert store.predictions("test").shape == (3, config.limit_test)
        assert store.centers().shape == (3, 10, 2)
        assert store.class_names == list("0123456789")
        assert TrainConfig.from_dict(store.config) == config
        history = store.history
        assert math.isnan(history["train_loss_ce"][0]) and history["lr"].tolist() == [0.01] * 3
        # test accuracy is what the stored predictions say
        labels = store.labels("test")
        for r in range(store.rows):
            expected = (store.predictions("test", r) == labels).mean()
            assert history["test_accuracy"][r] == pytest.approx(expected)
        assert np.all(np.isfinite(store.features("train")))
        assert store.attrs["torch_version"] == str(torch.__version__)
    assert json.loads((center_run / "config.json").read_text()) == config.to_dict()
    payload = torch.load(center_run / "last.pt", weights_only=True)  # plain weights-only load
    assert payload["epoch"] == 2 and TrainConfig.from_dict(payload["config"]) == config
    assert (center_run / "best.pt").is_file()


def test_stored_features_are_the_checkpoint_models_features(center_run: Path) -> None:
    from cl_analyze.data import load_dataset, normalise
    from cl_analyze.training.checkpoints import model_from_checkpoint

    model, config = model_from_checkpoint(load_checkpoint(center_run / "last.pt"))
    dataset = load_dataset(
        config.dataset, limit_train=config.limit_train, limit_test=config.limit_test
    )
    model.eval()
    with torch.no_grad():
        features, _ = model(normalise(dataset.test.images, dataset.mean, dataset.std))
    with RunStore(center_run) as store:
        assert np.allclose(store.features("test", -1), features.numpy(), atol=1e-5)


def test_centers_move_during_training_and_softmax_has_none(
    center_run: Path, softmax_run: Path
) -> None:
    with RunStore(center_run) as store:
        centers = store.centers()
        assert not np.allclose(centers[0], centers[-1])
    with RunStore(softmax_run) as store:
        assert store.centers() is None
        assert np.all(np.isnan(store.history["train_loss_center"]))


TIME_SCALARS = {"train_time_s", "embed_time_s", "elapsed_s"}


def assert_same_rows(a: RunStore, b: RunStore, rows: int) -> None:
    """Bit-identical features, predictions, centers and scalars in the first ``rows`` rows."""
    assert a.epochs[:rows].tolist() == b.epochs[:rows].tolist()
    for split in ("train", "test"):
        assert np.array_equal(a.features(split)[:rows], b.features(split)[:rows])
        assert np.array_equal(a.predictions(split)[:rows], b.predictions(split)[:rows])
    assert np.array_equal(a.centers()[:rows], b.centers()[:rows])
    for name in set(a.history) - TIME_SCALARS:
        np.testing.assert_array_equal(a.history[name][:rows], b.history[name][:rows])


def test_deterministic_runs_are_bit_identical(first_epoch_run: Path, center_run: Path) -> None:
    # The same command twice (here stopped after one of its two epochs): the same numbers.
    with RunStore(first_epoch_run) as first, RunStore(center_run) as second:
        assert first.rows == 2
        assert_same_rows(first, second, rows=2)


def test_resume_across_a_learning_rate_step_equals_an_uninterrupted_run(
    first_epoch_run: Path, center_run: Path, tmp_path: Path
) -> None:
    """Resumed after epoch 1 with step_size 2: the scheduler must pick up mid-period, so that
    the step after epoch 2 still happens (a fresh scheduler would count from 0 and miss it)."""
    config = tiny_config(loss="center")
    assert (config.step_size, config.epochs) == (2, 2)
    run = tmp_path / "run"
    shutil.copytree(first_epoch_run, run)
    fit(config, run, resume=True)  # also extends the stored 1-epoch config to 2 epochs
    with RunStore(run) as resumed, RunStore(center_run) as straight:
        assert resumed.rows == 3 and resumed.config["epochs"] == 2
        assert_same_rows(resumed, straight, rows=3)
        assert resumed.history["lr"].tolist() == [config.lr] * 3  # recorded before each step
    resumed_state = load_checkpoint(run / "last.pt")
    straight_state = load_checkpoint(center_run / "last.pt")
    # What epoch 3 would train with: halved once, after epoch 2 (lr * gamma ** (2 // 2)).
    expected_lr = config.lr * config.gamma ** (2 // config.step_size)
    assert resumed_state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(expected_lr)
    assert resumed_state["scheduler"] == straight_state["scheduler"]
    assert resumed_state["scheduler"]["last_epoch"] == 2


def test_resume_refuses_a_store_with_fewer_epochs_than_its_checkpoint(
    center_run: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    shutil.copytree(center_run, run)
    rebuild(run / "run.h5", keep_rows=1)  # last.pt is at epoch 2, the store holds epoch 0 only
    checkpoint = (run / "last.pt").read_bytes()
    with pytest.raises(CLAnalyzeError, match=r"holds 1 epoch but last\.pt is at epoch 2.*damaged"):
        fit(tiny_config(loss="center"), run, resume=True)
    assert (run / "last.pt").read_bytes() == checkpoint
    with RunStore(run) as store, RunStore(center_run) as original:
        assert store.rows == 1
        assert np.array_equal(store.features("train", 0), original.features("train", 0))
    assert not (run / "run.lock").exists()


def test_paper_update_trains(tmp_path: Path) -> None:
    fit(tiny_config(loss="center", center_update="paper", epochs=1), tmp_path / "paper")
    with RunStore(tmp_path / "paper") as store:
        centers = store.centers()
        assert store.rows == 2 and not np.allclose(centers[0], centers[1])
        assert store.history["center_lr"][0] == 0.5  # alpha is the centers' rate


def test_no_embed_stores_test_predictions_only(tmp_path: Path) -> None:
    fit(tiny_config(loss="softmax", epochs=1, embed=False), tmp_path / "lean")
    with RunStore(tmp_path / "lean") as store:
        assert store.rows == 2 and not store.has_features("train")
        assert store.predictions("test").shape == (2, TINY["limit_test"])
        with pytest.raises(CLAnalyzeError, match="--all-checkpoints"):
            store.features("train")


@pytest.mark.slow  # a real kill -9 of the CLI; fast: the in-process resume test above
def test_resume_after_kill_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    """kill -9 mid-run leaves a readable store; --resume then matches a run never stopped."""
    config = tiny_config(loss="center", epochs=4, limit_train=256)
    interrupted = tmp_path / "interrupted"
    command = [sys.executable, "-m", "cl_analyze", "train", "--quiet", "--out", str(interrupted)]
    for key, value in config.to_dict().items():
        if key in ("embed", "download"):
            continue
        if isinstance(value, bool):
            command.append(
                f"--{key.replace('_', '-')}" if value else f"--no-{key.replace('_', '-')}"
            )
        elif value is not None:
            command += [f"--{key.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    rows = 0
    while time.time() < deadline and process.poll() is None:
        try:
            with RunStore(interrupted) as store:
                rows = store.rows
        except CLAnalyzeError:
            rows = 0
        if rows >= 2:
            break
        time.sleep(0.05)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    assert 2 <= rows <= 4, "the run should have been killed mid-way"
    with RunStore(interrupted) as store:  # the killed writer's file opens and holds its epochs
        assert store.rows >= rows
        assert np.all(np.isfinite(store.features("train")))

    fit(config, interrupted, resume=True)
    fit(config, tmp_path / "straight")
    with RunStore(interrupted) as a, RunStore(tmp_path / "straight") as b:
        assert a.epochs.tolist() == b.epochs.tolist() == [0, 1, 2, 3, 4]
        assert np.array_equal(a.features("train"), b.features("train"))
        assert np.array_equal(a.features("test"), b.features("test"))
        assert np.array_equal(a.centers(), b.centers())
        assert np.array_equal(a.history["test_accuracy"], b.history["test_accuracy"])


def test_existing_run_is_never_overwritten_silently(center_run: Path) -> None:
    with pytest.raises(CLAnalyzeError, match="already holds a run"):
        fit(tiny_config(), center_run)


def test_resume_needs_a_run(tmp_path: Path) -> None:
    with pytest.raises(CLAnalyzeError, match="no run there"):
        fit(tiny_config(), tmp_path, resume=True)


def test_config_contradicting_the_resumed_run_is_refused(center_run: Path) -> None:
    stored = TrainConfig.from_dict(load_checkpoint(center_run / "last.pt")["config"])
    with pytest.raises(CLAnalyzeError, match=r"--lr 0\.5 contradicts"):
        stored.merge_for_resume({"lr": 0.5})
    assert stored.merge_for_resume({"epochs": 9, "lr": stored.lr}).epochs == 9


def test_next_run_dir_claims_increasing_numbers(tmp_path: Path) -> None:
    (tmp_path / "run7").mkdir()
    (tmp_path / "other").mkdir()
    assert next_run_dir(tmp_path).name == "run8"
    assert next_run_dir(tmp_path).name == "run9"


@pytest.mark.gpu
def test_cuda_training_matches_cpu_features_closely(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    data = offline_data()
    fit(tiny_config(loss="center", epochs=1, device="cuda", **data), tmp_path / "gpu")
    fit(tiny_config(loss="center", epochs=1, device="cpu", **data), tmp_path / "cpu")
    with RunStore(tmp_path / "gpu") as gpu, RunStore(tmp_path / "cpu") as cpu:
        assert np.allclose(gpu.features("test", 0), cpu.features("test", 0), atol=1e-3)
        assert gpu.attrs["device"].startswith("cuda")


def test_embed_train_limit_embeds_a_fixed_stratified_subset(tmp_path: Path) -> None:
    from cl_analyze.data import load_dataset, normalise, stratified_subset
    from cl_analyze.training.checkpoints import model_from_checkpoint

    config = tiny_config(
        loss="center", epochs=1, limit_train=120, limit_test=50, embed_train_limit=30
    )
    fit(config, tmp_path / "run")
    dataset = load_dataset("mnist-5k", limit_train=120, limit_test=50)
    subset = stratified_subset(dataset.train, 30)
    model, _ = model_from_checkpoint(load_checkpoint(tmp_path / "run" / "last.pt"))
    model.eval()
    with torch.no_grad():
        features, logits = model(normalise(subset.images, dataset.mean, dataset.std))
    with RunStore(tmp_path / "run") as store:
        assert store.features("train").shape == (2, 30, 2)  # every epoch, the same 30 images
        assert store.features("test").shape == (2, 50, 2)  # the test split stays whole
        assert np.array_equal(store.indices("train"), subset.indices.numpy())
        assert np.bincount(store.labels("train")).tolist() == [3] * 10
        assert np.allclose(store.features("train", -1), features.numpy(), atol=1e-5)
        predictions = store.predictions("train", -1)
        assert np.array_equal(predictions, logits.argmax(1).numpy())
        assert store.history["train_accuracy_eval"][-1] == pytest.approx(
            (predictions == store.labels("train")).mean()
        )
    with pytest.raises(CLAnalyzeError, match="--embed-train-limit must be >= 1"):
        tiny_config(embed_train_limit=0)

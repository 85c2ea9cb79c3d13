"""Datasets: mnist-5k split, IDX folders without network, stratified subsets, batching."""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from cl_analyze.data import (
    DEBIAN_FASHION_MNIST,
    FASHION_CLASSES,
    Split,
    iterate_batches,
    load_dataset,
    normalise,
    stratified_subset,
)
from cl_analyze.errors import CLAnalyzeError


def write_idx(path: Path, array: np.ndarray, compress: bool) -> None:
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if compress:
        with gzip.open(path.with_name(path.name + ".gz"), "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def write_mnist_folder(folder: Path, compress: bool, n_train: int = 40, n_test: int = 20) -> dict:
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(n_train) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10,
    }
    folder.mkdir(parents=True, exist_ok=True)
    for stem, array in arrays.items():
        write_idx(folder / stem, array, compress)
    return arrays


@pytest.mark.parametrize("compress", [False, True])
def test_idx_folder_loads_without_network(tmp_path: Path, compress: bool) -> None:
    arrays = write_mnist_folder(tmp_path / "idx", compress)
    dataset = load_dataset("mnist", tmp_path / "idx", download=False)
    assert np.array_equal(dataset.train.images.numpy(), arrays["train-images-idx3-ubyte"])
    assert np.array_equal(dataset.train.labels.numpy(), arrays["train-labels-idx1-ubyte"])
    assert np.array_equal(dataset.test.images.numpy(), arrays["t10k-images-idx3-ubyte"])
    assert np.array_equal(dataset.test.labels.numpy(), arrays["t10k-labels-idx1-ubyte"])
    assert dataset.class_names == tuple("0123456789")
    assert (dataset.mean, dataset.std) == (0.1307, 0.3081)


def test_torchvision_layout_is_found(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path / "MNIST" / "raw", compress=True)
    assert len(load_dataset("mnist", tmp_path, download=False).train) == 40


def test_missing_files_name_the_files_and_folder(tmp_path: Path) -> None:
    with pytest.raises(CLAnalyzeError) as info:
        load_dataset("mnist", tmp_path / "empty", download=False)
    message = str(info.value)
    assert "\n" not in message
    for stem in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        assert stem in message
    assert str(tmp_path / "empty") in message


def test_damaged_idx_file_is_a_clear_error(tmp_path: Path) -> None:
    write_mnist_folder(tmp_path, compress=False)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(b"\x01\x02garbage")
    with pytest.raises(CLAnalyzeError, match="cannot read IDX file"):
        load_dataset("mnist", tmp_path, download=False)


def test_unknown_dataset() -> None:
    with pytest.raises(CLAnalyzeError, match="unknown dataset 'cifar'"):
        load_dataset("cifar")


def test_mnist_5k_split_is_stratified_disjoint_and_deterministic() -> None:
    first = load_dataset("mnist-5k")
    second = load_dataset("mnist-5k")
    assert (len(first.train), len(first.test)) == (4000, 1000)
    assert np.bincount(first.train.labels.numpy()).tolist() == [400] * 10
    assert np.bincount(first.test.labels.numpy()).tolist() == [100] * 10
    assert not set(first.train.indices.tolist()) & set(first.test.indices.tolist())
    assert torch.equal(first.train.images, second.train.images)
    assert first.train.images.dtype == torch.uint8 and first.train.images.shape[1:] == (28, 28)
    assert 0 < first.train.images.float().mean() / 255 < 0.3  # real digits: mostly background


def test_limits_take_stratified_deterministic_subsets() -> None:
    dataset = load_dataset("mnist-5k", limit_train=512, limit_test=100)
    counts = np.bincount(dataset.train.labels.numpy(), minlength=10)
    assert len(dataset.train) == 512 and counts.min() >= 51 and counts.max() <= 52
    assert np.bincount(dataset.test.labels.numpy()).tolist() == [10] * 10
    again = load_dataset("mnist-5k", limit_train=512, limit_test=100)
    assert torch.equal(dataset.train.indices, again.train.indices)


def test_stratified_subset_keeps_proportions_of_unbalanced_classes() -> None:
    labels = torch.tensor([0] * 60 + [1] * 30 + [2] * 10)
    split = Split(torch.zeros(100, 2, 2, dtype=torch.uint8), labels, torch.arange(100))
    subset = stratified_subset(split, 20)
    assert np.bincount(subset.labels.numpy()).tolist() == [12, 6, 2]
    assert torch.equal(subset.indices, subset.indices.sort().values)  # original order kept
    with pytest.raises(CLAnalyzeError):
        stratified_subset(split, 0)


def test_shuffled_batches_cover_every_sample_once_and_repeat_per_seed() -> None:
    split = Split(torch.zeros(10, 1, 1, dtype=torch.uint8), torch.arange(10), torch.arange(10))

    def order(seed: int) -> list[int]:
        generator = torch.Generator().manual_seed(seed)
        return [
            int(i) for _, labels in iterate_batches(split, 3, generator=generator) for i in labels
        ]

    assert sorted(order(1)) == list(range(10))
    assert order(1) == order(1) and order(1) != order(2)
    sizes = [len(labels) for _, labels in iterate_batches(split, 3)]
    assert sizes == [3, 3, 3, 1]


def test_normalise_matches_the_reference_transform() -> None:
    images = torch.tensor([[[0, 255], [128, 51]]], dtype=torch.uint8)
    out = normalise(images, 0.1307, 0.3081)
    expected = (images.float() / 255 - 0.1307) / 0.3081
    assert out.shape == (1, 1, 2, 2)
    assert torch.allclose(out[:, 0], expected)


@pytest.mark.skipif(
    not DEBIAN_FASHION_MNIST.is_dir(),
    reason="Debian's Fashion-MNIST is absent: apt-get install dataset-fashion-mnist",
)
def test_fashion_mnist_is_found_in_debians_folder(tmp_path: Path) -> None:
    dataset = load_dataset("fashion-mnist", tmp_path, download=False)
    assert (len(dataset.train), len(dataset.test)) == (60000, 10000)
    assert dataset.class_names == FASHION_CLASSES
    assert np.bincount(dataset.test.labels.numpy()).tolist() == [1000] * 10
    mean = dataset.train.images.float().mean().item() / 255
    assert mean == pytest.approx(dataset.mean, abs=1e-3)


def test_a_failed_download_says_why_and_other_errors_are_not_hidden(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import urllib.error

    import cl_analyze.data as data

    def offline(name: str, data_dir: Path) -> None:
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_download", offline)
    with pytest.raises(CLAnalyzeError) as info:
        load_dataset("mnist", tmp_path / "empty")
    message = str(info.value)
    assert "\n" not in message
    assert "could not be downloaded (<urlopen error [Errno -3] Temporary failure" in message
    with pytest.raises(CLAnalyzeError, match="not found and --no-download was given"):
        load_dataset("mnist", tmp_path / "empty", download=False)

    def broken(name: str, data_dir: Path) -> None:
        raise TypeError("a bug, not a network failure")

    monkeypatch.setattr(data, "_download", broken)
    with pytest.raises(TypeError, match="a bug"):  # no longer swallowed by `except Exception`
        load_dataset("mnist", tmp_path / "empty")

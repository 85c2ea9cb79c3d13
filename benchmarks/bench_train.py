"""Training throughput: cl-analyze's loop against a reference-style loop, same data, same run.

The baseline is written the way KaiyangZhou/pytorch-center-loss trains: a per-sample Dataset with
PIL + torchvision transforms, a DataLoader, and the distance-matrix center loss. cl-analyze holds
each split as one uint8 tensor and batches by a seeded permutation.
Also measured: the per-epoch embedding pass (eval batch 1024 against the default 128), and bf16
autocast against fp32. Where the device has no native bf16 (an AVX2-only CPU), bf16 is measured
on a few images only and printed as "not native: expected slow", never as a speed-up.

    python -m benchmarks.run train            # on CPU (about 2-3 minutes on 2 cores)
    BENCH_DEVICE=cuda python -m benchmarks.run train
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn
from torchvision import transforms

from cl_analyze.config import TrainConfig
from cl_analyze.data import load_dataset
from cl_analyze.hardware import native_bf16
from cl_analyze.models import LeNetPlusPlus
from cl_analyze.progress import Reporter
from cl_analyze.training import TrainState, evaluate, train_one_epoch

IMAGES = int(os.environ.get("BENCH_IMAGES", "2048"))
# Emulated bf16 runs LeNet++ at ~5-10 img/s on an AVX2 CPU: a few images show how slow it is.
EMULATED_BF16_IMAGES = 64


class ReferenceCenterLoss(nn.Module):
    """The reference's loss: a B x C distance matrix, masked."""

    def __init__(self, num_classes: int, feat_dim: int) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        batch = x.size(0)
        distmat = (
            x.pow(2).sum(dim=1, keepdim=True).expand(batch, self.num_classes)
            + self.centers.pow(2).sum(dim=1, keepdim=True).expand(self.num_classes, batch).t()
        )
        distmat = distmat.addmm(x, self.centers.t(), beta=1, alpha=-2)
        classes = torch.arange(self.num_classes, device=x.device)
        mask = labels.unsqueeze(1).expand(batch, self.num_classes).eq(classes)
        return (distmat * mask.float()).clamp(min=1e-12, max=1e12).sum() / batch


class PerSampleMNIST(torch.utils.data.Dataset[tuple[torch.Tensor, int]]):
    """torchvision-style: one PIL image and one transform call per sample."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        self.images, self.labels = images, labels
        self.transform = transforms.Compose(
            [transforms.ToTensor(), transforms.Normalize((0.1307,), (0.3081,))]
        )

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        image = Image.fromarray(self.images[index], mode="L")
        return self.transform(image), int(self.labels[index])


def reference_epoch(device: torch.device, images: np.ndarray, labels: np.ndarray) -> float:
    torch.manual_seed(1)
    model = LeNetPlusPlus().to(device)
    center_loss = ReferenceCenterLoss(10, 2).to(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.001, momentum=0.9, weight_decay=5e-4)
    center_optimizer = torch.optim.SGD(center_loss.parameters(), lr=0.5)
    loader = torch.utils.data.DataLoader(
        PerSampleMNIST(images, labels),
        batch_size=128,
        shuffle=True,
        pin_memory=device.type == "cuda",
        num_workers=0 if device.type == "cpu" else 4,
    )
    model.train()
    start = time.perf_counter()
    for data, target in loader:
        data, target = data.to(device), target.to(device)
        features, outputs = model(data)
        loss = F.cross_entropy(outputs, target) + 1.0 * center_loss(features, target)
        optimizer.zero_grad()
        center_optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        for param in center_loss.parameters():
            assert param.grad is not None
            param.grad.data *= 1.0 / 1.0
        center_optimizer.step()
        # The reference reads each loss every step to update its AverageMeters.
        loss.item()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return len(labels) / (time.perf_counter() - start)


def ours_epoch(device: torch.device, precision: str, images: int = IMAGES) -> float:
    config = TrainConfig(
        loss="center",
        dataset="mnist-5k",
        limit_train=images,
        batch_size=min(128, images),
        device=str(device),
        precision=precision,
    )
    dataset = load_dataset("mnist-5k", limit_train=images).to(device)
    state = TrainState.build(config, 10, device)
    stats = train_one_epoch(state, dataset, config, 1, Reporter(quiet=True))
    return len(dataset.train) / stats.seconds


def embed_rate(
    device: torch.device, precision: str, batch_size: int, limit: int | None = None
) -> float:
    dataset = load_dataset("mnist-5k", limit_train=limit, limit_test=limit).to(device)
    model = LeNetPlusPlus().to(device)
    start = time.perf_counter()
    for split in (dataset.train, dataset.test):
        evaluate(
            model, split, dataset.mean, dataset.std, batch_size=batch_size, precision=precision
        )
    return (len(dataset.train) + len(dataset.test)) / (time.perf_counter() - start)


def main() -> None:
    device = torch.device(os.environ.get("BENCH_DEVICE", "cpu"))
    dataset = load_dataset("mnist-5k", limit_train=IMAGES)
    images = dataset.train.images.numpy()
    labels = dataset.train.labels.numpy()
    print(
        f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads,"
        f" {IMAGES} training images per measurement"
    )
    native = native_bf16(device)
    ours_epoch(device, "fp32")  # warm-up: first convolutions allocate and pick kernels
    baseline = reference_epoch(device, images, labels)
    fp32 = ours_epoch(device, "fp32")
    print(f"train  reference-style loop   {baseline:9.0f} img/s   1.00x")
    print(f"train  cl-analyze fp32        {fp32:9.0f} img/s   {fp32 / baseline:.2f}x")
    embed_old = embed_rate(device, "fp32", 1024)
    embed32 = embed_rate(device, "fp32", 128)
    print(f"embed  fp32, eval batch 1024   {embed_old:9.0f} img/s   1.00x")
    print(
        f"embed  fp32, eval batch 128    {embed32:9.0f} img/s   {embed32 / embed_old:.2f}x:"
        f" 70,000 images in {70000 / embed32:.1f} s"
        f" ({70000 / embed32 / (60000 / fp32):.2f} of a 60k training epoch)"
    )
    if native:
        bf16 = ours_epoch(device, "bf16")
        embed16 = embed_rate(device, "bf16", 128)
        print(f"train  cl-analyze bf16 (native) {bf16:9.0f} img/s   {bf16 / fp32:.2f}x of fp32")
        print(f"embed  bf16 (native)            {embed16:9.0f} img/s   {embed16 / embed32:.2f}x")
        return
    n = EMULATED_BF16_IMAGES
    bf16 = ours_epoch(device, "bf16", n)
    embed16 = embed_rate(device, "bf16", 128, limit=n // 2)
    print(
        f"bf16 not native: expected slow ({n} images only; --precision auto uses fp32 here):"
        f" train {bf16:.0f} img/s ({fp32 / bf16:.0f}x slower than fp32),"
        f" embed {embed16:.0f} img/s ({embed32 / embed16:.0f}x slower)"
    )


if __name__ == "__main__":
    main()

"""Center loss (Wen et al., ECCV 2016) in the reference's and in the paper's formulation."""

from __future__ import annotations

import torch
from torch import nn

from cl_analyze.config import CENTER_UPDATES, CenterUpdate


class CenterLoss(nn.Module):
    """Pull each feature toward a learned center of its class.

    Args:
        num_classes: C, the number of classes (and centers).
        feat_dim: D, the feature dimension.
        update: how the centers learn.

            - ``"sgd"`` (KaiyangZhou/pytorch-center-loss):
              loss = (1/B) * sum_i ||x_i - c_{y_i}||^2; ``centers`` is an ``nn.Parameter``
              drawn from N(0, 1) and trained by its own optimizer.
              The reference divides the centers' gradient by the loss weight lambda before that
              step, so lambda does not move the centers: see ``unscale_center_grad``.
            - ``"paper"`` (Eq. 2-4, Algorithm 1):
              loss = (1/(2B)) * sum_i ||x_i - c_{y_i}||^2 with no gradient into the centers
              (a buffer); call ``update_centers`` after each step.
        alpha: the paper's center learning rate (``update="paper"`` only).

    Shapes:
        features: (B, D) float; labels: (B,) int64 in [0, C); returns a scalar.
        centers: (C, D).
    """

    centers: torch.Tensor

    def __init__(
        self,
        num_classes: int,
        feat_dim: int,
        update: CenterUpdate = "sgd",
        alpha: float = 0.5,
    ) -> None:
        super().__init__()
        if update not in CENTER_UPDATES:
            raise ValueError(f"update must be one of {CENTER_UPDATES}, got {update!r}")
        self.num_classes = num_classes
        self.feat_dim = feat_dim
        self.update = update
        self.alpha = alpha
        initial = torch.randn(num_classes, feat_dim)
        if update == "sgd":
            self.centers = nn.Parameter(initial)
        else:
            self.register_buffer("centers", initial)

    def forward(self, features: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        centers = self.centers if self.update == "sgd" else self.centers.detach()
        # x - c_y directly: the expanded ||x||^2 + ||c||^2 - 2 x.c form cancels catastrophically
        # in float32 once features sit close to large centers.
        diff = features - centers.to(features.dtype)[labels]
        squared = diff.pow(2).sum()
        scale = 1.0 / features.shape[0] if self.update == "sgd" else 0.5 / features.shape[0]
        return squared * scale

    def unscale_center_grad(self, weight: float) -> None:
        """Undo lambda on the centers' gradient, as the reference does before the center step."""
        if self.update == "sgd" and self.centers.grad is not None:
            self.centers.grad.mul_(1.0 / weight)

    @torch.no_grad()
    def update_centers(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The paper's rule for the classes present in the batch (``update="paper"`` only):

        c_j <- c_j - alpha * sum_{i: y_i = j} (c_j - x_i) / (1 + n_j).
        """
        if self.update != "paper":
            raise RuntimeError("update_centers is the paper's rule: construct with update='paper'")
        features = features.detach().to(self.centers.dtype)
        counts = torch.bincount(labels, minlength=self.num_classes).to(self.centers.dtype)
        sums = torch.zeros_like(self.centers).index_add_(0, labels, features)
        # sum_i (c_j - x_i) = n_j c_j - sum_i x_i; absent classes have n_j = 0 and stay put.
        delta = (counts[:, None] * self.centers - sums) / (1.0 + counts[:, None])
        self.centers.sub_(self.alpha * delta)

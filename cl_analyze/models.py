"""LeNet++ (Wen et al., 2016) exactly as the PyTorch reference builds it."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class LeNetPlusPlus(nn.Module):
    """Six 5x5 convolutions 32-32-64-64-128-128 with PReLU, a 2x2 max-pool after each pair,
    fc 1152 -> ``feat_dim`` with PReLU, then the classifier fc ``feat_dim`` -> ``num_classes``.

    Input ``(B, 1, 28, 28)``; ``forward`` returns ``(features (B, feat_dim), logits (B, C))``.
    ``trunk`` (the convolutions) and ``head`` (feature layer + classifier) split it, so the trunk
    can run under bf16 autocast while the features stay fp32; the state_dict keys are unchanged.
    """

    def __init__(self, num_classes: int = 10, feat_dim: int = 2) -> None:
        super().__init__()
        widths = [(1, 32), (32, 32), (32, 64), (64, 64), (64, 128), (128, 128)]
        self.convs = nn.ModuleList(nn.Conv2d(i, o, 5, stride=1, padding=2) for i, o in widths)
        self.prelus = nn.ModuleList(nn.PReLU() for _ in widths)
        self.fc1 = nn.Linear(128 * 3 * 3, feat_dim)
        self.prelu_fc1 = nn.PReLU()
        self.fc2 = nn.Linear(feat_dim, num_classes)
        self.feat_dim = feat_dim
        self.num_classes = num_classes

    def trunk(self, x: torch.Tensor) -> torch.Tensor:
        """The convolutions: ``(B, 1, 28, 28)`` -> ``(B, 1152)``. Almost all of the compute,
        so the only part worth running under bf16 autocast."""
        for index, (conv, prelu) in enumerate(zip(self.convs, self.prelus, strict=True)):
            x = prelu(conv(x))
            if index % 2 == 1:
                x = F.max_pool2d(x, 2)
        return x.flatten(1)

    def head(self, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The feature layer and the classifier: ``(B, 1152)`` -> ``(features, logits)``."""
        features = self.prelu_fc1(self.fc1(hidden))
        return features, self.fc2(features)

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.trunk(x))[0]

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.head(self.trunk(x))

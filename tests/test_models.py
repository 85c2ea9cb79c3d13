"""LeNet++ shapes and layout, as in the reference."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cl_analyze.models import LeNetPlusPlus


@pytest.mark.parametrize("feat_dim", [1, 2, 5])
def test_forward_shapes(feat_dim: int) -> None:
    model = LeNetPlusPlus(num_classes=10, feat_dim=feat_dim)
    features, logits = model(torch.zeros(3, 1, 28, 28))
    assert features.shape == (3, feat_dim)
    assert logits.shape == (3, 10)


def test_layout_matches_the_reference() -> None:
    model = LeNetPlusPlus()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels) for c in convs] == [
        (1, 32),
        (32, 32),
        (32, 64),
        (64, 64),
        (64, 128),
        (128, 128),
    ]
    assert all(c.kernel_size == (5, 5) and c.padding == (2, 2) for c in convs)
    assert sum(isinstance(m, nn.PReLU) for m in model.modules()) == 7
    assert (model.fc1.in_features, model.fc1.out_features) == (1152, 2)
    assert (model.fc2.in_features, model.fc2.out_features) == (2, 10)


def test_logits_are_the_classifier_of_the_features() -> None:
    model = LeNetPlusPlus()
    features, logits = model(torch.randn(4, 1, 28, 28))
    assert torch.allclose(logits, features @ model.fc2.weight.t() + model.fc2.bias)

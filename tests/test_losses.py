"""CenterLoss against the reference's distance-matrix formula and the paper's update rule."""

from __future__ import annotations

import pytest
import torch

from cl_analyze.losses import CenterLoss


def reference_center_loss(
    x: torch.Tensor, centers: torch.Tensor, labels: torch.Tensor
) -> torch.Tensor:
    """KaiyangZhou/pytorch-center-loss's forward, written out: a masked B x C distance matrix."""
    batch, num_classes = x.shape[0], centers.shape[0]
    distmat = (
        x.pow(2).sum(dim=1, keepdim=True).expand(batch, num_classes)
        + centers.pow(2).sum(dim=1, keepdim=True).expand(num_classes, batch).t()
    )
    distmat = distmat - 2 * x @ centers.t()
    mask = labels.unsqueeze(1).eq(torch.arange(num_classes).expand(batch, num_classes))
    return (distmat * mask).clamp(min=1e-12, max=1e12).sum() / batch


@pytest.mark.parametrize("feat_dim", [2, 5])
def test_sgd_value_and_gradients_equal_reference_in_float64(feat_dim: int) -> None:
    torch.manual_seed(0)
    loss = CenterLoss(10, feat_dim).double()
    x = torch.randn(64, feat_dim, dtype=torch.float64, requires_grad=True)
    labels = torch.randint(0, 10, (64,))
    ours = loss(x, labels)
    ours_dx, ours_dc = torch.autograd.grad(ours, (x, loss.centers))

    centers = loss.centers.detach().clone().requires_grad_(True)
    theirs = reference_center_loss(x, centers, labels)
    theirs_dx, theirs_dc = torch.autograd.grad(theirs, (x, centers))

    assert ours.item() == pytest.approx(theirs.item(), abs=1e-10)
    assert torch.allclose(ours_dx, theirs_dx, atol=1e-10, rtol=0)
    assert torch.allclose(ours_dc, theirs_dc, atol=1e-10, rtol=0)


def test_float32_stays_accurate_near_large_centers() -> None:
    torch.manual_seed(0)
    loss = CenterLoss(4, 2)
    with torch.no_grad():
        loss.centers.copy_(1000.0 + torch.randn(4, 2))
    labels = torch.arange(4).repeat(8)
    offsets = 1e-2 * torch.randn(32, 2, dtype=torch.float64)
    x64 = loss.centers.detach().double()[labels] + offsets
    exact = offsets.pow(2).sum().item() / 32  # the true value, from the offsets alone

    ours = loss(x64.float(), labels).item()
    expanded = reference_center_loss(x64.float(), loss.centers.detach(), labels).item()

    assert ours == pytest.approx(exact, rel=1e-3)
    # The expanded form cancels ~1e6-sized terms in float32 and loses every digit.
    assert abs(expanded - exact) > 100 * abs(ours - exact)


def test_center_weight_does_not_move_centers() -> None:
    """The reference divides the centers' gradient by lambda before their own SGD step."""
    torch.manual_seed(0)
    x = torch.randn(16, 2)
    labels = torch.randint(0, 3, (16,))
    moved = []
    for weight in (1.0, 0.01, 7.0):
        loss = CenterLoss(3, 2)
        with torch.no_grad():
            loss.centers.copy_(torch.arange(6.0).reshape(3, 2))
        optimizer = torch.optim.SGD(loss.parameters(), lr=0.5)
        (weight * loss(x, labels)).backward()
        loss.unscale_center_grad(weight)
        optimizer.step()
        moved.append(loss.centers.detach().clone())
    # Net step written out: c_j <- c_j - lr * (2/B) * sum_{i: y_i=j} (c_j - x_i).
    start = torch.arange(6.0).reshape(3, 2)
    expected = start.clone()
    for j in range(3):
        members = x[labels == j]
        expected[j] -= 0.5 * (2 / 16) * (start[j] - members).sum(0)
    for centers in moved:
        assert torch.allclose(centers, expected, atol=1e-6)


def test_paper_loss_is_half_mean_and_gives_centers_no_gradient() -> None:
    loss = CenterLoss(3, 2, update="paper")
    centers = loss.centers.clone()
    x = torch.randn(5, 2, requires_grad=True)
    labels = torch.tensor([0, 1, 1, 2, 0])
    value = loss(x, labels)
    expected = sum(((x[i] - centers[labels[i]]) ** 2).sum() for i in range(5)) / (2 * 5)
    assert value.item() == pytest.approx(expected.item(), rel=1e-6)
    assert not any(p.requires_grad for p in loss.parameters())
    value.backward()
    assert x.grad is not None and torch.allclose(x.grad, (x - centers[labels]).detach() / 5)


def test_paper_update_on_a_hand_computed_batch() -> None:
    loss = CenterLoss(3, 2, update="paper", alpha=0.5)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [10.0, 10.0], [-4.0, 2.0]]))
    features = torch.tensor([[1.0, 1.0], [3.0, -1.0], [8.0, 10.0]])
    labels = torch.tensor([0, 0, 1])  # class 2 absent: it must not move
    loss.update_centers(features, labels)
    # Class 0: n=2, sum(c - x) = (0-1 + 0-3, 0-1 + 0+1) = (-4, 0); delta = (-4, 0) / 3.
    # Class 1: n=1, sum(c - x) = (2, 0); delta = (2, 0) / 2 = (1, 0).
    expected = torch.tensor([[0.0 + 0.5 * 4 / 3, 0.0], [10.0 - 0.5 * 1.0, 10.0], [-4.0, 2.0]])
    assert torch.allclose(loss.centers, expected, atol=1e-6)


def test_update_centers_refuses_sgd_mode() -> None:
    with pytest.raises(RuntimeError, match="paper"):
        CenterLoss(3, 2).update_centers(torch.zeros(1, 2), torch.zeros(1, dtype=torch.long))

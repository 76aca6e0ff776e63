"""Tests for napari_action.networks.heads: global, projection, local, local-predictor and representation heads."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_action.networks.heads import GlobalHead, LocalHead, LocalPredictor, ProjectionHead, RepresentationHead

pytestmark = pytest.mark.usefixtures("torch_seed")


def test_global_head_is_gap_then_two_linears():
    head = GlobalHead(8, hidden=6, out_dim=5)
    x = torch.randn(3, 8, 4, 4)
    expected = head.fc2(head.fc1(x.mean(dim=(2, 3))))
    torch.testing.assert_close(head(x), expected)
    with pytest.raises(ValueError, match="GlobalHead"):
        head(torch.randn(3, 7, 4, 4))


def test_projection_head_is_one_affine_map_of_two_linears():
    head = ProjectionHead(4)
    assert [type(layer) for layer in head] == [torch.nn.Linear, torch.nn.Linear]
    x = torch.randn(3, 4)
    # No non-linearity between the layers (as in the reference code): together they are one affine map.
    weight = head[1].weight @ head[0].weight
    bias = head[1].weight @ head[0].bias + head[1].bias
    torch.testing.assert_close(head(x), x @ weight.T + bias)


def _window_box(index, size, per_dim=6):
    """Rows/cols of window ``index`` (row-major) for a square input of side ``size``."""
    window, stride = size // 4, size // 8
    row, col = divmod(index, per_dim)
    return slice(row * stride, row * stride + window), slice(col * stride, col * stride + window)


@pytest.mark.parametrize("shape", [(32, 32), (64, 48)])
def test_local_head_shape(shape):
    head = LocalHead(3)
    out = head(torch.randn(2, 3, *shape))
    assert out.shape == (2, 36, 3 * 64)
    assert head.out_dim == 3 * 64


def test_local_head_descriptor_equals_per_window_formula():
    head = LocalHead(2)
    logits = torch.randn(2, 2, 32, 32)
    out = head(logits)
    for b in range(2):
        for w in range(36):
            rows, cols = _window_box(w, 32)
            pooled = F.adaptive_avg_pool2d(logits[b : b + 1, :, rows, cols], 8).flatten(2)
            expected = head.conv2(head.conv1(pooled)).flatten()
            torch.testing.assert_close(out[b, w], expected)


def test_local_head_window_depends_only_on_its_pixels():
    """Descriptor w sees only window w of its own image (docs/method.md, difference 4)."""
    head = LocalHead(2)
    logits = torch.randn(2, 2, 32, 32, requires_grad=True)
    out = head(logits)
    for b in range(2):
        for w in range(36):
            (grad,) = torch.autograd.grad(out[b, w].sum(), logits, retain_graph=True)
            support = grad.abs().sum(dim=1) > 0
            expected = torch.zeros_like(support)
            rows, cols = _window_box(w, 32)
            expected[b, rows, cols] = True
            assert torch.equal(support, expected), f"window {w} of image {b}"


def test_local_head_3d_shape():
    head = LocalHead(2, pooled_size=2, spatial_dims=3)
    assert head(torch.randn(1, 2, 16, 16, 32)).shape == (1, 216, 2 * 8)


def test_local_predictor_is_per_cell_linear():
    predictor = LocalPredictor(3)
    x = torch.randn(2, 36, 3 * 64)
    out = predictor(x)
    cells = x.reshape(2, 36, 3, 64)
    w1, b1 = predictor.conv1.weight[..., 0], predictor.conv1.bias
    w2, b2 = predictor.conv2.weight[..., 0], predictor.conv2.bias
    hidden = torch.einsum("oc,bnck->bnok", w1, cells) + b1[:, None]
    expected = torch.einsum("oc,bnck->bnok", w2, hidden) + b2[:, None]
    torch.testing.assert_close(out, expected.reshape(2, 36, -1))
    with pytest.raises(ValueError, match="LocalPredictor"):
        predictor(torch.randn(2, 36, 64 * 3 + 1))


def test_representation_head_unit_norm_and_size():
    head = RepresentationHead(6, 5)
    pyramid = [torch.randn(2, 4, 2, 2), torch.randn(2, 2, 4, 4)]
    rep = head(pyramid, (8, 8))
    assert rep.shape == (2, 5, 8, 8)
    torch.testing.assert_close(rep.norm(dim=1), torch.ones(2, 8, 8))
    with pytest.raises(ValueError, match="RepresentationHead"):
        head(pyramid[:1], (8, 8))

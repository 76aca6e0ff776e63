"""Tests for napari_action.networks (unet, heads, action_net, teacher): shapes, heads, EMA, class growth, queues."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_action.networks.action_net import ActionNet
from napari_action.networks.heads import GlobalHead, LocalHead, LocalPredictor, ProjectionHead, RepresentationHead
from napari_action.networks.teacher import EmbeddingQueue, StudentTeacher, ema_update
from napari_action.networks.unet import UNet
from tests.helpers.engine import TINY_MODEL

pytestmark = pytest.mark.usefixtures("torch_seed")


@pytest.mark.parametrize("in_channels, num_classes, shape", [(1, 3, (32, 32)), (3, 2, (16, 48))])
def test_unet_2d_shapes(in_channels, num_classes, shape):
    net = UNet(in_channels, num_classes, base_width=4)
    out = net(torch.randn(2, in_channels, *shape))
    assert out.logits.shape == (2, num_classes, *shape)
    assert out.bottleneck is out.pyramid[0]
    for level, (channels, stride) in enumerate(zip((64, 32, 16, 8, 4), (16, 8, 4, 2, 1), strict=True)):
        assert out.pyramid[level].shape == (2, channels, shape[0] // stride, shape[1] // stride)
    assert net.pyramid_channels == (64, 32, 16, 8, 4)


def test_unet_3d_shapes():
    net = UNet(1, 2, base_width=2, spatial_dims=3)
    out = net(torch.randn(1, 1, 16, 16, 32))
    assert out.logits.shape == (1, 2, 16, 16, 32)
    assert out.bottleneck.shape == (1, 32, 1, 1, 2)
    assert isinstance(net.out_conv, torch.nn.Conv3d)


def test_unet_dropout_only_in_encoder():
    net = UNet(1, 2, base_width=4, dropout=(0.1, 0.2, 0.3, 0.4, 0.5))
    encoder_p = [m.p for m in net.encoder.modules() if isinstance(m, torch.nn.Dropout)]
    decoder_p = [m.p for m in net.decoder.modules() if isinstance(m, torch.nn.Dropout)]
    assert encoder_p == [0.1, 0.2, 0.3, 0.4, 0.5]
    assert decoder_p == [0.0] * 4


@pytest.mark.parametrize(
    "x",
    [
        torch.zeros(1, 1, 24, 32),
        torch.zeros(1, 2, 32, 32),
        torch.zeros(1, 32, 32),
        torch.zeros(1, 1, 32, 32, 32),
    ],
    ids=["not-multiple-of-16", "wrong-channels", "missing-batch", "3d-into-2d"],
)
def test_unet_rejects_bad_input(x):
    with pytest.raises(ValueError):
        UNet(1, 2, base_width=2)(x)


@pytest.mark.parametrize(
    "kwargs",
    [{"spatial_dims": 1}, {"dropout": (0.1, 0.2)}, {"base_width": 0}],
    ids=["dims", "dropout", "width"],
)
def test_unet_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        UNet(1, 2, **kwargs)


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


def test_student_projects_the_global_latent_and_the_teacher_does_not():
    net = ActionNet(1, 3, TINY_MODEL)
    assert isinstance(net.global_predictor, ProjectionHead)
    bottleneck = net(torch.randn(2, 1, 32, 32)).bottleneck
    latent = net.global_head(bottleneck)
    torch.testing.assert_close(net.global_embedding(bottleneck, predict=False), F.normalize(latent, dim=-1))
    projected = F.normalize(net.global_predictor(latent), dim=-1)
    torch.testing.assert_close(net.global_embedding(bottleneck, predict=True), projected)


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


def test_action_net_embeddings():
    net = ActionNet(1, 3, TINY_MODEL)
    out = net(torch.randn(2, 1, 32, 32))
    for predict in (False, True):
        g = net.global_embedding(out.bottleneck, predict=predict)
        loc = net.local_embedding(out.logits, predict=predict)
        assert g.shape == (2, 16) and loc.shape == (2, 36, 3 * 64)
        torch.testing.assert_close(g.norm(dim=-1), torch.ones(2))
        torch.testing.assert_close(loc.norm(dim=-1), torch.ones(2, 36))
    assert not torch.allclose(net.global_embedding(out.bottleneck, True), net.global_embedding(out.bottleneck, False))
    assert net.representation(out.pyramid, (32, 32)).shape == (2, 8, 32, 32)


def test_encoder_parameters_cover_encoder_and_global_head_only():
    net = ActionNet(1, 2, TINY_MODEL)
    selected = {id(p) for p in net.encoder_parameters()}
    expected = {
        id(p) for module in (net.unet.encoder, net.global_head, net.global_predictor) for p in module.parameters()
    }
    assert selected == expected
    assert not selected & {id(p) for p in net.unet.decoder.parameters()}
    assert not selected & {id(p) for p in net.local_head.parameters()}


def test_ema_update_matches_formula():
    student, teacher = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        for module in (student, teacher):
            module.weight.normal_()
            module.bias.normal_()
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    student.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for name in ("weight", "bias", "running_mean", "running_var"):
        expected = 0.9 * before[name] + 0.1 * student.state_dict()[name]
        torch.testing.assert_close(teacher.state_dict()[name], expected)
    assert int(teacher.num_batches_tracked) == 7


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_ema_update_rejects_bad_momentum(momentum):
    with pytest.raises(ValueError, match="momentum"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), momentum)


def test_ema_update_rejects_mismatched_modules():
    with pytest.raises(ValueError):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3), 0.9)


def test_teacher_stays_eval_and_frozen():
    pair = StudentTeacher(1, 2, TINY_MODEL)
    pair.train()
    assert pair.student.training and not pair.teacher.training
    assert not any(m.training for m in pair.teacher.modules())
    assert all(not p.requires_grad for p in pair.teacher.parameters())
    x = torch.randn(2, 1, 32, 32)
    pair.student(x).logits.sum().backward()
    assert all(p.grad is None for p in pair.teacher.parameters())
    # Eval mode: no dropout and running BN statistics, so repeated calls agree.
    torch.testing.assert_close(pair.teacher(x).logits, pair.teacher(x).logits)
    pair.eval()
    assert not pair.student.training and not pair.teacher.training


def test_student_teacher_ema_and_sync():
    pair = StudentTeacher(1, 2, TINY_MODEL)
    with torch.no_grad():
        for p in pair.student.parameters():
            p.add_(1.0)
    t0 = pair.teacher.unet.out_conv.weight.clone()
    s = pair.student.unet.out_conv.weight.detach()
    pair.ema_update(0.99)
    torch.testing.assert_close(pair.teacher.unet.out_conv.weight, 0.99 * t0 + 0.01 * s)
    pair.sync_teacher()
    for name, value in pair.student.state_dict().items():
        torch.testing.assert_close(pair.teacher.state_dict()[name], value)
    assert all(not p.requires_grad for p in pair.teacher.parameters())


def test_add_classes_keeps_old_outputs():
    pair = StudentTeacher(1, 2, TINY_MODEL).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        old = pair.student(x)
        old_local = pair.student.local_head(old.logits)
        old_pred = pair.student.local_predictor(old_local)
    assert pair.add_classes(2) == 4
    with torch.no_grad():
        new = pair.student(x)
        new_local = pair.student.local_head(new.logits)
        new_pred = pair.student.local_predictor(new_local)
    assert new.logits.shape == (2, 4, 32, 32)
    torch.testing.assert_close(new.logits[:, :2], old.logits)
    assert new_local.shape == (2, 36, 4 * 64)
    torch.testing.assert_close(new_local[..., : 2 * 64], old_local)
    torch.testing.assert_close(new_pred[..., : 2 * 64], old_pred)
    for name, value in pair.student.state_dict().items():
        torch.testing.assert_close(pair.teacher.state_dict()[name], value)
    assert not pair.teacher.training and all(not p.requires_grad for p in pair.teacher.parameters())
    with pytest.raises(ValueError, match="n_new"):
        pair.add_classes(0)


def test_queue_fifo_wraps_around():
    queue = EmbeddingQueue(size=4, dim=2)
    assert not queue.ready and len(queue) == 0
    vectors = F.normalize(torch.randn(7, 2), dim=1)
    queue.enqueue(vectors[:3])
    assert queue.ready and len(queue) == 3
    torch.testing.assert_close(queue.entries(), vectors[:3])
    queue.enqueue(vectors[3:6])  # 3 rows, only 1 free slot: wraps to the front
    torch.testing.assert_close(queue.entries(), vectors[[4, 5, 2, 3]])
    assert int(queue.ptr) == 2 and len(queue) == 4
    queue.enqueue(vectors[6:7])
    torch.testing.assert_close(queue.entries(), vectors[[4, 5, 6, 3]])


def test_queue_keeps_last_rows_of_oversized_batch_and_normalises():
    queue = EmbeddingQueue(size=3, dim=2)
    batch = torch.randn(2, 4, 2) * 5  # (..., dim) is flattened
    queue.enqueue(batch)
    stored = F.normalize(batch.reshape(-1, 2), dim=1)[-3:]
    assert set(map(tuple, queue.entries().tolist())) == set(map(tuple, stored.tolist()))
    torch.testing.assert_close(queue.entries().norm(dim=1), torch.ones(3))


def test_queue_reset_resize_and_state_dict():
    queue = EmbeddingQueue(size=3, dim=2)
    queue.enqueue(torch.randn(2, 2))
    assert {"queue", "ptr", "count"} <= set(queue.state_dict())
    queue.reset()
    assert not queue.ready and int(queue.ptr) == 0
    queue.enqueue(torch.randn(1, 2))
    queue.resize_dim(5)
    assert queue.dim == 5 and not queue.ready
    with pytest.raises(ValueError, match="enqueue"):
        queue.enqueue(torch.randn(1, 2))

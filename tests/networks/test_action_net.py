"""Tests for napari_action.networks.action_net: the U-Net with its heads, embeddings and encoder parameters."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_action.networks.action_net import ActionNet
from napari_action.networks.heads import ProjectionHead
from napari_action.runtime import autocast
from napari_action.training.losses import supervised_loss
from tests.helpers.engine import TINY_MODEL

pytestmark = pytest.mark.usefixtures("torch_seed")


def test_student_projects_the_global_latent_and_the_teacher_does_not():
    net = ActionNet(1, 3, TINY_MODEL)
    assert isinstance(net.global_predictor, ProjectionHead)
    bottleneck = net(torch.randn(2, 1, 32, 32)).bottleneck
    latent = net.global_head(bottleneck)
    torch.testing.assert_close(net.global_embedding(bottleneck, predict=False), F.normalize(latent, dim=-1))
    projected = F.normalize(net.global_predictor(latent), dim=-1)
    torch.testing.assert_close(net.global_embedding(bottleneck, predict=True), projected)


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


def test_under_bfloat16_autocast_the_heads_the_losses_and_the_outer_layers_compute_in_float32():
    # The inner convolutions take the autocast type; the U-Net's first block (the intensities) and
    # last convolution (the logits), the embeddings the distillation divides by a temperature of
    # 0.01, and every loss, stay float32.
    net = ActionNet(1, 3, TINY_MODEL)
    images = torch.rand(2, 1, 32, 32)
    target = torch.randint(0, 3, (2, 32, 32))
    with autocast(torch.device("cpu"), True):
        out = net(images)
        assert out.logits.dtype == torch.float32
        assert out.bottleneck.dtype == torch.bfloat16
        assert net.unet.encoder[0](images).dtype == torch.bfloat16  # the block alone would autocast
        embeddings = [
            net.global_embedding(out.bottleneck, predict=True),
            net.local_embedding(out.logits, predict=False),
            net.representation(out.pyramid, (8, 8)),
        ]
        loss = supervised_loss(out.logits, target)
    assert all(e.dtype == torch.float32 for e in embeddings)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert net.unet.encoder[0][0].weight.grad is not None

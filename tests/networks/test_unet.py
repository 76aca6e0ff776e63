"""Tests for napari_action.networks.unet: shapes of the logits and the feature pyramid, dropout, bad input."""

from __future__ import annotations

import pytest
import torch

from napari_action.networks.unet import UNet

pytestmark = pytest.mark.usefixtures("torch_seed")


@pytest.mark.parametrize("in_channels, num_classes, shape", [(1, 3, (32, 32)), (3, 2, (16, 48))])
def test_unet_2d_shapes(in_channels, num_classes, shape):
    net = UNet(in_channels, num_classes, base_width=4)
    out = net(torch.randn(2, in_channels, *shape))
    assert out.logits.shape == (2, num_classes, *shape)
    assert out.bottleneck is out.pyramid[0]
    for level, (channels, stride) in enumerate(zip((64, 32, 16, 8, 4), (16, 8, 4, 2, 1), strict=True)):
        assert out.pyramid[level].shape == (2, channels, shape[0] // stride, shape[1] // stride)


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

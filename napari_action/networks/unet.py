"""The U-Net of ACTION and the building blocks its heads share.

The five-level U-Net of the ACTION reference code (You et al., IPMI 2023; the
U-Net of SSL4MIS), built for 2D (default) or 3D inputs via ``spatial_dims``.
It returns the logits together with the bottleneck and the decoder feature
pyramid that the distillation and representation heads
(:mod:`napari_action.networks.heads`) work on.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn

from napari_action.runtime import autocast_paused

#: Number of pooling steps of the U-Net.
_DEPTH = 4
#: Inputs must have spatial sizes that are multiples of this (the total down-sampling).
SPATIAL_MULTIPLE = 2**_DEPTH


class UNetOutput(NamedTuple):
    """What :meth:`UNet.forward` returns.

    Attributes
    ----------
    logits : Tensor
        Class scores, ``(B, C, *spatial)``.
    bottleneck : Tensor
        Deepest encoder feature map, ``(B, 16w, *spatial/16)``.
    pyramid : list of Tensor
        ``[bottleneck, up1, up2, up3, up4]`` with ``16w, 8w, 4w, 2w, w``
        channels at strides 16, 8, 4, 2, 1.
    """

    logits: Tensor
    bottleneck: Tensor
    pyramid: list[Tensor]


def layer_types(spatial_dims: int) -> tuple[type[nn.Module], ...]:
    """Return ``(Conv, BatchNorm, MaxPool, ConvTranspose)`` for 2D or 3D."""
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")


def check_spatial(x: Tensor, spatial_dims: int, channels: int | None, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, *spatial)``, spatial a multiple of 16."""
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{name} expects a {spatial_dims + 2}D tensor (B, C, {spatial_dims} spatial dims), "
            f"got shape {tuple(x.shape)}."
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)}).")
    if any(s % SPATIAL_MULTIPLE or s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"{name} needs spatial sizes that are positive multiples of {SPATIAL_MULTIPLE}, "
            f"got {tuple(x.shape[2:])}; pad the input first."
        )


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions, each followed by BatchNorm and LeakyReLU.

    Dropout sits between the two convolutions, as in the U-Net of the ACTION
    reference code (inherited from SSL4MIS).

    Parameters
    ----------
    in_channels, out_channels : int
        Channel counts.
    dropout : float
        Dropout probability between the convolutions (0 disables it).
    spatial_dims : int
        2 or 3.
    """

    def __init__(self, in_channels: int, out_channels: int, dropout: float = 0.0, spatial_dims: int = 2):
        conv, norm, _, _ = layer_types(spatial_dims)
        super().__init__(
            conv(in_channels, out_channels, kernel_size=3, padding=1),
            norm(out_channels),
            nn.LeakyReLU(),
            nn.Dropout(dropout),
            conv(out_channels, out_channels, kernel_size=3, padding=1),
            norm(out_channels),
            nn.LeakyReLU(),
        )


class _Down(nn.Sequential):
    """Max-pool by 2 then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, dropout: float, spatial_dims: int):
        _, _, pool, _ = layer_types(spatial_dims)
        super().__init__(pool(2), ConvBlock(in_channels, out_channels, dropout, spatial_dims))


class _Up(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int):
        super().__init__()
        _, _, _, up = layer_types(spatial_dims)
        self.up = up(in_channels, out_channels, kernel_size=2, stride=2)
        self.block = ConvBlock(2 * out_channels, out_channels, 0.0, spatial_dims)

    def forward(self, x: Tensor, skip: Tensor) -> Tensor:
        return self.block(torch.cat([skip, self.up(x)], dim=1))


class UNet(nn.Module):
    """Five-level U-Net of the ACTION reference code, 2D or 3D.

    Widths ``w, 2w, 4w, 8w, 16w``; encoder dropout per level, none in the
    decoder; max-pool down, transposed convolution up with skip concatenation;
    a final 3×3 convolution gives the class logits (You et al., IPMI 2023,
    implementation details; the U-Net of SSL4MIS).

    Parameters
    ----------
    in_channels : int
        Input channels (1, or ``1 + 2 * context`` for 2.5D input).
    num_classes : int
        Output classes, background included.
    base_width : int
        Width ``w`` of the first level.
    dropout : sequence of 5 float
        Encoder dropout per level.
    spatial_dims : int
        2 (``Conv2d`` …) or 3 (``Conv3d`` …).
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        base_width: int = 16,
        dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5),
        spatial_dims: int = 2,
    ):
        super().__init__()
        if len(dropout) != _DEPTH + 1:
            raise ValueError(f"dropout needs {_DEPTH + 1} values (one per level), got {len(dropout)}.")
        if min(in_channels, num_classes, base_width) < 1:
            raise ValueError("in_channels, num_classes and base_width must be >= 1.")
        conv, _, _, _ = layer_types(spatial_dims)
        self.spatial_dims = spatial_dims
        self.in_channels = in_channels
        self.widths = tuple(base_width * 2**level for level in range(_DEPTH + 1))
        w = self.widths
        self.encoder = nn.ModuleList(
            [ConvBlock(in_channels, w[0], dropout[0], spatial_dims)]
            + [_Down(w[i - 1], w[i], dropout[i], spatial_dims) for i in range(1, _DEPTH + 1)]
        )
        self.decoder = nn.ModuleList([_Up(w[i], w[i - 1], spatial_dims) for i in range(_DEPTH, 0, -1)])
        self.out_conv = conv(w[0], num_classes, kernel_size=3, padding=1)

    @property
    def num_classes(self) -> int:
        """Number of output channels."""
        return self.out_conv.out_channels

    def forward(self, x: Tensor) -> UNetOutput:
        """Segment ``x`` of shape ``(B, in_channels, *spatial)``, spatial multiples of 16."""
        check_spatial(x, self.spatial_dims, self.in_channels, "UNet")
        skips = []
        for level, block in enumerate(self.encoder):
            x = _in_float32(block, x) if level == 0 else block(x)
            skips.append(x)
        bottleneck = skips.pop()
        pyramid = [bottleneck]
        x = bottleneck
        for block in self.decoder:
            x = block(x, skips.pop())
            pyramid.append(x)
        return UNetOutput(_in_float32(self.out_conv, x), bottleneck, pyramid)

    def add_classes(self, n_new: int) -> None:
        """Add ``n_new`` output channels; existing channels keep their weights."""
        self.out_conv = grow_conv(self.out_conv, self.out_conv.in_channels, self.num_classes + n_new)


def _in_float32(layer: nn.Module, x: Tensor) -> Tensor:
    """``layer(x)`` in float32 under any autocast: the first and last layers of the U-Net.

    The usual practice of mixed precision, and the one screened remedy that recovered some of what
    bfloat16 training on a CPU costs the phantom's hearts (seed 0: 0.84 -> 0.89 never painted;
    seed 1 unchanged), for 6 % of a bfloat16 step (docs/benchmarks.md, "A faster cpu preset").
    Without autocast this is ``layer(x)``.
    """
    with autocast_paused(x):
        return layer(x.float())


def grow_conv(conv: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
    """Return a larger copy of ``conv`` whose old input→output block is kept.

    New output channels get PyTorch's default initialisation; the weights from
    new inputs to old outputs are zero so that old outputs do not change.
    """
    old_out, old_in = conv.weight.shape[:2]
    grown = type(conv)(
        in_channels,
        out_channels,
        kernel_size=conv.kernel_size,
        stride=conv.stride,
        padding=conv.padding,
        bias=conv.bias is not None,
    ).to(device=conv.weight.device, dtype=conv.weight.dtype)
    with torch.no_grad():
        grown.weight[:old_out].zero_()
        grown.weight[:old_out, :old_in].copy_(conv.weight)
        if conv.bias is not None:
            grown.bias[:old_out].copy_(conv.bias)
    return grown

"""Networks of ACTION: U-Net, distillation heads, student/teacher pair, queues.

Implements the architecture of *Bootstrapping Semi-supervised Medical Image
Segmentation with Anatomical-aware Contrastive Distillation* (You et al.,
IPMI 2023), following the project's method spec (ACTION_METHOD.md §1):

* :class:`UNet` — 5-level U-Net returning logits, bottleneck and the decoder
  feature pyramid used by the representation head;
* :class:`GlobalHead` / :class:`Predictor` — global (image-level) latent head;
* :class:`LocalHead` / :class:`LocalPredictor` — per-window descriptors of
  the logits (36 windows per image) for local distillation;
* :class:`RepresentationHead` — per-pixel embeddings for anatomical contrast;
* :class:`ActionNet` — all of the above in one module;
* :class:`StudentTeacher` — student plus an EMA teacher that is always in
  ``eval()`` mode and never receives gradients;
* :class:`EmbeddingQueue` — FIFO of teacher embeddings (the anchors).

The layers are built for 2D (default) or 3D inputs via ``spatial_dims``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_action.config import ModelConfig

#: Number of pooling steps of the U-Net; inputs must be multiples of 2**4.
_DEPTH = 4
_MULTIPLE = 2**_DEPTH


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


def _layer_types(spatial_dims: int) -> tuple[type[nn.Module], ...]:
    """Return ``(Conv, BatchNorm, MaxPool, ConvTranspose)`` for 2D or 3D."""
    if spatial_dims == 2:
        return nn.Conv2d, nn.BatchNorm2d, nn.MaxPool2d, nn.ConvTranspose2d
    if spatial_dims == 3:
        return nn.Conv3d, nn.BatchNorm3d, nn.MaxPool3d, nn.ConvTranspose3d
    raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}.")


def _check_spatial(x: Tensor, spatial_dims: int, channels: int | None, name: str) -> None:
    """Raise ``ValueError`` unless ``x`` is ``(B, channels, *spatial)``, spatial a multiple of 16."""
    if x.dim() != spatial_dims + 2:
        raise ValueError(
            f"{name} expects a {spatial_dims + 2}D tensor (B, C, {spatial_dims} spatial dims), "
            f"got shape {tuple(x.shape)}."
        )
    if channels is not None and x.shape[1] != channels:
        raise ValueError(f"{name} expects {channels} channels, got {x.shape[1]} (shape {tuple(x.shape)}).")
    if any(s % _MULTIPLE or s == 0 for s in x.shape[2:]):
        raise ValueError(
            f"{name} needs spatial sizes that are positive multiples of {_MULTIPLE}, "
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
        conv, norm, _, _ = _layer_types(spatial_dims)
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
        _, _, pool, _ = _layer_types(spatial_dims)
        super().__init__(pool(2), ConvBlock(in_channels, out_channels, dropout, spatial_dims))


class _Up(nn.Module):
    """Transposed-conv upsampling, concatenation with the skip, then a :class:`ConvBlock`."""

    def __init__(self, in_channels: int, out_channels: int, spatial_dims: int):
        super().__init__()
        _, _, _, up = _layer_types(spatial_dims)
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
        conv, _, _, _ = _layer_types(spatial_dims)
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

    @property
    def pyramid_channels(self) -> tuple[int, ...]:
        """Channels of ``UNetOutput.pyramid``: ``(16w, 8w, 4w, 2w, w)``."""
        return tuple(reversed(self.widths))

    def forward(self, x: Tensor) -> UNetOutput:
        """Segment ``x`` of shape ``(B, in_channels, *spatial)``, spatial multiples of 16."""
        _check_spatial(x, self.spatial_dims, self.in_channels, "UNet")
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
        bottleneck = skips.pop()
        pyramid = [bottleneck]
        x = bottleneck
        for block in self.decoder:
            x = block(x, skips.pop())
            pyramid.append(x)
        return UNetOutput(self.out_conv(x), bottleneck, pyramid)

    def add_classes(self, n_new: int) -> None:
        """Add ``n_new`` output channels; existing channels keep their weights."""
        self.out_conv = _grow_conv(self.out_conv, self.out_conv.in_channels, self.num_classes + n_new)


class GlobalHead(nn.Module):
    """Global latent head: GAP → Linear → Linear.

    Maps the bottleneck to the image-level vector of the global distillation
    (You et al., IPMI 2023, global distillation). Like the reference code there is no
    non-linearity between the two linear layers.

    Parameters
    ----------
    in_ch : int
        Bottleneck channels.
    hidden : int
        Width of the first linear layer.
    out_dim : int
        Embedding size ``D``.
    """

    def __init__(self, in_ch: int, hidden: int = 256, out_dim: int = 512):
        super().__init__()
        self.in_ch = in_ch
        self.fc1 = nn.Linear(in_ch, hidden)
        self.fc2 = nn.Linear(hidden, out_dim)

    def forward(self, bottleneck: Tensor) -> Tensor:
        """Return ``(B, out_dim)`` (not normalised) from ``(B, in_ch, *spatial)``."""
        if bottleneck.dim() < 3 or bottleneck.shape[1] != self.in_ch:
            raise ValueError(f"GlobalHead expects (B, {self.in_ch}, *spatial), got shape {tuple(bottleneck.shape)}.")
        return self.fc2(self.fc1(bottleneck.flatten(2).mean(dim=2)))


class Predictor(nn.Sequential):
    """Student-side predictor Linear(D, D) → Linear(D, D) (BYOL-style asymmetry)."""

    def __init__(self, dim: int):
        super().__init__(nn.Linear(dim, dim), nn.Linear(dim, dim))


def _extract_windows(x: Tensor, spatial_dims: int) -> Tensor:
    """Cut ``(B, C, *S)`` into overlapping windows, returned as ``(B, N, C, *window)``.

    Per spatial size ``S`` the window is ``S // 4`` and the stride ``S // 8``;
    like the reference loop ``range(0, S - window, stride)`` there are 6
    windows per dimension (36 in 2D), covering ``[0, 7S/8)``.
    """
    batch, channels = x.shape[:2]
    windows = []
    for axis, size in enumerate(x.shape[2:]):
        window, stride = size // 4, size // 8
        count = (size - window) // stride
        windows.append(window)
        x = x.narrow(2 + axis, 0, (count - 1) * stride + window).unfold(2 + axis, window, stride)
    # x is (B, C, n_1..n_d, w_1..w_d); move C next to the window pixels so that
    # each window's values become one contiguous (C, *window) block. A plain
    # reshape here would mix windows (defect 4 of the reference code).
    d = spatial_dims
    x = x.permute(0, *range(2, 2 + d), 1, *range(2 + d, 2 + 2 * d))
    return x.reshape(batch, -1, channels, *windows)


class LocalHead(nn.Module):
    """Local head on the logits: one descriptor per window.

    Each window (size ``S/4``, stride ``S/8``; 64/32 → 36 windows at 256²) is
    average-pooled to ``8×8`` and projected by two 1×1 convolutions
    ``C → 2C → C``, giving a ``C·64`` descriptor (You et al., IPMI 2023,
    local distillation).

    Parameters
    ----------
    num_classes : int
        Channels ``C`` of the logits.
    pooled_size : int
        Side of the pooled grid per window.
    spatial_dims : int
        2 or 3.
    """

    def __init__(self, num_classes: int, pooled_size: int = 8, spatial_dims: int = 2):
        super().__init__()
        _layer_types(spatial_dims)
        self.num_classes = num_classes
        self.pooled_size = pooled_size
        self.spatial_dims = spatial_dims
        # 1×1 convolutions act on each pooled cell independently, so Conv1d
        # over the flattened cells is the same operator in 2D and 3D.
        self.conv1 = nn.Conv1d(num_classes, 2 * num_classes, kernel_size=1)
        self.conv2 = nn.Conv1d(2 * num_classes, num_classes, kernel_size=1)

    @property
    def cells(self) -> int:
        """Pooled cells per window (64 in 2D)."""
        return self.pooled_size**self.spatial_dims

    @property
    def out_dim(self) -> int:
        """Descriptor size ``C · cells``."""
        return self.num_classes * self.cells

    def forward(self, logits: Tensor) -> Tensor:
        """Return descriptors ``(B, n_windows, C·64)`` of logits ``(B, C, *spatial)``."""
        _check_spatial(logits, self.spatial_dims, self.num_classes, "LocalHead")
        windows = _extract_windows(logits, self.spatial_dims)
        batch, n_windows = windows.shape[:2]
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        cells = pool(windows.flatten(0, 1), self.pooled_size).flatten(2)
        return self.conv2(self.conv1(cells)).reshape(batch, n_windows, -1)

    def add_classes(self, n_new: int) -> None:
        """Grow to ``C + n_new`` channels; outputs of existing channels are unchanged."""
        c = self.num_classes + n_new
        self.conv1 = _grow_conv(self.conv1, c, 2 * c)
        self.conv2 = _grow_conv(self.conv2, 2 * c, c)
        self.num_classes = c


class LocalPredictor(nn.Module):
    """Student-side predictor on local descriptors: two 1×1 convolutions ``C → C``.

    Parameters
    ----------
    num_classes : int
        Channels ``C``; descriptors are ``(B, N, C·cells)``.
    """

    def __init__(self, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.conv1 = nn.Conv1d(num_classes, num_classes, kernel_size=1)
        self.conv2 = nn.Conv1d(num_classes, num_classes, kernel_size=1)

    def forward(self, descriptors: Tensor) -> Tensor:
        """Map ``(B, N, C·cells)`` to the same shape."""
        if descriptors.dim() != 3 or descriptors.shape[2] % self.num_classes:
            raise ValueError(
                f"LocalPredictor expects (B, N, {self.num_classes}·cells), got {tuple(descriptors.shape)}."
            )
        batch, n_windows, dim = descriptors.shape
        cells = descriptors.reshape(batch * n_windows, self.num_classes, dim // self.num_classes)
        return self.conv2(self.conv1(cells)).reshape(batch, n_windows, dim)

    def add_classes(self, n_new: int) -> None:
        """Grow to ``C + n_new`` channels; outputs of existing channels are unchanged."""
        c = self.num_classes + n_new
        self.conv1 = _grow_conv(self.conv1, c, c)
        self.conv2 = _grow_conv(self.conv2, c, c)
        self.num_classes = c


class RepresentationHead(nn.Module):
    """Per-pixel embedding head for anatomical contrast.

    All pyramid maps are upsampled (bi/trilinear) to the input size and
    concatenated, then conv3×3 (no bias) → conv1×1 and L2-normalised per pixel
    (You et al., IPMI 2023, stage iii; 496 → 512 channels at ``w = 16``).

    Parameters
    ----------
    in_channels_total : int
        Sum of the pyramid channels (``31 w``).
    dim : int
        Embedding size per pixel.
    spatial_dims : int
        2 or 3.
    """

    def __init__(self, in_channels_total: int, dim: int, spatial_dims: int = 2):
        super().__init__()
        conv, _, _, _ = _layer_types(spatial_dims)
        self.in_channels_total = in_channels_total
        self.mode = "bilinear" if spatial_dims == 2 else "trilinear"
        self.proj = nn.Sequential(
            conv(in_channels_total, dim, kernel_size=3, padding=1, bias=False),
            conv(dim, dim, kernel_size=1),
        )

    def forward(self, pyramid: list[Tensor], size: tuple[int, ...]) -> Tensor:
        """Return unit-norm embeddings ``(B, dim, *size)`` from the decoder pyramid."""
        total = sum(level.shape[1] for level in pyramid)
        if total != self.in_channels_total:
            raise ValueError(
                f"RepresentationHead expects pyramid channels summing to {self.in_channels_total}, "
                f"got {[level.shape[1] for level in pyramid]}."
            )
        size = tuple(size)
        upsampled = [
            level
            if tuple(level.shape[2:]) == size
            else F.interpolate(level, size=size, mode=self.mode, align_corners=False)
            for level in pyramid
        ]
        return F.normalize(self.proj(torch.cat(upsampled, dim=1)), dim=1)


class ActionNet(nn.Module):
    """U-Net with every ACTION head: global, local and representation.

    Parameters
    ----------
    in_channels : int
        Input channels.
    num_classes : int
        Output classes, background included.
    model_config : ModelConfig, optional
        Sizes (``base_width``, ``dropout``, ``global_dim``, ``rep_dim``).
    spatial_dims : int
        2 or 3.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        model_config: ModelConfig | None = None,
        spatial_dims: int = 2,
    ):
        super().__init__()
        cfg = model_config if model_config is not None else ModelConfig()
        self.unet = UNet(in_channels, num_classes, cfg.base_width, tuple(cfg.dropout), spatial_dims)
        deepest = self.unet.widths[-1]
        # The reference head is Linear(256, 256) → Linear(256, D) at w = 16:
        # the hidden width follows the bottleneck width.
        self.global_head = GlobalHead(deepest, hidden=deepest, out_dim=cfg.global_dim)
        self.global_predictor = Predictor(cfg.global_dim)
        self.local_head = LocalHead(num_classes, spatial_dims=spatial_dims)
        self.local_predictor = LocalPredictor(num_classes)
        self.rep_head = RepresentationHead(sum(self.unet.widths), cfg.rep_dim, spatial_dims)

    @property
    def num_classes(self) -> int:
        """Number of output classes."""
        return self.unet.num_classes

    def forward(self, x: Tensor) -> UNetOutput:
        """Run the U-Net; heads are applied through the methods below."""
        return self.unet(x)

    def encoder_parameters(self) -> Iterator[nn.Parameter]:
        """Parameters trained in stage i: U-Net encoder, global head and predictor.

        Stage i distils only the global latent, so the decoder and the other
        heads stay frozen (You et al., IPMI 2023, stage i pre-training).
        """
        for module in (self.unet.encoder, self.global_head, self.global_predictor):
            yield from module.parameters()

    def global_embedding(self, bottleneck: Tensor, predict: bool) -> Tensor:
        """L2-normalised global embedding ``(B, D)``; ``predict`` adds the student predictor."""
        z = self.global_head(bottleneck)
        if predict:
            z = self.global_predictor(z)
        return F.normalize(z, dim=-1)

    def local_embedding(self, logits: Tensor, predict: bool) -> Tensor:
        """L2-normalised window descriptors ``(B, 36, C·64)``; ``predict`` adds the predictor."""
        z = self.local_head(logits)
        if predict:
            z = self.local_predictor(z)
        return F.normalize(z, dim=-1)

    def representation(self, pyramid: list[Tensor], size: tuple[int, ...]) -> Tensor:
        """Unit-norm per-pixel embeddings ``(B, rep_dim, *size)``."""
        return self.rep_head(pyramid, size)

    def add_classes(self, n_new: int) -> None:
        """Add ``n_new`` classes to the output conv and the local head/predictor."""
        if n_new < 1:
            raise ValueError(f"n_new must be >= 1, got {n_new}.")
        self.unet.add_classes(n_new)
        self.local_head.add_classes(n_new)
        self.local_predictor.add_classes(n_new)


def _grow_conv(conv: nn.Module, in_channels: int, out_channels: int) -> nn.Module:
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

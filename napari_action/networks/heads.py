"""The heads ACTION puts on its U-Net: global, local, projection and representation.

* :class:`GlobalHead` and :class:`ProjectionHead` — image-level latent of the
  global distillation (stages i and ii) and the student-side projection on it;
* :class:`LocalHead` and :class:`LocalPredictor` — per-window descriptors of
  the logits (36 windows per image) for the local distillation (stage ii), and
  the student-side projection on them;
* :class:`RepresentationHead` — per-pixel embeddings for the anatomical
  contrast (stage iii).

You et al., IPMI 2023; the layer sizes follow its reference code (see
docs/method.md, "Networks").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from napari_action.networks.unet import check_spatial, grow_conv, layer_types


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


class ProjectionHead(nn.Sequential):
    """Student-side projection Linear(D, D) → Linear(D, D) on the global latent.

    Only the student applies it (BYOL-style asymmetry: the paper and its code
    call it the "predictor"). As in the reference code there is no
    non-linearity between the two layers.

    Parameters
    ----------
    dim : int
        Embedding size ``D``.
    """

    def __init__(self, dim: int) -> None:
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
    # reshape here would mix windows, as the reference code does (docs/method.md, difference 4).
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
        layer_types(spatial_dims)
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
        check_spatial(logits, self.spatial_dims, self.num_classes, "LocalHead")
        windows = _extract_windows(logits, self.spatial_dims)
        batch, n_windows = windows.shape[:2]
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        cells = pool(windows.flatten(0, 1), self.pooled_size).flatten(2)
        return self.conv2(self.conv1(cells)).reshape(batch, n_windows, -1)

    def add_classes(self, n_new: int) -> None:
        """Grow to ``C + n_new`` channels; outputs of existing channels are unchanged."""
        c = self.num_classes + n_new
        self.conv1 = grow_conv(self.conv1, c, 2 * c)
        self.conv2 = grow_conv(self.conv2, 2 * c, c)
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
        self.conv1 = grow_conv(self.conv1, c, c)
        self.conv2 = grow_conv(self.conv2, c, c)
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
        conv, _, _, _ = layer_types(spatial_dims)
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
        # The 3 x 3 convolution on ~500 channels runs in the autocast type; the unit norm in float32.
        return F.normalize(self.proj(torch.cat(upsampled, dim=1)).float(), dim=1)

"""ActionNet: the U-Net with every ACTION head, as one module.

Implements the network of *Bootstrapping Semi-supervised Medical Image
Segmentation with Anatomical-aware Contrastive Distillation* (You et al.,
IPMI 2023): :class:`~napari_action.networks.unet.UNet` plus the heads of
:mod:`napari_action.networks.heads`. The student/teacher pair and the
embedding queues are in :mod:`napari_action.networks.teacher`.

The attribute names (``unet``, ``global_head``, ``global_predictor``,
``local_head``, ``local_predictor``, ``rep_head``) are the keys of saved
checkpoints: renaming one breaks every checkpoint written before.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch.nn.functional as F
from torch import Tensor, nn

from napari_action.config import ModelConfig
from napari_action.networks.heads import GlobalHead, LocalHead, LocalPredictor, ProjectionHead, RepresentationHead
from napari_action.networks.unet import UNet, UNetOutput
from napari_action.runtime import autocast_paused


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
        self.global_predictor = ProjectionHead(cfg.global_dim)
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
        """Parameters trained in stage i: U-Net encoder, global head and its projection.

        Stage i distils only the global latent, so the decoder and the other
        heads stay frozen (You et al., IPMI 2023, stage i pre-training).
        """
        for module in (self.unet.encoder, self.global_head, self.global_predictor):
            yield from module.parameters()

    def global_embedding(self, bottleneck: Tensor, predict: bool) -> Tensor:
        """L2-normalised global embedding ``(B, D)``; ``predict`` adds the student's projection.

        In float32 under any autocast (as :meth:`local_embedding`): these heads cost little, and the
        distillation divides their similarities by a temperature of 0.01.
        """
        with autocast_paused(bottleneck):
            return _embedding(self.global_head(bottleneck.float()), self.global_predictor if predict else None)

    def local_embedding(self, logits: Tensor, predict: bool) -> Tensor:
        """L2-normalised window descriptors ``(B, 36, C·64)``; ``predict`` adds the student's projection."""
        with autocast_paused(logits):
            return _embedding(self.local_head(logits.float()), self.local_predictor if predict else None)

    def representation(self, pyramid: list[Tensor], size: tuple[int, ...]) -> Tensor:
        """Unit-norm per-pixel embeddings ``(B, rep_dim, *size)``."""
        return self.rep_head(pyramid, size)

    def add_classes(self, n_new: int) -> None:
        """Add ``n_new`` classes to the output conv, the local head and its projection."""
        if n_new < 1:
            raise ValueError(f"n_new must be >= 1, got {n_new}.")
        self.unet.add_classes(n_new)
        self.local_head.add_classes(n_new)
        self.local_predictor.add_classes(n_new)


def _embedding(latent: Tensor, projection: nn.Module | None) -> Tensor:
    """Unit-norm ``latent``, projected first when the student asks (the teacher never does)."""
    if projection is not None:
        latent = projection(latent)
    return F.normalize(latent, dim=-1)

"""Batched augmentations for training: geometry, intensity and CutMix.

They work on torch tensors on any device and draw their randomness from an
explicit ``torch.Generator``, so runs are reproducible. Where and how training
uses them is in docs/method.md, "Augmentation". Unlike the reference code,
geometric transforms are always joint for images, labels and confidences
(labels with nearest interpolation; docs/method.md, differences 5 and 6), and
no function modifies its inputs in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F


def _drawing_device(generator: torch.Generator | None, device: torch.device) -> torch.device:
    """Where random numbers are drawn: on the generator's device (the result is then moved to ``device``)."""
    return generator.device if generator is not None else device


def _uniform(n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """``n`` uniform samples drawn on the generator's device, then moved to ``device``."""
    where = _drawing_device(generator, device)
    return (torch.rand(n, generator=generator, device=where) * (high - low) + low).to(device)


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return _uniform(n, 0.0, 1.0, generator, device) < p


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(f"images must be a float tensor (B, C, H, W), got {tuple(images.shape)} {images.dtype}.")


def _check_maps(images: torch.Tensor, maps: torch.Tensor | None, name: str) -> None:
    expected = (images.shape[0], *images.shape[2:])
    if maps is not None and tuple(maps.shape) != expected:
        raise ValueError(f"{name} must have shape (B, H, W) = {expected}, got {tuple(maps.shape)}.")


def random_geometric(
    images: torch.Tensor,
    targets: torch.Tensor | None = None,
    confidence: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    max_rotation_deg: float = 15.0,
    scale_range: tuple[float, float] = (0.9, 1.1),
    p_flip: float = 0.5,
    p_rot90: float = 0.5,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """Random flip, rot90, small rotation and scale, applied jointly.

    Each sample gets one affine transform, used for its image (bilinear),
    its confidence map (bilinear, 0 outside) and its targets (nearest,
    ``-1`` outside), so labels always stay aligned with the pixels they
    describe (docs/method.md, differences 5 and 6). Flips and
    rot90 without rotation/scale are exact. Image pixels mapped from outside
    the input take the per-sample minimum, as crop padding does.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` float. Square crops are expected; on non-square
        inputs rot90 leaves padded areas.
    targets : torch.Tensor, optional
        ``(B, H, W)`` integer class ids, ``-1`` = ignore.
    confidence : torch.Tensor, optional
        ``(B, H, W)`` float pseudo-label confidences.
    generator : torch.Generator, optional
        Source of randomness (on any device).
    max_rotation_deg : float
        Rotation angle drawn from ``U(-max, max)`` degrees.
    scale_range : (float, float)
        Zoom factor drawn uniformly from this range.
    p_flip, p_rot90 : float
        Probability of a horizontal flip and of a rotation by 90, 180 or 270°.

    Returns
    -------
    tuple
        New ``(images, targets, confidence)``; ``None`` where not given.
    """
    _check_images(images)
    _check_maps(images, targets, "targets")
    _check_maps(images, confidence, "confidence")
    b, _, h, w = images.shape
    theta = _random_affine(b, h, w, generator, images.device, max_rotation_deg, scale_range, p_flip, p_rot90)
    grid = F.affine_grid(theta.to(images.dtype), [b, 1, h, w], align_corners=False)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    # grid_sample pads with zeros: shift so that zero is the sample minimum.
    out_images = F.grid_sample(images - low, grid, mode="bilinear", align_corners=False) + low
    out_targets = out_confidence = None
    if targets is not None:
        # Shift by one so the zero padding becomes -1 (ignore) after shifting back.
        shifted = (targets + 1).unsqueeze(1).to(grid.dtype)
        sampled = F.grid_sample(shifted, grid, mode="nearest", align_corners=False)
        out_targets = sampled.squeeze(1).round().to(targets.dtype) - 1
    if confidence is not None:
        sampled = F.grid_sample(confidence.unsqueeze(1).to(grid.dtype), grid, mode="bilinear", align_corners=False)
        out_confidence = sampled.squeeze(1).to(confidence.dtype)
    return out_images, out_targets, out_confidence


def _random_affine(
    b: int,
    h: int,
    w: int,
    generator: torch.Generator | None,
    device: torch.device,
    max_rotation_deg: float,
    scale_range: tuple[float, float],
    p_flip: float,
    p_rot90: float,
) -> torch.Tensor:
    """``(B, 2, 3)`` output→input maps in ``affine_grid``'s normalised coordinates."""
    cpu = torch.device("cpu")
    flip = torch.where(_bernoulli(b, p_flip, generator, cpu), -1.0, 1.0).double()
    quarter = (_uniform(b, 1.0, 4.0, generator, cpu).floor() * _bernoulli(b, p_rot90, generator, cpu)).long()
    angle = torch.deg2rad(_uniform(b, -max_rotation_deg, max_rotation_deg, generator, cpu).double())
    scale = _uniform(b, scale_range[0], scale_range[1], generator, cpu).double()
    # Exact cos/sin of multiples of 90° keep flips and rot90 exact on the pixel grid.
    cos90 = torch.tensor([1.0, 0.0, -1.0, 0.0], dtype=torch.float64)[quarter]
    sin90 = torch.tensor([0.0, 1.0, 0.0, -1.0], dtype=torch.float64)[quarter]
    rot90 = torch.stack([torch.stack([cos90, -sin90], -1), torch.stack([sin90, cos90], -1)], -2)
    small = torch.stack([torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2)
    mirror = torch.diag_embed(torch.stack([flip, torch.ones_like(flip)], -1))
    matrix = mirror @ rot90 @ small / scale.view(b, 1, 1)
    # Work in centred pixel units so rotations are rigid for any aspect ratio.
    to_pixels = torch.diag(torch.tensor([w / 2.0, h / 2.0], dtype=torch.float64))
    matrix = torch.linalg.inv(to_pixels) @ matrix @ to_pixels
    theta = torch.cat([matrix, torch.zeros(b, 2, 1, dtype=torch.float64)], dim=2)
    return theta.to(device=device, dtype=torch.float32)


def strong_photometric(
    images: torch.Tensor,
    generator: torch.Generator | None = None,
    *,
    jitter: float = 0.2,
    blur_sigma: tuple[float, float] = (0.15, 1.15),
    p: float = 0.5,
    noise_sigma: float = 0.0,
) -> torch.Tensor:
    """Intensity jitter, Gaussian blur and Gaussian noise of grey-value slices (image only).

    The reference code uses torchvision's colour jitter on RGB images. Our
    inputs are single-channel z-scored intensities (2.5D channels are
    neighbouring slices and get the same transform), where hue and saturation
    mean nothing, so "jitter ``j``" is, per sample with probability ``p``:
    a gamma ``U(1-j, 1+j)`` on the min–max-rescaled intensities, a contrast
    factor ``U(1-j, 1+j)`` about the sample mean and a brightness shift of
    ``U(-j, j)`` standard deviations. Independently with probability ``p``,
    a Gaussian blur with ``sigma ~ U(*blur_sigma)`` pixels (separable
    convolution, per-sample sigma). Then, with ``noise_sigma > 0`` and
    independently with probability ``p``, additive Gaussian noise of standard
    deviation ``U(0, noise_sigma)`` (z-score units): scanners differ in noise
    far more than the few painted slices of one volume show.

    Use ``jitter=0.2`` for the pre-training student view and ``jitter=0.25``
    (the 0.75–1.25 range) for stage-iii unlabeled images (docs/method.md, "Augmentation").

    Returns
    -------
    torch.Tensor
        A new tensor with the shape and dtype of ``images``.
    """
    _check_images(images)
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}.")
    if noise_sigma < 0.0:
        raise ValueError(f"noise_sigma must be >= 0, got {noise_sigma}.")
    b = images.shape[0]
    out = _jitter_intensity(images, jitter, _bernoulli(b, p, generator, images.device), generator)
    sigma = _uniform(b, blur_sigma[0], blur_sigma[1], generator, images.device)
    sigma = torch.where(_bernoulli(b, p, generator, images.device), sigma, torch.zeros_like(sigma))
    out = _gaussian_blur(out, sigma, max(blur_sigma))
    if noise_sigma > 0.0:  # no draws when off: runs without noise keep their random streams
        out = _add_noise(out, noise_sigma, _bernoulli(b, p, generator, images.device), generator)
    return out


def _add_noise(
    images: torch.Tensor, max_sigma: float, apply: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    b = images.shape[0]
    sigma = _uniform(b, 0.0, max_sigma, generator, images.device) * apply
    where = _drawing_device(generator, images.device)
    noise = torch.randn(images.shape, generator=generator, device=where, dtype=torch.float32).to(images.device)
    return images + (sigma.view(b, 1, 1, 1) * noise).to(images.dtype)


def _jitter_intensity(
    images: torch.Tensor, jitter: float, apply: torch.Tensor, generator: torch.Generator | None
) -> torch.Tensor:
    b, device = images.shape[0], images.device
    gamma = _uniform(b, 1.0 - jitter, 1.0 + jitter, generator, device).view(b, 1, 1, 1)
    contrast = _uniform(b, 1.0 - jitter, 1.0 + jitter, generator, device).view(b, 1, 1, 1)
    shift = _uniform(b, -jitter, jitter, generator, device).view(b, 1, 1, 1)
    low = images.amin(dim=(1, 2, 3), keepdim=True)
    span = (images.amax(dim=(1, 2, 3), keepdim=True) - low).clamp_min(1e-6)
    out = ((images - low) / span).clamp(0.0, 1.0) ** gamma * span + low
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    std = out.std(dim=(1, 2, 3), keepdim=True)
    out = (out - mean) * contrast + mean + shift * std
    return torch.where(apply.view(b, 1, 1, 1), out.to(images.dtype), images)


def _gaussian_blur(images: torch.Tensor, sigma: torch.Tensor, max_sigma: float) -> torch.Tensor:
    """Separable Gaussian blur with one sigma per sample; sigma 0 = identity."""
    b, c, h, w = images.shape
    radius = max(1, math.ceil(3.0 * max_sigma))
    offsets = torch.arange(-radius, radius + 1, device=images.device, dtype=torch.float32)
    safe = sigma.clamp_min(1e-3).view(b, 1).float()
    kernel = torch.exp(-0.5 * (offsets.view(1, -1) / safe) ** 2)
    kernel = kernel / kernel.sum(dim=1, keepdim=True)
    # A zero sigma gives the delta kernel numerically, so unblurred samples pass unchanged.
    kernel = kernel.to(images.dtype).repeat_interleave(c, dim=0)
    flat = images.reshape(1, b * c, h, w)
    flat = F.pad(flat, (radius, radius, radius, radius), mode="replicate")
    flat = F.conv2d(flat, kernel.view(b * c, 1, 1, -1), groups=b * c)
    flat = F.conv2d(flat, kernel.view(b * c, 1, -1, 1), groups=b * c)
    return flat.view(b, c, h, w)


def cutmix(
    images: torch.Tensor,
    labels: torch.Tensor | None,
    confidence: torch.Tensor | None,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """CutMix of pseudo-labeled images: one half-area box per image.

    Image ``i`` receives, inside a random box of about half its area
    (sides ``H/√2 × W/√2``, fully inside the image), the pixels of image
    ``(i + 1) mod B``; the same box is pasted into the pseudo-labels and the
    confidences, so all three stay consistent (docs/method.md, "Augmentation"). With
    ``B = 1`` the image is mixed with itself (no change).

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, H, W)`` float.
    labels, confidence : torch.Tensor or None
        ``(B, H, W)`` pseudo-labels and their confidences.
    generator : torch.Generator, optional
        Source of randomness for the box positions.

    Returns
    -------
    tuple
        New ``(images, labels, confidence)`` tensors; inputs are not modified.
    """
    _check_images(images)
    _check_maps(images, labels, "labels")
    _check_maps(images, confidence, "confidence")
    box = cutmix_box(images.shape[0], images.shape[-2:], generator, images.device)
    out = [torch.where(box.unsqueeze(1), images.roll(-1, dims=0), images)]
    for maps in (labels, confidence):
        out.append(None if maps is None else torch.where(box, maps.roll(-1, dims=0), maps))
    return out[0], out[1], out[2]


def cutmix_box(
    batch: int,
    size: Sequence[int],
    generator: torch.Generator | None = None,
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Boolean masks ``(B, H, W)``, each a random box of about half the area."""
    h, w = (int(n) for n in size)
    bh, bw = max(1, round(h / math.sqrt(2.0))), max(1, round(w / math.sqrt(2.0)))
    device = torch.device(device)
    top = (_uniform(batch, 0.0, 1.0, generator, device) * (h - bh + 1)).floor().long().clamp_max(h - bh)
    left = (_uniform(batch, 0.0, 1.0, generator, device) * (w - bw + 1)).floor().long().clamp_max(w - bw)
    rows = torch.arange(h, device=device).view(1, h, 1)
    cols = torch.arange(w, device=device).view(1, 1, w)
    top, left = top.view(batch, 1, 1), left.view(batch, 1, 1)
    return (rows >= top) & (rows < top + bh) & (cols >= left) & (cols < left + bw)

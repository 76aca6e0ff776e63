"""Training data: normalisation, slice pools, crops, augmentation and CutMix.

Sampling (:class:`SlicePool`) is plain numpy on the CPU and returns CPU
tensors; the trainer moves batches to its device. The augmentations work on
batched torch tensors on any device and draw their randomness from an
explicit ``torch.Generator`` so runs are reproducible (ACTION_METHOD.md §3, §6).

Two defects of the reference code are avoided here (ACTION_METHOD.md §5):
geometric transforms are always applied jointly to images, labels and
confidences (labels with nearest interpolation), and no function modifies its
input tensors in place.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .annotations import IGNORE_INDEX, SparseAnnotation

__all__ = [
    "SlicePool",
    "cutmix",
    "cutmix_box",
    "normalize_volume",
    "pad_value",
    "random_geometric",
    "strong_photometric",
    "weak_view",
]


# ----------------------------------------------------------------- normalise
def normalize_volume(volume: np.ndarray, clip: tuple[float, float] | None = (0.5, 99.5)) -> np.ndarray:
    """Clip a volume to intensity percentiles, then z-score it.

    Parameters
    ----------
    volume : np.ndarray
        Image intensities, any real dtype. Not modified.
    clip : (float, float) or None
        Lower and upper percentiles; ``None`` skips clipping.

    Returns
    -------
    np.ndarray
        New float32 array, zero mean and unit standard deviation (a constant
        volume becomes all zeros).

    Raises
    ------
    ValueError
        If the volume holds NaN or infinite values, is empty, or ``clip`` is
        not an increasing pair within [0, 100].
    """
    volume = np.asarray(volume)
    if volume.size == 0:
        raise ValueError("Cannot normalise an empty volume.")
    if volume.dtype.kind not in "biuf":
        raise ValueError(f"Volume must be real-valued, got dtype {volume.dtype}.")
    _check_finite(volume)
    out = volume.astype(np.float32, copy=True)
    if clip is not None:
        low, high = _check_clip(clip)
        lo, hi = np.percentile(out, [low, high])
        np.clip(out, lo, hi, out=out)
    mean = float(out.mean(dtype=np.float64))
    std = float(out.std(dtype=np.float64))
    # Relative floor: a constant volume has std ~ rounding noise of its mean,
    # dividing by that noise would turn a flat image into random values.
    std = max(std, 1e-6 * max(abs(mean), 1.0))
    out -= np.float32(mean)
    out /= np.float32(std)
    return out


def _check_finite(volume: np.ndarray) -> None:
    if volume.dtype.kind != "f":
        return
    n_nan = int(np.count_nonzero(np.isnan(volume)))
    n_inf = int(np.count_nonzero(np.isinf(volume)))
    if n_nan or n_inf:
        raise ValueError(
            f"Volume contains {n_nan} NaN and {n_inf} infinite voxels; fill or mask them before training."
        )


def _check_clip(clip: tuple[float, float]) -> tuple[float, float]:
    low, high = (float(c) for c in clip)
    if not 0.0 <= low < high <= 100.0:
        raise ValueError(f"clip must be increasing percentiles within [0, 100], got {clip}.")
    return low, high


def pad_value(volume: np.ndarray) -> float:
    """Intensity used to pad crops of a normalised volume: its minimum.

    Outside the field of view there is usually air or empty background, the
    darkest intensity; padding with the z-score mean (0) would instead draw an
    artificial mid-grey frame. Use the same value when padding for prediction.
    """
    return float(np.min(volume))


# ---------------------------------------------------------------- slice pool
class SlicePool:
    """Labeled and unlabeled 2D(.5) slices of several volumes, with samplers.

    Parameters
    ----------
    volumes : sequence of np.ndarray
        Normalised 3D volumes (see :func:`normalize_volume`), float32. They are
        kept as views with the slicing axis moved first; never copied whole.
    annotation : SparseAnnotation
        Which slices are labeled, their targets and the slicing axis.
    context : int
        2.5D context: slices ``s - context .. s + context`` become the input
        channels (``C = 2 * context + 1``); beyond the volume the edge slice is
        repeated.

    Attributes
    ----------
    labeled : list of (int, int)
        ``(volume_index, slice_index)`` of every labeled slice.
    unlabeled : list of (int, int)
        ``(volume_index, slice_index)`` of every unlabeled slice.
    """

    def __init__(self, volumes: Sequence[np.ndarray], annotation: SparseAnnotation, context: int = 0) -> None:
        if int(context) < 0:
            raise ValueError(f"context must be >= 0, got {context}.")
        self.context = int(context)
        self._volumes = [_as_float32_volume(v, i) for i, v in enumerate(volumes)]
        self._pad_values = [pad_value(v) for v in self._volumes]
        self.update_annotation(annotation)

    @property
    def annotation(self) -> SparseAnnotation:
        """The annotation the pools were built from."""
        return self._annotation

    @property
    def in_channels(self) -> int:
        """Number of input channels, ``2 * context + 1``."""
        return 2 * self.context + 1

    def update_annotation(self, annotation: SparseAnnotation) -> None:
        """Rebuild the pools from a new annotation; the volumes are not touched."""
        shapes = tuple(v.shape for v in self._volumes)
        if tuple(annotation.shapes) != shapes:
            raise ValueError(
                f"Annotation shapes {annotation.shapes} do not match the volume shapes {shapes}."
            )
        self._annotation = annotation
        self._views = [np.moveaxis(v, annotation.axis, 0) for v in self._volumes]
        n = annotation.num_volumes
        self.labeled = [(v, s) for v in range(n) for s in annotation.labeled_slices(v)]
        self.unlabeled = [(v, s) for v in range(n) for s in annotation.unlabeled_slices(v)]
        self._foreground = _index_foreground(annotation, self.labeled)
        self._supervised = _index_supervised(annotation, self.labeled)

    def image(self, volume_index: int, slice_index: int) -> np.ndarray:
        """Input channels of one whole slice, ``(C, H, W)`` float32 (a copy)."""
        view = self._views[volume_index]
        if not 0 <= slice_index < view.shape[0]:
            raise ValueError(f"Slice {slice_index} out of range for volume {volume_index}.")
        return np.ascontiguousarray(view[self._channel_indices(volume_index, slice_index)])

    def target(self, volume_index: int, slice_index: int) -> np.ndarray:
        """Class-id target ``(H, W)`` int64 of a labeled slice (read-only)."""
        return self._annotation.target(volume_index, slice_index)

    def _channel_indices(self, v: int, s: int) -> np.ndarray:
        offsets = np.arange(-self.context, self.context + 1)
        return np.clip(s + offsets, 0, self._views[v].shape[0] - 1)

    # ------------------------------------------------------------- sampling
    def sample_labeled(
        self, batch: int, crop: int, rng: np.random.Generator, foreground_prob: float = 0.0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Random crops of labeled slices.

        With probability ``foreground_prob`` a crop is centred (with jitter of
        up to a quarter crop) on a foreground pixel, chosen class-balanced: a
        foreground class present in the labeled slices uniformly first, then a
        slice containing it, then one of its pixels; small structures are
        otherwise rarely seen. Otherwise a labeled slice is chosen uniformly
        and cropped at random (scribble mode: around a random painted pixel,
        so that every crop holds supervision). Slices smaller than ``crop``
        are padded (image: :func:`pad_value`, target: ``-1``) at a random
        offset.

        Returns
        -------
        images : torch.Tensor
            ``(batch, C, crop, crop)`` float32, CPU.
        targets : torch.Tensor
            ``(batch, crop, crop)`` int64, CPU; ``-1`` = ignore.
        """
        _check_sampling(batch, crop)
        if not 0.0 <= foreground_prob <= 1.0:
            raise ValueError(f"foreground_prob must be in [0, 1], got {foreground_prob}.")
        if not self.labeled:
            raise ValueError("No labeled slices to sample from: paint at least one slice.")
        images, targets = [], []
        for _ in range(batch):
            if self._foreground and rng.random() < foreground_prob:
                v, s, y0, x0 = self._foreground_window(crop, rng)
            else:
                v, s, y0, x0 = self._labeled_window(crop, rng)
            images.append(self._crop_image(v, s, y0, x0, crop))
            targets.append(_crop_2d(self.target(v, s), y0, x0, crop, IGNORE_INDEX))
        return torch.from_numpy(np.stack(images)), torch.from_numpy(np.stack(targets))

    def sample_unlabeled(self, batch: int, crop: int, rng: np.random.Generator) -> torch.Tensor:
        """Random crops of unlabeled slices, ``(batch, C, crop, crop)`` float32, CPU."""
        _check_sampling(batch, crop)
        if not self.unlabeled:
            raise ValueError("No unlabeled slices to sample from.")
        images = []
        for _ in range(batch):
            v, s = self.unlabeled[rng.integers(len(self.unlabeled))]
            y0, x0 = self._random_window(v, crop, rng)
            images.append(self._crop_image(v, s, y0, x0, crop))
        return torch.from_numpy(np.stack(images))

    def _random_window(self, v: int, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Top-left corner of a uniform random crop (negative = padded)."""
        _, h, w = self._views[v].shape
        return tuple(int(rng.integers(min(0, n - crop), max(0, n - crop) + 1)) for n in (h, w))

    def _foreground_window(self, crop: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Volume, slice and corner of a crop containing a class-balanced foreground pixel."""
        classes = sorted(self._foreground)
        entries = self._foreground[classes[rng.integers(len(classes))]]
        k, flat = entries[rng.integers(len(entries))]
        v, s = self.labeled[k]
        return (v, s, *self._window_around(v, int(flat[rng.integers(flat.size)]), crop, rng))

    def _labeled_window(self, crop: int, rng: np.random.Generator) -> tuple[int, int, int, int]:
        """Volume, slice and corner of a crop of a uniformly chosen labeled slice."""
        k = int(rng.integers(len(self.labeled)))
        v, s = self.labeled[k]
        if self._supervised is None:
            return (v, s, *self._random_window(v, crop, rng))
        # Scribbles may cover a small part of the slice: a uniform crop could
        # hold no supervised pixel at all (an empty, NaN-prone loss), so centre
        # on a random painted pixel instead.
        flat = self._supervised[k]
        return (v, s, *self._window_around(v, int(flat[rng.integers(flat.size)]), crop, rng))

    def _window_around(self, v: int, flat_pixel: int, crop: int, rng: np.random.Generator) -> tuple[int, int]:
        """Corner of a crop containing ``flat_pixel``, jittered by up to a quarter crop."""
        _, h, w = self._views[v].shape
        corner = []
        for p, n in zip(divmod(flat_pixel, w), (h, w), strict=True):
            start = p + int(rng.integers(-(crop // 4), crop // 4 + 1)) - crop // 2
            # Clamping to the valid range keeps the pixel inside the crop
            # (jitter <= crop/4) while avoiding needless padding at the border.
            corner.append(int(np.clip(start, min(0, n - crop), max(0, n - crop))))
        return corner[0], corner[1]

    def _crop_image(self, v: int, s: int, y0: int, x0: int, crop: int) -> np.ndarray:
        view = self._views[v]
        channels = self._channel_indices(v, s)
        out = np.full((channels.size, crop, crop), self._pad_values[v], dtype=np.float32)
        src, dst = _overlap(view.shape[1:], y0, x0, crop)
        # Basic slicing of the moved-axis view first, so only the crop is copied.
        for c, index in enumerate(channels):
            out[(c, *dst)] = view[index][src]
        return out


def _as_float32_volume(volume: np.ndarray, index: int) -> np.ndarray:
    array = np.asarray(volume)
    if array.ndim != 3:
        raise ValueError(f"Volume {index} must be 3D, got shape {array.shape}.")
    # No copy for float32 input (the normal case after normalize_volume).
    return array.astype(np.float32, copy=False)


def _check_sampling(batch: int, crop: int) -> None:
    if batch < 1:
        raise ValueError(f"batch must be >= 1, got {batch}.")
    if crop < 1:
        raise ValueError(f"crop must be >= 1, got {crop}.")


def _index_foreground(
    annotation: SparseAnnotation, labeled: list[tuple[int, int]]
) -> dict[int, list[tuple[int, np.ndarray]]]:
    """Per foreground class: (index into ``labeled``, flat pixel indices) of each slice holding it."""
    index: dict[int, list[tuple[int, np.ndarray]]] = {}
    for k, (v, s) in enumerate(labeled):
        flat_target = annotation.target(v, s).ravel()
        for cls in np.unique(flat_target[flat_target > 0]):
            pixels = np.flatnonzero(flat_target == cls).astype(np.int32)
            index.setdefault(int(cls), []).append((k, pixels))
    return index


def _index_supervised(
    annotation: SparseAnnotation, labeled: list[tuple[int, int]]
) -> list[np.ndarray] | None:
    """Scribble mode: flat indices of the supervised pixels of each labeled slice; else ``None``."""
    if annotation.mode != "scribble":
        return None
    return [np.flatnonzero(annotation.target(v, s).ravel() >= 0).astype(np.int32) for v, s in labeled]


def _overlap(
    shape: tuple[int, int], y0: int, x0: int, crop: int
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Source slices in the image and destination slices in the crop."""
    src, dst = [], []
    for start, n in zip((y0, x0), shape, strict=True):
        lo, hi = max(start, 0), min(start + crop, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    return tuple(src), tuple(dst)


def _crop_2d(array: np.ndarray, y0: int, x0: int, crop: int, fill: int) -> np.ndarray:
    out = np.full((crop, crop), fill, dtype=array.dtype)
    src, dst = _overlap(array.shape, y0, x0, crop)
    out[dst] = array[src]
    return out


# ---------------------------------------------------------- augmentation
def _uniform(
    n: int, low: float, high: float, generator: torch.Generator | None, device: torch.device
) -> torch.Tensor:
    """``n`` uniform samples drawn on the generator's device, then moved to ``device``."""
    where = generator.device if generator is not None else device
    return (torch.rand(n, generator=generator, device=where) * (high - low) + low).to(device)


def _bernoulli(n: int, p: float, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    return _uniform(n, 0.0, 1.0, generator, device) < p


def _check_images(images: torch.Tensor) -> None:
    if images.ndim != 4 or not images.is_floating_point():
        raise ValueError(
            f"images must be a float tensor (B, C, H, W), got {tuple(images.shape)} {images.dtype}."
        )


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
    describe (fixing defects 5 and 6 of ACTION_METHOD.md §5). Flips and
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
        sampled = F.grid_sample(
            confidence.unsqueeze(1).to(grid.dtype), grid, mode="bilinear", align_corners=False
        )
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
    small = torch.stack(
        [torch.stack([angle.cos(), -angle.sin()], -1), torch.stack([angle.sin(), angle.cos()], -1)], -2
    )
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
) -> torch.Tensor:
    """Intensity jitter and Gaussian blur of grey-value slices (image only).

    The reference code uses torchvision's colour jitter on RGB images. Our
    inputs are single-channel z-scored intensities (2.5D channels are
    neighbouring slices and get the same transform), where hue and saturation
    mean nothing, so "jitter ``j``" is, per sample with probability ``p``:
    a gamma ``U(1-j, 1+j)`` on the min–max-rescaled intensities, a contrast
    factor ``U(1-j, 1+j)`` about the sample mean and a brightness shift of
    ``U(-j, j)`` standard deviations. Independently with probability ``p``,
    a Gaussian blur with ``sigma ~ U(*blur_sigma)`` pixels (separable
    convolution, per-sample sigma).

    Use ``jitter=0.2`` for the pre-training student view and ``jitter=0.25``
    (the 0.75–1.25 range) for stage-iii unlabeled images (ACTION_METHOD.md §2-3).

    Returns
    -------
    torch.Tensor
        A new tensor with the shape and dtype of ``images``.
    """
    _check_images(images)
    if not 0.0 <= jitter < 1.0:
        raise ValueError(f"jitter must be in [0, 1), got {jitter}.")
    b = images.shape[0]
    out = _jitter_intensity(images, jitter, _bernoulli(b, p, generator, images.device), generator)
    sigma = _uniform(b, blur_sigma[0], blur_sigma[1], generator, images.device)
    sigma = torch.where(_bernoulli(b, p, generator, images.device), sigma, torch.zeros_like(sigma))
    return _gaussian_blur(out, sigma, max(blur_sigma))


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


def weak_view(
    images: torch.Tensor, generator: torch.Generator | None = None, *, p_flip: float = 0.0
) -> torch.Tensor:
    """Teacher's weak view: a copy, optionally horizontally flipped per sample.

    The default is the identity. Local distillation compares windows of the
    teacher's and the student's views position by position, so the two views
    must stay spatially aligned: put geometric augmentation in
    :func:`random_geometric` *before* splitting into views, and set
    ``p_flip > 0`` only when training with global distillation alone.

    Returns
    -------
    torch.Tensor
        A new tensor (never the input itself).
    """
    _check_images(images)
    flip = _bernoulli(images.shape[0], p_flip, generator, images.device).view(-1, 1, 1, 1)
    return torch.where(flip, images.flip(-1), images)


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
    confidences, so all three stay consistent (ACTION_METHOD.md §3). With
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

"""Affine registration of one volume onto another, in millimetres, by mutual information (torch).

Used to carry the painted volumes' labels onto volumes nobody painted
(:mod:`napari_action.data.carried_prior`). Both images keep their own voxel grids and
orientations: points of the *fixed* volume are mapped, through its affine (voxel → world), a
world-space affine transform and the *moving* volume's inverse affine, to places in the moving
volume. The metric is mutual information between the two images' intensities (soft histograms,
Parzen windows), so scanners and contrasts may differ as long as tissues keep their order of
grey. Coarse to fine: each level is the images block-averaged to voxels of about one of
:attr:`RegistrationSettings.levels_mm` millimetres.

Runs on whatever device it is given (a CUDA GPU or the CPU); a pair of brains at 4 and 2 mm takes
a few seconds on one CPU core.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_action.data.normalized_volume import NormalizedVolume

__all__ = [
    "AffineRegistration",
    "ImagePyramid",
    "RegistrationSettings",
    "coarse_image",
    "register_affine",
    "register_pyramids",
]

#: Millimetres per unit of the optimised coordinates: rotations, scalings and shifts of a head-sized
#: object then move points by comparable amounts, so one learning rate suits every parameter.
LENGTH_SCALE_MM = 50.0
#: Voxels kept along each axis of a coarse level at least: fewer leave the metric nothing to compare.
MIN_COARSE_VOXELS = 8


@dataclass(frozen=True)
class RegistrationSettings:
    """Coarse-to-fine levels and the metric's sampling; the defaults suit brains and hearts alike."""

    # On the Colin27 cohort (docs/benchmarks.md) 6 + 3 mm with 100 + 50 iterations of 15,000 points
    # carried the truth as well as 4 + 2 mm with 150 + 80 of 30,000 (Dice 0.834 against 0.830), in half the time.
    # The 12 mm level first: a head scan registered onto a skull-stripped brain, started at 6 mm, fitted the
    # brain's outline to the head's (scaled 1.2x, Dice 0.30); from 12 mm it finds the brain (0.74), at no cost
    # on the cohort (0.826 both). A level no coarser than the next on both images is skipped (a small volume).
    levels_mm: tuple[float, ...] = (12.0, 6.0, 3.0)
    iterations: tuple[int, ...] = (100, 100, 50)
    samples: int = 15_000  # fixed-image points drawn at each iteration
    bins: int = 32
    learning_rate: float = 0.01
    seed: int = 0


@dataclass(frozen=True)
class AffineRegistration:
    """Fixed world → moving world (4 × 4, millimetres) and how well the images agree through it.

    ``similarity`` is the normalised mutual information ``2 I / (H_fixed + H_moving)`` on every
    fixed voxel of the finest level, in [0, 1]: 0 for unrelated images.
    """

    matrix: np.ndarray
    similarity: float

    def fixed_to_moving_voxels(self, fixed_affine: np.ndarray, moving_affine: np.ndarray) -> np.ndarray:
        """The 4 × 4 map from fixed voxel indices to moving voxel indices."""
        return np.linalg.inv(moving_affine) @ self.matrix @ fixed_affine


@dataclass(frozen=True)
class CoarseImage:
    """An image block-averaged to a coarse grid, intensities scaled to [0, 1], with that grid's affine."""

    values: np.ndarray  # float32, the image's own axis order
    affine: np.ndarray  # coarse voxel → world

    @property
    def centre_of_mass(self) -> np.ndarray:
        """World position of the intensity-weighted centre (where the anatomy is, not the field of view)."""
        weights = self.values.astype(np.float64)
        index = np.indices(weights.shape).reshape(3, -1) @ weights.ravel() / max(weights.sum(), 1e-12)
        return (self.affine @ np.append(index, 1.0))[:3]


def coarse_image(volume: NormalizedVolume, affine: np.ndarray, voxel_mm: float) -> CoarseImage:
    """``volume`` block-averaged to voxels of about ``voxel_mm``, read a block of slices at a time.

    A small image keeps at least :data:`MIN_COARSE_VOXELS` voxels along each axis it has that many.
    """
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    factors = [
        max(1, min(int(round(voxel_mm / s)), n // MIN_COARSE_VOXELS))
        for s, n in zip(spacing, volume.shape, strict=True)
    ]
    blocks = []
    for start in range(0, volume.shape[0] - factors[0] + 1, factors[0]):
        block = torch.from_numpy(volume.block(0, start, start + factors[0]))[None, None]
        blocks.append(F.avg_pool3d(block, kernel_size=factors, stride=factors)[0, 0].numpy())
    values = np.concatenate(blocks)
    low, high = np.percentile(values, [1.0, 99.0])
    values = np.clip((values - low) / max(high - low, 1e-6), 0.0, 1.0).astype(np.float32)
    # A coarse voxel's centre is the middle of its block of fine voxels.
    to_fine = np.diag([*map(float, factors), 1.0])
    to_fine[:3, 3] = [(f - 1) / 2.0 for f in factors]
    return CoarseImage(values, affine @ to_fine)


class ImagePyramid:
    """A volume and its affine, with each coarse level made once when first asked for.

    A painted volume registered onto every volume of a cohort is block-averaged once, not once
    per target.
    """

    def __init__(self, volume: NormalizedVolume, affine: np.ndarray):
        self.volume = volume
        self.affine = np.asarray(affine, dtype=np.float64)
        self._levels: dict[float, CoarseImage] = {}

    def level(self, voxel_mm: float) -> CoarseImage:
        """The volume block-averaged to voxels of about ``voxel_mm`` (see :func:`coarse_image`)."""
        key = float(voxel_mm)
        if key not in self._levels:
            self._levels[key] = coarse_image(self.volume, self.affine, key)
        return self._levels[key]


def register_affine(
    fixed: NormalizedVolume,
    fixed_affine: np.ndarray,
    moving: NormalizedVolume,
    moving_affine: np.ndarray,
    settings: RegistrationSettings | None = None,
    device: torch.device | str = "cpu",
) -> AffineRegistration:
    """The affine transform that brings ``moving`` onto ``fixed``, starting from their centres of mass."""
    return register_pyramids(ImagePyramid(fixed, fixed_affine), ImagePyramid(moving, moving_affine), settings, device)


def register_pyramids(
    fixed: ImagePyramid,
    moving: ImagePyramid,
    settings: RegistrationSettings | None = None,
    device: torch.device | str = "cpu",
) -> AffineRegistration:
    """:func:`register_affine` on images whose coarse levels may already be made.

    With three levels or more the schedule is run twice, from its coarsest level and from the next,
    and the result whose images agree better (``similarity``, on the same finest level) is kept.
    Either start alone fails on some pairs: from 6 mm a head scan's outline was fitted to a
    skull-stripped brain's (Dice of the carried truth 0.30 against 0.74 from 12 mm); from 12 mm two of
    the warped Colin27 scans came out 1.2-1.3 times too large (0.23 and 0.02 against 0.86 and 0.81
    from 6 mm), with a similarity of 0.03-0.04 against 0.13. docs/benchmarks.md, "Two starts".
    """
    settings = settings or RegistrationSettings()
    if len(settings.iterations) != len(settings.levels_mm):
        raise ValueError("RegistrationSettings needs one iteration count per level.")
    levels = _distinct_levels(fixed, moving, settings)
    starts = [levels] if len(levels) < 3 else [levels, levels[1:]]
    results = [_register_from(fixed, moving, schedule, settings, device) for schedule in starts]
    return max(results, key=lambda result: result.similarity)


def _register_from(
    fixed: ImagePyramid,
    moving: ImagePyramid,
    levels: list[tuple[float, int]],
    settings: RegistrationSettings,
    device: torch.device | str,
) -> AffineRegistration:
    """Coarse to fine through ``levels`` (millimetres, iterations), started from the centres of mass."""
    generator = torch.Generator().manual_seed(settings.seed)
    transform: _WorldAffine | None = None
    for voxel_mm, iterations in levels:
        pair = _ImagePair(fixed.level(voxel_mm), moving.level(voxel_mm), device)
        if transform is None:
            transform = _WorldAffine.between_centres(pair.fixed.centre_of_mass, pair.moving.centre_of_mass, device)
        _optimise(transform, pair, iterations, settings, generator)
    with torch.no_grad():
        similarity = pair.normalised_mutual_information(transform, None, settings.bins)
    return AffineRegistration(transform.matrix(), float(similarity))


def _distinct_levels(
    fixed: ImagePyramid, moving: ImagePyramid, settings: RegistrationSettings
) -> list[tuple[float, int]]:
    """The settings' levels and iterations, without a level whose grids are those of the next one on both
    images (a small volume cannot be block-averaged that far): its steps would repeat the next level's."""
    pairs = list(zip(settings.levels_mm, settings.iterations, strict=True))
    kept = []
    for (voxel_mm, iterations), (finer_mm, _) in zip(pairs, pairs[1:], strict=False):
        same = all(p.level(voxel_mm).values.shape == p.level(finer_mm).values.shape for p in (fixed, moving))
        if not same:
            kept.append((voxel_mm, iterations))
    return [*kept, pairs[-1]]


class _WorldAffine(torch.nn.Module):
    """``y = c + L ((I + M) (x - c) / L + t)``: the identity when ``M`` and ``t`` are 0."""

    def __init__(self, centre: np.ndarray, shift: np.ndarray, device: torch.device | str):
        super().__init__()
        self.centre = torch.as_tensor(centre, dtype=torch.float32, device=device)
        self.linear = torch.nn.Parameter(torch.zeros(3, 3, device=device))
        self.shift = torch.nn.Parameter(torch.as_tensor(shift / LENGTH_SCALE_MM, dtype=torch.float32, device=device))

    @classmethod
    def between_centres(
        cls, fixed_centre: np.ndarray, moving_centre: np.ndarray, device: torch.device | str
    ) -> _WorldAffine:
        return cls(fixed_centre, moving_centre - fixed_centre, device)

    def forward(self, world: torch.Tensor) -> torch.Tensor:
        """``(N, 3)`` fixed world points → ``(N, 3)`` moving world points."""
        local = (world - self.centre) / LENGTH_SCALE_MM
        moved = local + local @ self.linear.T + self.shift
        return self.centre + LENGTH_SCALE_MM * moved

    def matrix(self) -> np.ndarray:
        linear = (torch.eye(3, device=self.linear.device) + self.linear).detach().cpu().double().numpy()
        centre = self.centre.cpu().double().numpy()
        shift = LENGTH_SCALE_MM * self.shift.detach().cpu().double().numpy()
        out = np.eye(4)
        out[:3, :3] = linear
        out[:3, 3] = centre + shift - linear @ centre
        return out


class _ImagePair:
    """One level's fixed points (world) and the moving image as a grid to sample."""

    def __init__(self, fixed: CoarseImage, moving: CoarseImage, device: torch.device | str):
        self.fixed, self.moving = fixed, moving
        index = np.indices(fixed.values.shape).reshape(3, -1).T.astype(np.float32)
        world = index @ fixed.affine[:3, :3].T.astype(np.float32) + fixed.affine[:3, 3].astype(np.float32)
        self.world = torch.from_numpy(world).to(device)
        self.fixed_values = torch.from_numpy(fixed.values.ravel()).to(device)
        self.grid = torch.from_numpy(moving.values)[None, None].to(device)
        inverse = np.linalg.inv(moving.affine)
        self.to_moving = torch.as_tensor(inverse[:3, :3], dtype=torch.float32, device=device)
        self.to_moving_shift = torch.as_tensor(inverse[:3, 3], dtype=torch.float32, device=device)
        self.size = torch.as_tensor(moving.values.shape, dtype=torch.float32, device=device)

    def moving_values(self, transform: _WorldAffine, points: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """The moving image at the transformed fixed points, and which of them fall inside it."""
        world = self.world if points is None else self.world[points]
        voxel = transform(world) @ self.to_moving.T + self.to_moving_shift
        normalised = 2.0 * voxel / (self.size - 1.0) - 1.0
        inside = (normalised.abs() <= 1.0).all(dim=1)
        # grid_sample reads the last grid coordinate as the first array axis.
        grid = normalised.flip(-1)[None, :, None, None, :]
        sampled = F.grid_sample(self.grid, grid, mode="bilinear", padding_mode="border", align_corners=True)
        return sampled.reshape(-1), inside

    def mutual_information(
        self, transform: _WorldAffine, points: torch.Tensor | None, bins: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Mutual information and the two marginal entropies, from Parzen-window histograms."""
        moving, inside = self.moving_values(transform, points)
        fixed = self.fixed_values if points is None else self.fixed_values[points]
        weight = inside.float()
        fixed_bins, moving_bins = _parzen(fixed, bins) * weight[:, None], _parzen(moving, bins)
        joint = fixed_bins.T @ moving_bins / weight.sum().clamp_min(1.0)
        fixed_p, moving_p = joint.sum(1), joint.sum(0)
        eps = 1e-10
        information = (joint * (torch.log(joint + eps) - torch.log(fixed_p[:, None] * moving_p[None] + eps))).sum()
        return information, _entropy(fixed_p), _entropy(moving_p)

    def normalised_mutual_information(
        self, transform: _WorldAffine, points: torch.Tensor | None, bins: int
    ) -> torch.Tensor:
        information, fixed_h, moving_h = self.mutual_information(transform, points, bins)
        return 2.0 * information / (fixed_h + moving_h).clamp_min(1e-6)


def _parzen(values: torch.Tensor, bins: int) -> torch.Tensor:
    """Soft bin memberships of values in [0, 1]: a Gaussian window one bin wide, each row summing to 1."""
    centres = (torch.arange(bins, device=values.device, dtype=values.dtype) + 0.5) / bins
    weights = torch.exp(-0.5 * ((values[:, None] - centres[None]) * bins) ** 2)
    return weights / weights.sum(1, keepdim=True).clamp_min(1e-12)


def _entropy(p: torch.Tensor) -> torch.Tensor:
    return -(p * torch.log(p + 1e-10)).sum()


def _optimise(
    transform: _WorldAffine,
    pair: _ImagePair,
    iterations: int,
    settings: RegistrationSettings,
    generator: torch.Generator,
) -> None:
    optimiser = torch.optim.Adam(transform.parameters(), lr=settings.learning_rate)
    count = pair.world.shape[0]
    for _ in range(iterations):
        # A fresh random sample each iteration (as Mattes' metric does): cheap and hard to overfit.
        points = torch.randint(count, (min(settings.samples, count),), generator=generator).to(pair.world.device)
        information, _, _ = pair.mutual_information(transform, points, settings.bins)
        optimiser.zero_grad()
        (-information).backward()
        optimiser.step()

"""Voxel geometry in one place: grids, spacing and the world direction of each array axis.

Two questions, one module:

* whether two volumes put their voxels at the same places, and how to say where they differ
  (:func:`same_voxel_grid`, :func:`grid_difference`). One rule for every front end:
  ``napari-action train`` refuses labels painted on another grid than their image, ``evaluate`` a
  prediction on another grid than the truth, and the widget a Labels layer placed elsewhere than
  its image.
* how a volume is sliced (:class:`VoxelGeometry`: the spacing of each array axis and the world axis
  it points along), and whether a model trained on some volumes sees another volume as it saw them
  (:func:`geometry_warnings`). Prediction resizes slices of another in-plane spacing to the pixel
  size the network was trained at (:mod:`napari_action.data.pixel_size`), which holds only so
  far; another world direction of the slicing axis shows the network another view of the anatomy,
  and slices stored turned or mirrored (another voxel order in-plane) show it the anatomy the other
  way round.
  Also the volume of one voxel in mL (:func:`voxel_volume_ml`), for structure volumes.

Each takes voxel-to-world matrices (4 × 4, millimetres): a NIfTI file's, or a napari layer's.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence

import nibabel as nib
import numpy as np

__all__ = [
    "GRID_TOLERANCE_MM",
    "GRID_TOLERANCE_VOXELS",
    "PLANE_WORLD_AXES",
    "RESIZE_WARNING_FACTOR",
    "SPACING_TOLERANCE",
    "VoxelGeometry",
    "describe_grid",
    "geometry_warnings",
    "grid_difference",
    "same_voxel_grid",
    "turned_message",
    "voxel_volume_ml",
]

# Tools that re-save labels may round the image's affine (NIfTI-1 stores it as float32, napari keeps
# float32 too); a grid that differs by more than this is another grid.
GRID_TOLERANCE_MM = 1e-3
# The same, in voxels: a microscope's voxels (micrometres) are smaller than GRID_TOLERANCE_MM, so a label
# map whole voxels off its image would pass a tolerance in mm alone.
GRID_TOLERANCE_VOXELS = 1e-2
# float32 keeps 24 bits: an origin far from 0 cannot be stored closer than this fraction of itself.
_FLOAT32_ROUNDING = 4 * float(np.finfo(np.float32).eps)
DIRECTION_TOLERANCE = 1e-4
#: Relative in-plane spacing difference above which prediction gets a warning (a model that does not
#: know its training pixel size: prediction sees such a volume's voxels as they are).
SPACING_TOLERANCE = 0.2
#: A model that knows its training pixel size resizes other slices to it; beyond this factor either way
#: the resized slices hold too little detail (or too much blur) to trust, and prediction gets a warning.
RESIZE_WARNING_FACTOR = 2.0
#: World axis (RAS: 0 = left-right, 1 = posterior-anterior, 2 = inferior-superior) along which
#: each plane's slices are stacked.
PLANE_WORLD_AXES = {"sagittal": 0, "coronal": 1, "axial": 2}
# The world axes as messages name them, in RAS order.
_WORLD_AXES = ("x (sagittal slices)", "y (coronal slices)", "z (axial slices)")
# Per world axis, the letter of its positive and of its negative direction.
_AXIS_LETTERS = ("RL", "AP", "SI")


def _spacing_and_directions(affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Voxel size along each array axis (mm) and the unit world direction of each axis."""
    linear = np.asarray(affine, dtype=np.float64)[:3, :3]
    spacing = np.linalg.norm(linear, axis=0)
    # A degenerate axis (size 0) must not divide by zero; its direction is then 0, which compares as unlike.
    return spacing, linear / np.maximum(spacing, np.finfo(np.float64).tiny)


def voxel_volume_ml(affine: np.ndarray) -> float:
    """Volume of one voxel in millilitres: the voxel-to-world matrix's determinant (mm³) over 1000.

    The determinant, not the product of the spacings, so that sheared (oblique) grids count right;
    its sign only says whether the axes are mirrored.
    """
    return float(abs(np.linalg.det(np.asarray(affine, dtype=np.float64)[:3, :3]))) / 1000.0


def same_voxel_grid(affine: np.ndarray, other: np.ndarray) -> bool:
    """Whether two voxel-to-world matrices put every voxel at the same place (within rounding).

    Parameters
    ----------
    affine, other : numpy.ndarray
        4 × 4 voxel-to-world matrices (a NIfTI file's, or a napari layer's data-to-world transform).
    """
    spacing, directions = _spacing_and_directions(affine)
    other_spacing, other_directions = _spacing_and_directions(other)
    origin, other_origin = np.asarray(affine, np.float64)[:3, 3], np.asarray(other, np.float64)[:3, 3]
    tolerance = _grid_tolerance(np.minimum(spacing, other_spacing).min(), np.abs([origin, other_origin]).max())
    return bool(
        np.abs(spacing - other_spacing).max() <= tolerance
        and np.abs(origin - other_origin).max() <= tolerance
        and np.abs(directions - other_directions).max() <= DIRECTION_TOLERANCE
    )


def _grid_tolerance(smallest_voxel: float, farthest_origin: float) -> float:
    """How far (mm) two grids may differ and still be one grid.

    A hundredth of the smallest voxel, at most :data:`GRID_TOLERANCE_MM`; but never less than float32's
    rounding of an origin that far from 0 (a microscope's stage position beside micrometre voxels).
    """
    within_voxel = min(GRID_TOLERANCE_MM, GRID_TOLERANCE_VOXELS * smallest_voxel)
    return max(within_voxel, _FLOAT32_ROUNDING * farthest_origin)


def describe_grid(affine: np.ndarray) -> str:
    """E.g. ``voxels 0.8 x 0.8 x 3 mm, origin (-10, 5, 2.5) mm, axes RAS``."""
    spacing, _ = _spacing_and_directions(affine)
    sizes = " x ".join(f"{s:.6g}" for s in spacing)
    origin = ", ".join(f"{x:.6g}" for x in np.asarray(affine)[:3, 3])
    return f"voxels {sizes} mm, origin ({origin}) mm, axes {''.join(nib.aff2axcodes(np.asarray(affine)))}"


def grid_difference(affine: np.ndarray, other: np.ndarray) -> str:
    """``"<grid> against <grid>"``, naming the rotation when the rounded descriptions read the same."""
    first, second = describe_grid(affine), describe_grid(other)
    # Oblique axes can differ while the rounded description reads the same.
    rotated = " (the axes are rotated differently)" if first == second else ""
    return f"{first} against {second}{rotated}"


@dataclasses.dataclass(frozen=True)
class VoxelGeometry:
    """Voxel spacing along each array axis, the world axis each array axis points along, and which way.

    ``signs`` (+1 or -1 per array axis: along or against its world axis, RAS) is None for the geometry
    of a model saved before it was kept.
    """

    spacing: tuple[float, float, float]
    directions: tuple[int, int, int]
    signs: tuple[int, int, int] | None = None

    @classmethod
    def from_matrix(cls, matrix: np.ndarray) -> VoxelGeometry:
        """From a 4x4 (or 3x3) voxel-to-world matrix: column norms and dominant rows."""
        spacing, directions = _spacing_and_directions(matrix)
        # The unit direction of a column has its largest component where the column itself has it.
        dominant = np.abs(directions).argmax(axis=0)
        signs = tuple(-1 if directions[row, col] < 0 else 1 for col, row in enumerate(dominant))
        return cls(tuple(float(s) for s in spacing), tuple(int(d) for d in dominant), signs)

    def to_dict(self) -> dict:
        """Plain lists, for a checkpoint's ``extra``."""
        data = {"spacing": list(self.spacing), "directions": list(self.directions)}
        return data if self.signs is None else {**data, "signs": list(self.signs)}

    @classmethod
    def from_dict(cls, data: dict) -> VoxelGeometry:
        """Inverse of :meth:`to_dict`."""
        signs = data.get("signs")
        return cls(
            tuple(float(s) for s in data["spacing"]),
            tuple(int(d) for d in data["directions"]),
            None if signs is None else tuple(int(x) for x in signs),
        )

    def voxel_order(self) -> str:
        """The world direction of each array axis as letters, e.g. ``RAS`` or ``LPS`` ("" without signs)."""
        if self.signs is None:
            return ""
        return "".join(
            _AXIS_LETTERS[d][0 if sign > 0 else 1] for d, sign in zip(self.directions, self.signs, strict=True)
        )

    def same_slices(self, other: VoxelGeometry, axis: int) -> bool | None:
        """Whether slices along ``axis`` show the anatomy the same way round in both (None: unknown)."""
        if self.signs is None or other.signs is None:
            return None
        in_plane = [a for a in range(3) if a != axis]
        return all((self.directions[a], self.signs[a]) == (other.directions[a], other.signs[a]) for a in in_plane)

    def axis_for_plane(self, plane: str) -> int:
        """Array axis to slice along to see ``plane`` ("axial", "coronal" or "sagittal").

        Axial slices are stacked along the world's inferior-superior axis,
        coronal ones along posterior-anterior, sagittal ones along left-right.

        Raises
        ------
        ValueError
            For another plane name, or when no array axis points along that world axis
            (two axes of an oblique volume point along the same one).
        """
        if plane not in PLANE_WORLD_AXES:
            raise ValueError(f"plane must be one of {sorted(PLANE_WORLD_AXES)}, got {plane!r}.")
        world = PLANE_WORLD_AXES[plane]
        if world not in self.directions:
            raise ValueError(f"No array axis of this volume points along the {plane} slicing direction.")
        return self.directions.index(world)

    def in_plane(self, axis: int) -> tuple[float, float]:
        """Spacing of the two axes of a slice taken along ``axis``."""
        return tuple(s for i, s in enumerate(self.spacing) if i != axis)


def geometry_warnings(
    references: Sequence[VoxelGeometry],
    targets: Iterable[tuple[str, VoxelGeometry]],
    axis: int,
    tolerance: float = SPACING_TOLERANCE,
    pixel_mm: Sequence[float] | None = None,
) -> list[str]:
    """Messages for volumes sliced differently from every training volume.

    A volume gets a message when its slicing axis points along another world axis than in every
    reference, and about its in-plane spacing: with the model's training ``pixel_mm`` (prediction
    resizes slices to it) when it is more than :data:`RESIZE_WARNING_FACTOR` times larger or smaller;
    without (a model saved before it was kept) when it differs by more than ``tolerance`` (relative)
    from that of every reference.

    Parameters
    ----------
    references : sequence of VoxelGeometry
        The training volumes' geometry; none: no message at all.
    targets : iterable of (str, VoxelGeometry)
        Name (used in the message) and geometry of each volume to predict.
    axis : int
        The model's slicing axis.
    tolerance : float
        Relative in-plane spacing difference accepted without a message when ``pixel_mm`` is None.
    pixel_mm : sequence of 2 float, optional
        The in-plane voxel size the model was trained at.

    Returns
    -------
    list of str
        One message per difference found, in the order of ``targets``.
    """
    if not references:
        return []
    messages = []
    for name, target in targets:
        message = (
            _spacing_message(name, target, references, axis, tolerance)
            if pixel_mm is None
            else _resize_message(name, target, pixel_mm, axis)
        )
        if message is not None:
            messages.append(message)
        if all(target.directions[axis] != ref.directions[axis] for ref in references):
            ref_dir = _WORLD_AXES[references[0].directions[axis]]
            messages.append(
                f"{name!r} is sliced along world axis {_WORLD_AXES[target.directions[axis]]}, the training "
                f"volumes along {ref_dir}: the network sees another view of the anatomy."
            )
        else:
            message = turned_message(name, target, references, axis)
            if message is not None:
                messages.append(message)
    return messages


def turned_message(
    name: str, target: VoxelGeometry, references: Sequence[VoxelGeometry], axis: int, then: str = "predict it again"
) -> str | None:
    """A message when ``target``'s slices show the anatomy mirrored or turned against every training volume's.

    Where the voxel order cannot be read in the training one (a model saved without axis directions, an
    oblique scan with two axes along one world axis), prediction takes each slice as stored, and training
    does not flip or turn its crops: a Colin27 crop on 5 mm slices trained RAS scored mean Dice 0.72 stored
    RAS, 0.69 LAS, 0.17 LPS and 0.01 with its in-plane axes swapped. ``then``: what to do once the file is
    reoriented.
    """
    alike = [ref.same_slices(target, axis) for ref in references if ref.directions[axis] == target.directions[axis]]
    if not alike or None in alike or any(alike):
        return None
    reference = next(ref for ref in references if ref.directions[axis] == target.directions[axis])
    return (
        f"{name!r} stores its slices turned or mirrored against the training volumes (voxel order "
        f"{target.voxel_order()}, the training volumes {reference.voxel_order()}): the network never saw the anatomy "
        "that way round and may predict it poorly (structures of one side may take the other side's class). "
        f"Reorient the file to {reference.voxel_order()} (napari-action reorient --image <it> --like <a training "
        f"file> --out-dir <folder>: its axes flipped or swapped, nothing resampled) and {then}."
    )


def _spacing_message(
    name: str, target: VoxelGeometry, references: Sequence[VoxelGeometry], axis: int, tolerance: float
) -> str | None:
    spacing = np.asarray(target.in_plane(axis))
    gaps = [np.max(np.abs(spacing / np.asarray(ref.in_plane(axis)) - 1.0)) for ref in references]
    if min(gaps) <= tolerance:
        return None
    known = ", ".join(dict.fromkeys(_mm(ref.in_plane(axis)) for ref in references))  # unique, in order
    return (
        f"{name!r} has in-plane spacing {_mm(target.in_plane(axis))}, the training volumes {known}: this model "
        "was saved by an older version that does not record its training pixel size, so prediction sees the "
        "voxels as they are; expect worse results (train or save the model again to have slices resized)."
    )


def _resize_message(name: str, target: VoxelGeometry, pixel_mm: Sequence[float], axis: int) -> str | None:
    factors = np.asarray(target.in_plane(axis)) / np.asarray(pixel_mm, dtype=np.float64)
    worst = float(max(factors.max(), 1.0 / factors.min()))
    if worst <= RESIZE_WARNING_FACTOR:
        return None
    return (
        f"{name!r} has in-plane spacing {_mm(target.in_plane(axis))}, the network was trained on "
        f"{_mm(pixel_mm)} pixels: its slices are resized {worst:.1f}-fold for prediction, and this far from "
        "the training size expect worse results."
    )


def _mm(values: Iterable[float]) -> str:
    """Spacings as a message writes them, e.g. ``0.8×0.8 mm``."""
    return "×".join(f"{v:.3g}" for v in values) + " mm"

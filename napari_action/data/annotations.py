"""Sparse painted slices of 3D volumes turned into training targets.

The user paints a few slices of a Labels layer; :class:`SparseAnnotation` works
out along which axis (the slicing axis), which slices count as labeled, which
label values are in use and how they map to contiguous class ids, and gives the
per-slice targets the losses need (docs/method.md, "The interactive mapping").

Two annotation modes exist:

``"slice"`` (default)
    On a labeled slice every unpainted pixel is background (class 0): the user
    paints each structure completely on that slice. Label value 0 is class 0.
``"scribble"``
    The user paints background with a dedicated ``background_value`` (class 0)
    and unpainted pixels are ignored (target ``-1``).

This module only needs numpy, so it can be imported and tested anywhere.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np

from napari_action.data.annotation_checks import (
    check_background,
    check_extra_slices,
    check_labels,
    check_mode,
    check_shapes,
)
from napari_action.data.painted_slices import PaintedSlices
from napari_action.data.slicing_axis import decide_axis, has_paint, painted_profile
from napari_action.label_values import as_integer_labels

AnnotationMode = Literal["slice", "scribble"]

#: Target value of pixels that carry no supervision.
IGNORE_INDEX = -1

__all__ = ["IGNORE_INDEX", "SparseAnnotation"]


class SparseAnnotation:
    """Painted slices of several volumes, with their class mapping.

    The label arrays are never modified: only the labeled slices are copied
    (as class-id targets) at construction, so later strokes in the viewer do
    not leak into a running training step.

    Parameters
    ----------
    labels : sequence of np.ndarray or None
        One integer label array per volume (``None``, or a shorter sequence,
        for volumes without labels). Each must have its volume's shape.
    shapes : sequence of tuple of int
        Shape of every volume (3D). Defines how many volumes there are.
    axis : int, optional
        Slicing axis. ``None`` infers it from the paint with
        :func:`~napari_action.data.slicing_axis.decide_axis`.
    mode : {"slice", "scribble"}
        How unpainted pixels of a labeled slice are treated (module docstring).
    labeled_slices : mapping of int to iterable of int, optional
        Extra slices per volume index that count as labeled even if nothing is
        painted on them. In slice mode such a slice is all background; in
        scribble mode a slice without painted voxels has nothing to learn from
        and is not added.
    background_value : int, optional
        Scribble mode only (required there): the painted value meaning
        background. It becomes class 0. Must be ``None`` or 0 in slice mode.
    class_values : sequence of int, optional
        Force the value → class-id mapping (class id = position), e.g. to
        resume from a checkpoint. Slice mode: must start with 0. Scribble mode:
        must start with ``background_value``. Values painted but not listed
        raise ``ValueError`` unless ``allow_new_classes`` is true, in which
        case they are appended (sorted) so existing ids stay stable.
    allow_new_classes : bool
        See ``class_values``.

    Raises
    ------
    ValueError
        On shape mismatches, non-integer or negative label values, unknown
        values, bad slice indices, or when nothing at all is labeled.
    """

    def __init__(
        self,
        labels: Sequence[np.ndarray | None],
        shapes: Sequence[tuple[int, ...]],
        axis: int | None = None,
        mode: AnnotationMode = "slice",
        labeled_slices: Mapping[int, Iterable[int]] | None = None,
        background_value: int | None = None,
        class_values: Sequence[int] | None = None,
        allow_new_classes: bool = False,
    ) -> None:
        self._mode = check_mode(mode)
        self._background_value = check_background(mode, background_value)
        self._shapes = check_shapes(shapes)
        arrays = check_labels(labels, self._shapes)
        extra = check_extra_slices(labeled_slices, len(self._shapes))
        # Scribble mode learns nothing from an empty slice, so marked slices do not count there.
        marked = any(extra.values()) and self._mode == "slice"
        if not any(has_paint(a) for a in arrays if a is not None) and not marked:
            raise ValueError(
                "Paint at least one slice: no label array holds a painted voxel and no slice was marked as labeled."
            )
        self._axis = self._resolve_axis(axis, arrays)
        raw = self._collect_slices(arrays, extra)
        self._set_class_values(raw, class_values, allow_new_classes)
        self._targets = [{s: self._make_target(values) for s, values in vol.items()} for vol in raw]

    # ------------------------------------------------------------------ build
    def _resolve_axis(self, axis: int | None, arrays: list[np.ndarray | None]) -> int:
        if axis is None and not any(has_paint(a) for a in arrays if a is not None):
            raise ValueError("Only empty slices are marked as labeled: pass `axis` explicitly.")
        # The one decision of the widget too; given an axis, it is that axis.
        return decide_axis(arrays, chosen=axis).axis

    def _collect_slices(
        self, arrays: list[np.ndarray | None], extra: dict[int, set[int]]
    ) -> list[dict[int, np.ndarray]]:
        """Copy the raw label values of every labeled slice, validated."""
        collected = []
        for v, array in enumerate(arrays):
            n_slices = self._shapes[v][self._axis]
            for s in extra.get(v, ()):
                if s >= n_slices:
                    raise ValueError(
                        f"Labeled slice {s} of volume {v} is out of range: the volume has "
                        f"{n_slices} slices along axis {self._axis}."
                    )
            painted = set() if array is None else set(np.flatnonzero(painted_profile(array, self._axis)))
            wanted = painted | extra.get(v, set()) if self._mode == "slice" else painted
            collected.append({int(s): self._raw_slice(array, v, int(s)) for s in sorted(wanted)})
        return collected

    def _raw_slice(self, array: np.ndarray | None, v: int, s: int) -> np.ndarray:
        if array is None:
            return np.zeros(self.slice_shape(v), dtype=np.int64)
        lazy = isinstance(array, PaintedSlices)
        values = array.take(s, self._axis) if lazy else np.take(array, s, axis=self._axis)
        # Negative values would collide with IGNORE_INDEX in the targets.
        return as_integer_labels(values, f"Labels of volume {v}", non_negative=True).astype(np.int64)

    def _set_class_values(
        self,
        raw: list[dict[int, np.ndarray]],
        forced: Sequence[int] | None,
        allow_new: bool,
    ) -> None:
        used = {int(u) for vol in raw for values in vol.values() for u in np.unique(values)}
        # Slice mode: 0 is background even if every slice is fully painted.
        # Scribble mode: 0 is "unpainted", never a class.
        used = used | {0} if self._mode == "slice" else used - {0}
        first = 0 if self._mode == "slice" else self._background_value
        if forced is None:
            values = [first, *sorted(used - {first})]
        else:
            values = self._check_forced(forced, first)
            new = sorted(used - set(values))
            if new and not allow_new:
                raise ValueError(
                    f"Label values {new} are not among the known classes {values}; "
                    "pass allow_new_classes=True to add them."
                )
            values += new
        self._class_values = np.asarray(values, dtype=np.int64)
        self._class_values.flags.writeable = False
        order = np.argsort(self._class_values, kind="stable")
        self._sorted_values = self._class_values[order]
        self._sorted_ids = order.astype(np.int64)

    def _check_forced(self, forced: Sequence[int], first: int) -> list[int]:
        values = [int(x) for x in forced]
        if len(set(values)) != len(values) or any(x < 0 for x in values):
            raise ValueError(f"class_values must be unique non-negative integers, got {values}.")
        if not values or values[0] != first:
            what = "0 (background) in slice mode" if self._mode == "slice" else "background_value"
            raise ValueError(f"class_values must start with {what} ({first}), got {values}.")
        if self._mode == "scribble" and 0 in values:
            raise ValueError("In scribble mode 0 means unpainted and cannot be a class value.")
        return values

    def _make_target(self, values: np.ndarray) -> np.ndarray:
        target = self.to_class_ids(values)
        target.flags.writeable = False
        return target

    # ------------------------------------------------------------ properties
    @property
    def axis(self) -> int:
        """Slicing axis (non-negative)."""
        return self._axis

    @property
    def mode(self) -> str:
        """``"slice"`` or ``"scribble"``."""
        return self._mode

    @property
    def background_value(self) -> int | None:
        """Painted value meaning background in scribble mode, else ``None``."""
        return self._background_value

    @property
    def shapes(self) -> tuple[tuple[int, int, int], ...]:
        """Volume shapes, as given."""
        return self._shapes

    @property
    def num_volumes(self) -> int:
        """Number of volumes (labeled or not)."""
        return len(self._shapes)

    @property
    def painted_volumes(self) -> list[int]:
        """Indices of the volumes with at least one labeled slice, in order."""
        return [v for v in range(self.num_volumes) if self._targets[v]]

    @property
    def class_values(self) -> np.ndarray:
        """Label value of every class id (read-only int64 array; id = position).

        Freshly inferred mappings are sorted, with class 0 first: value 0 in
        slice mode, ``background_value`` in scribble mode.
        """
        return self._class_values

    @property
    def num_classes(self) -> int:
        """Number of classes including background."""
        return int(self._class_values.size)

    def num_slices(self, volume_index: int) -> int:
        """Number of slices of a volume along :attr:`axis`."""
        return self._shapes[self._check_volume(volume_index)][self._axis]

    def slice_shape(self, volume_index: int) -> tuple[int, int]:
        """In-plane shape ``(H, W)`` of the slices of a volume."""
        shape = self._shapes[self._check_volume(volume_index)]
        h, w = (n for a, n in enumerate(shape) if a != self._axis)
        return h, w

    # ---------------------------------------------------------------- slices
    def labeled_slices(self, volume_index: int) -> list[int]:
        """Sorted indices of the labeled slices of a volume."""
        return sorted(self._targets[self._check_volume(volume_index)])

    def unlabeled_slices(self, volume_index: int) -> list[int]:
        """Slices usable as unlabeled data (in scribble mode: every slice)."""
        n = self.num_slices(volume_index)
        if self._mode == "scribble":
            return list(range(n))
        labeled = self._targets[volume_index]
        return [s for s in range(n) if s not in labeled]

    def target(self, volume_index: int, slice_index: int) -> np.ndarray:
        """Class-id target of a labeled slice.

        Returns
        -------
        np.ndarray
            Read-only int64 array ``(H, W)``; ``-1`` marks ignored pixels.
        """
        targets = self._targets[self._check_volume(volume_index)]
        if slice_index not in targets:
            raise ValueError(f"Slice {slice_index} of volume {volume_index} is not labeled.")
        return targets[slice_index]

    # --------------------------------------------------------------- mapping
    def to_class_ids(self, values: np.ndarray | Sequence[int] | int) -> np.ndarray:
        """Map label values to class ids (int64, same shape).

        In scribble mode value 0 (unpainted) maps to ``-1``.

        Raises
        ------
        ValueError
            If a value is not a known class value.
        """
        values = np.asarray(values, dtype=np.int64)
        pos = np.clip(np.searchsorted(self._sorted_values, values), 0, self.num_classes - 1)
        known = self._sorted_values[pos] == values
        ids = np.where(known, self._sorted_ids[pos], IGNORE_INDEX)
        unknown = ~known if self._mode == "slice" else ~known & (values != 0)
        if np.any(unknown):
            bad = np.unique(values[unknown])[:10].tolist()
            raise ValueError(f"Unknown label values {bad}; known values are {self._class_values.tolist()}.")
        return ids

    # --------------------------------------------------------------- summary
    def class_counts(self) -> np.ndarray:
        """Number of supervised pixels per class over all labeled slices (int64)."""
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for targets in self._targets:
            for target in targets.values():
                counts += np.bincount(target[target >= 0], minlength=self.num_classes)
        return counts

    def summary(self) -> dict[str, Any]:
        """Plain-Python description for the UI and logs."""
        counts = self.class_counts()
        labeled = {v: self.labeled_slices(v) for v in range(self.num_volumes)}
        return {
            "mode": self._mode,
            "axis": self._axis,
            "num_volumes": self.num_volumes,
            "class_values": self._class_values.tolist(),
            "num_classes": self.num_classes,
            "class_counts": counts.tolist(),
            "missing_classes": self._class_values[counts == 0].tolist(),
            "labeled_slices": labeled,
            "num_labeled": sum(len(s) for s in labeled.values()),
            "num_unlabeled": sum(len(self.unlabeled_slices(v)) for v in range(self.num_volumes)),
        }

    def _check_volume(self, volume_index: int) -> int:
        if not 0 <= volume_index < len(self._shapes):
            raise ValueError(f"Volume index {volume_index} out of range for {len(self._shapes)} volumes.")
        return volume_index

    def __repr__(self) -> str:
        n = sum(len(t) for t in self._targets)
        return (
            f"SparseAnnotation(mode={self._mode!r}, axis={self._axis}, volumes={self.num_volumes}, "
            f"labeled_slices={n}, class_values={self._class_values.tolist()})"
        )

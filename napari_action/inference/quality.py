"""How far to trust each predicted volume of a cohort, and which one to check first.

A model trained on a few painted slices segments some scans of a cohort well and others badly, and
nobody reads every mask. Each prediction gets a record, accumulated slice by slice while it is made
(:class:`QualityAccumulator`: a few numbers per class and the best slice so far, so the out-of-core
prediction keeps its flat memory):

* each class's predicted volume in mL (voxels × :func:`~napari_action.io.geometry.voxel_volume_ml`);
* each class's **doubt**: the mean normalised entropy (the predictor's own uncertainty,
  :func:`~napari_action.inference.suggestions.normalized_entropy`) of the voxels predicted as that
  class. Inside the class only: the background's doubt grows with the field of view (uncertain
  voxels far from any structure), so counting it scored the same mask lower in a larger scan;
* the **worst slice**: the highest uncertainty score along the slicing axis
  (:func:`~napari_action.inference.suggestions.slice_scores`, the score the Refine panel shows).

:func:`rate_cohort` compares the records with each other and gives each volume a score and flags,
worst first; :func:`write_quality_csv` writes them beside the masks.

The score
---------
The **certainty** ``1 - doubt`` pooled over every foreground voxel (1 where the network is sure of
every voxel it calls a structure, 0 where it hesitates between all classes alike; each class weighed
by its volume), times the share of the model's classes that count: a class predicted nowhere counts
0, one whose volume is flagged (below a third or above three times its reference) half. Pooled, not
averaged class by class as it was (a small class's doubt weighed as much as the largest's): at the
cohort schedules of today, Spearman ρ against true Dice 0.56 -> 0.61 over 15 recorded runs and
0.54 -> 0.63 over three new runs on the warped brains, level on two of hearts (docs/benchmarks.md,
"The certainty pooled over the foreground voxels"). With every class equally certain the two are equal.
The reference is the caller's, or by default the cohort's median of at
least :data:`MIN_COHORT` volumes (the painted subjects' full structures are unknown from a few
painted slices, and one scan says nothing about what size is usual). Higher is more trustworthy, in
[0, 1]. A volume's distance from the median counts only past the flag: anatomy differs in size
between subjects, and scoring every difference (the score was once ``certainty × 2·min(v, r) /
(v + r)``) ranked the cohorts' subjects worse, Spearman ρ against true Dice 0.27 → 0.50 on the
warped brains and 0.31 → 0.52 on the phantom hearts over the same 38 recorded runs
(docs/benchmarks.md, "Which volume to check first").

Flags: a class predicted nowhere, a class below a third or above three times its reference, and a
volume whose certainty, averaged over its predicted classes, is below one half.
"""

from __future__ import annotations

import csv
import dataclasses
import io
import os
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path

import numpy as np

from napari_action.inference.suggestions import slice_scores
from napari_action.io.atomic import write_atomically
from napari_action.io.reoriented import Reorientation

__all__ = [
    "MIN_COHORT",
    "QUALITY_CSV",
    "PredictionStats",
    "QualityAccumulator",
    "VolumeQuality",
    "class_label",
    "cohort_reference",
    "quality_table",
    "rate",
    "rate_cohort",
    "write_quality_csv",
]

#: Fewest volumes whose median stands as the reference structure volumes.
MIN_COHORT = 3
#: A class this many times smaller or larger than its reference is flagged.
VOLUME_RANGE = 3.0
#: A class whose volume is flagged counts this share of its certainty in the score.
FLAGGED_WEIGHT = 0.5
#: A volume whose mean class certainty is below this is flagged as uncertain.
UNCERTAIN_BELOW = 0.5
#: How the flag of a volume with a certainty under UNCERTAIN_BELOW begins (the other flags are per class).
UNCERTAIN_FLAG = "uncertain (certainty"
#: Per-class flags spelled out in one line of text (:meth:`VolumeQuality.brief_flags`).
CLASS_FLAGS_SHOWN = 3
#: File name of the table written beside the masks.
QUALITY_CSV = "quality.csv"
_COLUMNS = ("file", "status", "quality_score", "flags", "worst_slice", "slicing_axis")


@dataclasses.dataclass(frozen=True)
class PredictionStats:
    """What one prediction says about itself, before it is compared with the cohort. JSON-able.

    Parameters
    ----------
    class_values : tuple of int
        The model's label values, background first.
    voxels : tuple of int
        Predicted voxels of each class.
    entropy_sums : tuple of float
        Sum of the normalised entropy over the voxels predicted as each class.
    voxel_ml : float
        Volume of one voxel in mL.
    axis : int
        The slicing axis.
    worst_slice : int
        Index along ``axis`` of the slice with the highest uncertainty score (-1: no slice).
    worst_slice_score : float
        That score.
    """

    class_values: tuple[int, ...]
    voxels: tuple[int, ...]
    entropy_sums: tuple[float, ...]
    voxel_ml: float
    axis: int
    worst_slice: int
    worst_slice_score: float

    def volume_ml(self) -> dict[int, float]:
        """Predicted volume of each foreground class in mL."""
        return {v: n * self.voxel_ml for v, n in zip(self.class_values[1:], self.voxels[1:], strict=True)}

    def doubt(self) -> dict[int, float]:
        """Each foreground class's doubt in [0, 1]: the mean normalised entropy of the voxels predicted as it.

        A class predicted nowhere has no doubt to speak of (0); it is scored as missing instead.
        """
        return {
            value: total / count if count else 0.0
            for value, count, total in zip(self.class_values[1:], self.voxels[1:], self.entropy_sums[1:], strict=True)
        }

    def recounted(self, labels: np.ndarray) -> PredictionStats:
        """The same record with the voxel counts of ``labels`` (a mask changed after prediction).

        Each class keeps the prediction's doubt (its mean entropy; the entropy of the voxels removed or
        added is not known any more): the doubt is the network's, the volumes the mask's.
        """
        ids = _class_ids(np.asarray(labels), np.asarray(self.class_values))
        voxels = np.bincount(ids, minlength=len(self.class_values))
        counts = zip(self.entropy_sums, voxels, self.voxels, strict=True)
        sums = [float(total * new / old) if old else 0.0 for total, new, old in counts]
        return dataclasses.replace(self, voxels=tuple(int(n) for n in voxels), entropy_sums=tuple(sums))

    def with_voxel_ml(self, voxel_ml: float) -> PredictionStats:
        """The same record for voxels of ``voxel_ml`` mL (a record counted before the voxel size was known)."""
        return dataclasses.replace(self, voxel_ml=float(voxel_ml))

    def in_stored_order(self, turn: Reorientation, shape: Sequence[int]) -> PredictionStats:
        """The record of a volume predicted through ``turn`` (``shape``: its shape in the training order), its worst
        slice named along the stored axis it lies on."""
        if self.worst_slice < 0:
            return dataclasses.replace(self, axis=turn.stored_axes[self.axis])
        axis, index = turn.stored_index(self.axis, self.worst_slice, shape[self.axis])
        return dataclasses.replace(self, axis=axis, worst_slice=index)

    def to_dict(self) -> dict:
        """Plain lists and numbers (for JSON, and to cross between ranks)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> PredictionStats:
        """Inverse of :meth:`to_dict`."""
        return cls(
            class_values=tuple(int(v) for v in data["class_values"]),
            voxels=tuple(int(n) for n in data["voxels"]),
            entropy_sums=tuple(float(h) for h in data["entropy_sums"]),
            voxel_ml=float(data["voxel_ml"]),
            axis=int(data["axis"]),
            worst_slice=int(data["worst_slice"]),
            worst_slice_score=float(data["worst_slice_score"]),
        )


def _class_ids(labels: np.ndarray, class_values: np.ndarray) -> np.ndarray:
    """Flat class indices of label values; a value the model does not have is refused."""
    flat = labels.ravel()
    if flat.dtype.kind in "iu" and flat.dtype.itemsize <= 2:
        ids = _looked_up(flat, class_values)
        known = ids >= 0
    else:
        order = np.argsort(class_values)
        positions = np.clip(np.searchsorted(class_values, flat, sorter=order), 0, len(class_values) - 1)
        ids = order[positions]
        known = class_values[ids] == flat
    if not known.all():
        unknown = sorted(set(np.unique(flat[~known]).tolist()))
        raise ValueError(f"label values {unknown} are none of the model's classes {class_values.tolist()}")
    return ids


def _looked_up(flat: np.ndarray, class_values: np.ndarray) -> np.ndarray:
    """Class indices of 8- or 16-bit labels from a table of every value the type holds (-1: none of the classes).

    Predicted masks are uint8 (uint16 past 255 classes): one table read per voxel, where sorting and
    searching cost 5.7 ms a 512 x 512 slice and took half of a CT's quality pass.
    """
    info = np.iinfo(flat.dtype)
    table = np.full(int(info.max) - int(info.min) + 1, -1, np.int64)
    values = np.asarray(class_values, np.int64)
    inside = (values >= info.min) & (values <= info.max)
    table[values[inside] - info.min] = np.flatnonzero(inside)
    index = flat.astype(np.int64) - info.min if info.min else flat
    return table[index]


class QualityAccumulator:
    """Collects :class:`PredictionStats` from a prediction, one finished slice at a time.

    Parameters
    ----------
    class_values : sequence of int
        The model's label values, background first.
    axis : int
        The slicing axis the slices are taken along.
    voxel_ml : float
        Volume of one voxel in mL (:func:`~napari_action.io.geometry.voxel_volume_ml`).
    """

    def __init__(self, class_values: Sequence[int], axis: int, voxel_ml: float) -> None:
        self.class_values = np.asarray(class_values, dtype=np.int64)
        self.axis = int(axis)
        self.voxel_ml = float(voxel_ml)
        self._voxels = np.zeros(len(self.class_values), np.int64)
        self._entropy = np.zeros(len(self.class_values), np.float64)
        self._worst_slice, self._worst_score = -1, -np.inf
        self._scores: dict[int, float] = {}  # every slice's, for whoever shows them (the Refine panel)

    def add_slice(self, index: int, labels: np.ndarray, entropy: np.ndarray) -> None:
        """Count slice ``index``: its label values and the normalised entropy of each voxel."""
        ids = _class_ids(np.asarray(labels), self.class_values)
        weights = np.asarray(entropy, dtype=np.float64).ravel()
        self._voxels += np.bincount(ids, minlength=len(self.class_values))
        self._entropy += np.bincount(ids, weights=weights, minlength=len(self.class_values))
        # The Refine panel's slice score, so that "worst slice" means the same in both places.
        score = self._scores[int(index)] = float(slice_scores(np.asarray(entropy)[np.newaxis], 0)[0])
        # Ties go to the lowest index, so that the slices may come in any order.
        if (score, -index) > (self._worst_score, -self._worst_slice):
            self._worst_slice, self._worst_score = int(index), score

    def add_volume(self, labels: np.ndarray, entropy: np.ndarray) -> None:
        """Count a whole prediction (label values and entropy in the volume's own axis order)."""
        if np.shape(labels) != np.shape(entropy):
            raise ValueError(f"labels {np.shape(labels)} and entropy {np.shape(entropy)} differ in shape")
        slices = zip(np.moveaxis(labels, self.axis, 0), np.moveaxis(entropy, self.axis, 0), strict=True)
        for index, (label_slice, entropy_slice) in enumerate(slices):
            self.add_slice(index, label_slice, entropy_slice)

    def slice_scores(self) -> np.ndarray:
        """The score of every slice counted so far, by index (0 for one not counted, as the Refine panel has it):
        :func:`~napari_action.inference.suggestions.slice_scores` of the entropy, without a second pass over it."""
        scores = np.zeros(max(self._scores, default=-1) + 1)
        scores[list(self._scores)] = list(self._scores.values())
        return scores

    def finish(self) -> PredictionStats:
        """The record of the slices counted so far."""
        return PredictionStats(
            class_values=tuple(int(v) for v in self.class_values),
            voxels=tuple(int(n) for n in self._voxels),
            entropy_sums=tuple(float(h) for h in self._entropy),
            voxel_ml=self.voxel_ml,
            axis=self.axis,
            worst_slice=self._worst_slice,
            worst_slice_score=float(max(self._worst_score, 0.0)),
        )


@dataclasses.dataclass(frozen=True)
class VolumeQuality:
    """How far to trust one predicted volume. JSON-able (:meth:`to_dict`), one CSV row each.

    Parameters
    ----------
    name : str
        The file (or image layer) it belongs to.
    score : float
        In [0, 1]; higher is more trustworthy (see the module's text).
    flags : tuple of str
        Likely failures in words, e.g. ``"amygdala missing"``.
    volume_ml : dict of str to float
        Predicted volume of each foreground class, by class name, in the model's order.
    worst_slice : int
        The slice to look at first, along ``axis``.
    axis : int
        The slicing axis.
    """

    name: str
    score: float
    flags: tuple[str, ...]
    volume_ml: dict[str, float]
    worst_slice: int
    axis: int

    def to_dict(self) -> dict:
        """Plain values, for JSON."""
        return dataclasses.asdict(self)

    def brief_flags(self, shown: int = CLASS_FLAGS_SHOWN) -> str:
        """The flags for one line of text: the first ``shown`` classes' flags, the others counted.

        A weakly trained model of an atlas misses dozens of classes, and one flag each made a line
        of thousands of characters (the Cohort tab's row, the command line's "Check first") that hid
        the volume's certainty and worst slice; ``flags`` and ``quality.csv`` keep every flag.
        """
        whole = [flag for flag in self.flags if flag.startswith(UNCERTAIN_FLAG)]
        per_class = [flag for flag in self.flags if not flag.startswith(UNCERTAIN_FLAG)]
        if len(per_class) > shown:
            per_class = [*per_class[:shown], f"and {len(per_class) - shown} more classes flagged"]
        return "; ".join(per_class + whole) or "no flag"


def class_label(value: int, class_names: Mapping[int, str] | None) -> str:
    """A class's name, or ``"class <value>"`` for a class without one (no name, or a blank one).

    A name that several values share gets its value, ``"hippocampus (37)"``: the volume columns and
    flags are keyed by this label, and two classes of one label were counted as one.
    """
    names = class_names or {}
    name = str(names.get(value, "")).strip()
    if not name:
        return f"class {value}"
    if sum(str(other).strip() == name for other in names.values()) > 1:
        return f"{name} ({value})"
    return name


def _class_weight(volume: float, reference: float | None) -> float:
    """What a class keeps of the score: 1, :data:`FLAGGED_WEIGHT` if its volume is flagged, 0 if predicted nowhere."""
    if volume <= 0:
        return 0.0
    return FLAGGED_WEIGHT if _size_outside_range(volume, reference) is not None else 1.0


def _pooled_certainty(volumes: Mapping[int, float], doubts: Mapping[int, float]) -> float:
    """``1 - doubt`` over every foreground voxel, each class weighed by its volume (0 when none is predicted)."""
    total = sum(volumes.values())
    if total <= 0:
        return 0.0
    return max(0.0, 1.0 - sum(volumes[value] * doubts[value] for value in volumes) / total)


def _size_outside_range(volume: float, reference: float | None) -> str | None:
    """ "small" or "large" when ``volume`` is beyond :data:`VOLUME_RANGE` of ``reference``; None within it.

    No reference, or a class the cohort usually misses (reference 0): nothing to compare with.
    """
    if not reference:
        return None
    if volume < reference / VOLUME_RANGE:
        return "small"
    if volume > reference * VOLUME_RANGE:
        return "large"
    return None


def _volume_flags(name: str, volume: float, reference: float | None) -> list[str]:
    if volume <= 0:
        return [f"{name} missing"]
    size = _size_outside_range(volume, reference)
    return [f"{name} {size} ({volume:.3g} mL, usual {reference:.3g} mL)"] if size else []


def rate(
    name: str,
    stats: PredictionStats,
    class_names: Mapping[int, str] | None = None,
    reference: Mapping[int, float] | None = None,
) -> VolumeQuality:
    """Score and flag one prediction against reference volumes (mL per class value; None: volumes not compared)."""
    reference = reference or {}
    volumes, doubts = stats.volume_ml(), stats.doubt()
    weights, flags, certainties = [], [], []
    for value, volume in volumes.items():
        label = class_label(value, class_names)
        weights.append(_class_weight(volume, reference.get(value)))
        flags += _volume_flags(label, volume, reference.get(value))
        if volume > 0:
            certainties.append(1.0 - doubts[value])
    if certainties and np.mean(certainties) < UNCERTAIN_BELOW:
        flags.append(f"{UNCERTAIN_FLAG} {np.mean(certainties):.2f})")
    return VolumeQuality(
        name=name,
        score=_pooled_certainty(volumes, doubts) * float(np.mean(weights)) if weights else 0.0,
        flags=tuple(flags),
        volume_ml={class_label(v, class_names): float(ml) for v, ml in volumes.items()},
        worst_slice=stats.worst_slice,
        axis=stats.axis,
    )


def cohort_reference(records: Sequence[PredictionStats]) -> dict[int, float] | None:
    """Median predicted volume of each class over the cohort; None for fewer than :data:`MIN_COHORT` volumes.

    The median, so that the failures this is meant to find do not move the reference.
    """
    if len(records) < MIN_COHORT:
        return None
    volumes = [record.volume_ml() for record in records]
    return {value: float(np.median([v.get(value, 0.0) for v in volumes])) for value in volumes[0]}


def rate_cohort(
    records: Sequence[tuple[str, PredictionStats]],
    class_names: Mapping[int, str] | None = None,
    reference: Mapping[int, float] | None = None,
) -> list[VolumeQuality]:
    """Score and flag every prediction of a cohort; worst first (ties by name).

    Parameters
    ----------
    records : sequence of (str, PredictionStats)
        Name and record of each predicted volume.
    class_names : mapping of int to str, optional
        Names of the label values, for the flags and the volume columns.
    reference : mapping of int to float, optional
        Reference volume of each class in mL; by default :func:`cohort_reference` of ``records``.
    """
    if reference is None:
        reference = cohort_reference([stats for _, stats in records])
    rated = [rate(name, stats, class_names, reference) for name, stats in records]
    return sorted(rated, key=lambda quality: (quality.score, quality.name))


def quality_table(
    qualities: Sequence[VolumeQuality],
    classes: Sequence[str],
    *,
    failed: Sequence[tuple[str, str]] = (),
    skipped: Sequence[str] = (),
    kept: Collection[str] = (),
) -> str:
    """The CSV text: failed files first, then ``qualities`` in their order, then skipped files.

    Parameters
    ----------
    qualities : sequence of VolumeQuality
        Rated volumes (:func:`rate_cohort` orders them worst first).
    classes : sequence of str
        The foreground class names: one ``"<name> mL"`` column each.
    failed : sequence of (str, str)
        File and message of each file that could not be predicted.
    skipped : sequence of str
        Files left alone because their mask existed, and not rated (no record of their prediction).
    kept : collection of str
        Names among ``qualities`` whose mask existed and was rated from its kept record, not predicted
        again: status ``kept`` instead of ``predicted``.
    """
    buffer = io.StringIO()
    table = csv.writer(buffer, lineterminator="\n")
    table.writerow([*_COLUMNS, *(f"{name} mL" for name in classes)])
    empty = [""] * len(classes)
    for name, message in failed:
        table.writerow([name, "failed", "", message, "", "", *empty])
    for quality in qualities:
        # Significant digits, not decimals: the cells of a microscope stack hold nanolitres (0.0000 in four decimals).
        volumes = [f"{quality.volume_ml.get(name, 0.0):.6g}" for name in classes]
        status = "kept" if quality.name in kept else "predicted"
        row = [quality.name, status, f"{quality.score:.4f}", "; ".join(quality.flags)]
        table.writerow([*row, quality.worst_slice, quality.axis, *volumes])
    for name in skipped:
        why = (
            "its mask existed, with no record of its prediction by this model "
            "(changed since, older, or another model's); not rated"
        )
        table.writerow([name, "skipped", "", why, "", "", *empty])
    return buffer.getvalue()


def write_quality_csv(path: str | os.PathLike, text: str) -> Path:
    """Write :func:`quality_table`'s text to ``path`` atomically (a reader never sees half a table)."""
    return write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


def is_quality_table(path: str | os.PathLike) -> bool:
    """Whether ``path`` holds a table :func:`write_quality_csv` wrote (its header), or nothing to lose (empty)."""
    with open(path, "rb") as table:
        header = table.readline().decode("utf-8", errors="replace").strip()
    return not header or header.startswith(",".join(_COLUMNS))

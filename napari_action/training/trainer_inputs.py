"""The trainer's inputs checked and prepared: images, their labels, voxel sizes.

Every check raises ``ValueError`` with a message that says what to do, so
front ends can show it as it is; labels that train but train badly get a
warning instead (:func:`single_slice_advice`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.carried_ends import has_thick_slices, thickness_ratio
from napari_action.data.intensity import check_volume_values
from napari_action.data.noise_level import noise_level, noise_to_add
from napari_action.data.normalized_volume import NormalizedVolume, is_array_like
from napari_action.data.painting_slips import painting_slip_advice
from napari_action.data.slicing_axis import axis_mismatch_advice, decide_axis
from napari_action.io.checkpoint import Checkpoint
from napari_action.label_values import check_class_count
from napari_action.training.argument_checks import (
    check_config,
    check_geometry,
    check_labeled_slices,
    check_names,
    check_spacings,
    check_volumes,
    one_per_image,
    pad_labels,
)
from napari_action.training.label_advice import turned_volume_notes
from napari_action.training.volume_turns import VolumeTurns, model_order, painted_indices

logger = logging.getLogger(__name__)

__all__ = [
    "build_annotation",
    "check_config",
    "check_spacings",
    "check_unpainted_slices",
    "check_volumes",
    "checked_annotation",
    "updated_annotation",
    "one_per_image",
    "decided_from_data",
    "normalized_image",
    "normalized_images",
    "pad_labels",
    "PreparedVolumes",
    "prepared_volumes",
    "with_cohort_steps",
    "with_scanner_augmentation",
    "with_structure_ends",
    "WholeVolumes",
]


@dataclasses.dataclass(frozen=True)
class PreparedVolumes:
    """The trainer's volumes checked, and each one stored in another voxel order than the painted one turned
    into it (:class:`~napari_action.training.volume_turns.VolumeTurns`): volumes, painted slices, voxel sizes
    and affines all in the training order; the volumes' names checked (one per volume, or None)."""

    volumes: list[Any]
    annotation: SparseAnnotation
    axis_advice: str | None
    spacings: list[tuple[float, ...]]
    world: list[np.ndarray]
    turns: VolumeTurns
    turned_notes: list[str]
    names: list[str] | None


def prepared_volumes(
    volumes: Sequence[Any],
    labels: Sequence[Any] | None,
    config: TrainConfig,
    checkpoint: Checkpoint | None,
    labeled_slices: Mapping[int, Sequence[int]] | None,
    spacings: Sequence[Sequence[float]] | None,
    affines: Sequence[np.ndarray] | None,
    names: Sequence[str] | None,
) -> PreparedVolumes:
    """The ``Trainer``'s arguments checked (each check's error says what to do) and turned into one voxel order.

    Every volume is taken in the first painted volume's voxel order (a continued ``checkpoint``'s where it recorded
    one), its labels with it (:class:`~napari_action.training.volume_turns.VolumeTurns`); the painted slices are
    then found, the slicing axis decided and every check made on what training will see.
    """
    raw = check_volumes(volumes)
    names = check_names(names, len(raw))
    labels = pad_labels(one_per_image(() if labels is None else labels, "labels"), len(raw))
    shapes = [v.shape for v in raw]
    spacings, world = check_geometry(spacings, affines, raw)
    labeled_slices = check_labeled_slices(labeled_slices)  # read more than once below
    painted = painted_indices(labels, labeled_slices)
    turns = VolumeTurns.decide(world, labels, painted, shapes, model_order(checkpoint))
    count = range(len(raw))
    turned_labels = turns.labels(labels)
    marked = _marked_slices(turns, labeled_slices, turned_labels, config, checkpoint)
    annotation, advice = checked_annotation(turned_labels, [turns.shape(k) for k in count], config, checkpoint, marked)
    return PreparedVolumes(
        [turns.volume(k, raw[k]) for k in count],
        annotation,
        advice,
        [turns.spacing(k, spacings[k]) for k in count],
        [turns.affine(k, world[k]) for k in count],
        turns,
        turns.notes(world, names),
        names,
    )


def _marked_slices(
    turns: VolumeTurns,
    labeled_slices: Mapping[int, Sequence[int]] | None,
    labels: Sequence[Any],
    config: TrainConfig,
    checkpoint: Checkpoint | None,
) -> Mapping[int, Sequence[int]] | None:
    """Slices marked as labeled, given in each volume's stored order, in the training order: along the axis
    the annotation will slice (the same decision as its own, made early only where a turned volume has some)."""
    if not labeled_slices or not any(v in range(len(turns.turns)) and turns.turned(v) for v in labeled_slices):
        return labeled_slices
    axis = config.axis if checkpoint is None else checkpoint.axis
    if axis is None:
        axis = decide_axis(labels).axis
    return turns.labeled_slices(labeled_slices, axis)


def normalized_image(volume: Any, axis: int, reference: str = "foreground_in_view") -> NormalizedVolume:
    """An image normalised on demand: exact statistics in memory, a sample of slices along ``axis`` on disk;
    ``reference`` is :attr:`TrainConfig.intensity_reference`."""
    if is_array_like(volume):
        return NormalizedVolume.sampled(volume, axis, reference)
    return NormalizedVolume.exact(check_volume_values(volume), reference)


def normalized_images(
    volumes: Sequence[Any], axis: int, reference: str, names: Sequence[str] | None = None
) -> list[NormalizedVolume]:
    """Every training image normalised (:func:`normalized_image`); an image's own error says which image it is,
    by its name in ``names`` (what the user calls it: a layer or file name) when given."""
    images = []
    for index, volume in enumerate(volumes):
        try:
            images.append(normalized_image(volume, axis, reference))
        except ValueError as error:
            if type(error) is not ValueError:  # a file's own error names the file, and front ends reword it
                raise
            # NaN voxels or an empty array: which one of several images ("Image 3" named no layer of the viewer).
            which = repr(names[index]) if names else f"Image {index}"
            raise ValueError(f"{which}: {error}") from error
    return images


def with_checkpoint_settings(config: TrainConfig, checkpoint: Checkpoint | None) -> TrainConfig:
    """``config`` with the loaded model's network sizes, normalising volumes as its training did, when training
    continues from one.

    The weights fit only the network they were saved from (``config.model``: widths, context, heads), and
    they learned from volumes normalised one way: continuing on another would first have to undo that
    (models saved before the foreground normalisation keep the whole-volume one).
    """
    if checkpoint is None:
        return config
    if config.axis is not None and normalize_axis(config.axis, 3) != checkpoint.axis:
        # The model's axis won without a word, and the paint's advice then said to choose the axis already chosen.
        raise ValueError(
            f"config.axis is {config.axis}, but the model to continue (init) slices along axis {checkpoint.axis}, "
            f"and a model slices along one axis only: set axis=None to continue it (with labels painted along axis "
            f"{checkpoint.axis}), or leave init out to train a new model along axis {config.axis}."
        )
    saved = checkpoint.config
    if config.model != saved.model:
        logger.info("continuing from a model of other network sizes: its own (%s) replace the config's", saved.model)
    return dataclasses.replace(config, model=saved.model, intensity_reference=saved.intensity_reference)


def decided_from_data(
    config: TrainConfig,
    images: Sequence[NormalizedVolume],
    spacings: Sequence[Sequence[float]],
    annotation: SparseAnnotation,
    names: Sequence[str] | None = None,
    world: Sequence[np.ndarray] = (),
) -> tuple[TrainConfig, list[str]]:
    """``config`` with every setting left to the data decided, and a note for each decision the user should
    know of: the noise augmentation (:func:`with_scanner_augmentation`), the structure-end rule
    (:func:`with_structure_ends`) and a cohort's longer last stage (:func:`with_cohort_steps`); and one for
    each volume stored turned against the painted ones (``world``: the voxel → world affines;
    :func:`~napari_action.training.label_advice.turned_volume_notes`).
    ``names``: what the user calls each volume, in the notes (default "volume 1", ...)."""
    config, noise = with_scanner_augmentation(config, images, annotation, names)
    config, ends = with_structure_ends(config, spacings, annotation)
    config, steps = with_cohort_steps(config, annotation)
    turned = turned_volume_notes(world, annotation, names)
    blank = blank_image_notes(images, names)
    return config, [note for note in (*blank, noise, ends, steps, *turned) if note]


def blank_image_notes(images: Sequence[NormalizedVolume], names: Sequence[str] | None = None) -> list[str]:
    """A note for each image that shows nothing once normalised: its intensities clip to one value (an empty
    file, a blank export), so it holds nothing to learn from or to predict on."""
    notes = []
    for index, image in enumerate(images):
        statistics = image.statistics
        if statistics is None or statistics.high > statistics.low:
            continue
        called = names[index] if names and index < len(names) else f"volume {index + 1}"
        notes.append(
            f"{called} shows nothing to learn from: its voxels all have one value ({statistics.low:g}), so its "
            "prediction means nothing. Check that it is the scan, not an empty file or a mask."
        )
    return notes


def with_scanner_augmentation(
    config: TrainConfig,
    images: Sequence[NormalizedVolume],
    annotation: SparseAnnotation,
    names: Sequence[str] | None = None,
) -> tuple[TrainConfig, str | None]:
    """``config`` with the noise augmentation decided where it is left to the data (``noise_sigma=None``),
    and, when noise joins training, a note for the user.

    Noise up to the noisiest training volume's when it is clearly noisier than every painted one
    (:func:`~napari_action.data.noise_level.noise_to_add`); ``photometric_labeled=None`` follows it.
    """
    noise, note = config.noise_sigma, None
    if noise is None:
        painted = annotation.painted_volumes
        levels = [noise_level(image, annotation.axis) for image in images] if painted else []
        noise = round(noise_to_add(levels, painted), 3)
        if noise:
            noisiest = int(np.argmax(levels))
            least = min(levels[index] for index in painted)
            # With 20 scans open, "volume 6" names none the user knows: the layer's or file's name does.
            called = repr(names[noisiest]) if names and noisiest < len(names) else f"volume {noisiest + 1}"
            note = (
                f"{called} is noisier than the painted one(s) (noise {levels[noisiest]:.2f} against "
                f"{least:.2f} sd): training adds noise up to {noise:.2f} sd to what the network sees, so that "
                "it also segments the noisier scans."
            )
    labeled = config.photometric_labeled if config.photometric_labeled is not None else noise > 0
    return dataclasses.replace(config, noise_sigma=noise, photometric_labeled=labeled), note


def with_cohort_steps(config: TrainConfig, annotation: SparseAnnotation) -> tuple[TrainConfig, str | None]:
    """``config`` with stage iii lengthened for a cohort (``unpainted_crops_per_volume``), and a note saying so.

    Every step takes ``batch_unlabeled_stage3`` unlabeled crops from all the volumes; with many volumes
    nobody painted each is seen too seldom. Stage iii then runs enough steps for each of them to give
    ``unpainted_crops_per_volume`` crops, at most :data:`~napari_action.config.MAX_COHORT_STEPS_FACTOR` times
    its steps (:meth:`~napari_action.config.TrainConfig.cohort_stage3_steps`). The
    resolved config keeps 0, so that a saved and continued model is not lengthened twice. The supervised
    baseline, which learns nothing from unpainted volumes, keeps its steps.
    """
    unpainted = annotation.num_volumes - len(annotation.painted_volumes)
    steps = config.cohort_stage3_steps(unpainted)
    if steps == config.steps_stage3:
        return config, None
    note = (
        f"{unpainted} of the {annotation.num_volumes} images have no painted slice: the last stage runs "
        f"{steps:,} steps instead of {config.steps_stage3:,}, so that the network learns from each of them."
    )
    return dataclasses.replace(config, steps_stage3=steps, unpainted_crops_per_volume=0), note


def with_structure_ends(
    config: TrainConfig, spacings: Sequence[Sequence[float]], annotation: SparseAnnotation
) -> tuple[TrainConfig, str | None]:
    """``config`` with ``structure_ends = "auto"`` turned into a rule, and a note for the user when it cuts.

    "cut" when every painted volume has thick slices (:data:`~napari_action.data.carried_ends.THICK_SLICES`):
    a structure then ends between two slices, which the propagation places well, and a network running
    on by a slice adds a whole slab of false voxels; "taper" otherwise. Any other setting is kept as it
    is. The demo's hearts (8 mm slices of 1.5 mm pixels) gained 0.03-0.09 Dice per seed from "cut";
    since the propagation keeps the slice where the anatomy ends them as background, the network alone
    is as good there (0.003 higher on the phantom cohort), but "cut" stays as the guard for a network
    trained without that slice (up to 0.1 per heart); every isotropic volume measured (Colin27, TPTBox
    resampled to 1.5 mm) does as well or better with "taper" (docs/benchmarks.md, "Where each structure
    ends", "Why `cut` stays").
    """
    if config.structure_ends != "auto":
        return config, None
    painted = annotation.painted_volumes
    if not painted or not all(has_thick_slices(spacings[index], annotation.axis) for index in painted):
        return dataclasses.replace(config, structure_ends="taper"), None
    thinnest = min(thickness_ratio(spacings[index], annotation.axis) for index in painted)
    note = (
        f"the slices are {thinnest:.1f} times thicker than their pixels: a predicted structure ends on the "
        "last slice your labels are carried to (structure ends: cut). Choose taper if your structures go on "
        "well beyond the slices you painted (a vessel followed along its length)."
    )
    return dataclasses.replace(config, structure_ends="cut"), note


def build_annotation(
    labels: Sequence[Any],
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    *,
    axis: int | None,
    labeled_slices: Mapping[int, Sequence[int]] | None,
    class_values: Sequence[int] | None,
) -> SparseAnnotation:
    """The painted slices as training targets, in the mode and background value of ``config``.

    A label value not in ``class_values`` becomes a new class (a running model grows its output).
    """
    return SparseAnnotation(
        pad_labels(labels, len(shapes)),
        [tuple(shape) for shape in shapes],
        axis=axis,
        mode=config.annotation_mode,
        labeled_slices=labeled_slices,
        background_value=config.background_value,
        class_values=class_values,
        allow_new_classes=True,
    )


def checked_annotation(
    labels: Sequence[Any],
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    checkpoint: Checkpoint | None,
    labeled_slices: Mapping[int, Sequence[int]] | None,
) -> tuple[SparseAnnotation, str | None]:
    """The painted slices as training targets (:func:`build_annotation`, along a continued model's axis and
    classes), refused where they cannot train (too many values, no slice left unpainted), and the advice on
    how the paint lies against the slicing axis (None where it lies well)."""
    axis = config.axis if checkpoint is None else checkpoint.axis
    class_values = None if checkpoint is None else checkpoint.class_values
    # Only a forced axis can disagree with the paint ("auto" infers the painted one).
    forced = config.axis is not None
    return _annotation_that_trains(labels, shapes, config, axis, class_values, labeled_slices, forced)


def updated_annotation(
    turns: VolumeTurns,
    labels: Sequence[Any],
    labeled_slices: Mapping[int, Sequence[int]] | None,
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    annotation: SparseAnnotation,
) -> SparseAnnotation:
    """New training labels for a running model (given in each volume's stored order; along the model's axis,
    its classes first), refused as at the start where they cannot train: too many values, or no slice left
    unpainted (a flood fill through the volume)."""
    turned = turns.labels(pad_labels(labels, len(shapes)))
    slices = turns.labeled_slices(check_labeled_slices(labeled_slices), annotation.axis)
    # The advice on the paint is worked out only for a refusal: 0.33 s of CPU on a 512 x 512 x 400 label
    # volume, at every update the widget sends (at most two a second) while the user paints.
    updated, _ = _annotation_that_trains(
        turned, shapes, config, annotation.axis, annotation.class_values, slices, False, advise=False
    )
    return updated


def _annotation_that_trains(
    labels: Sequence[Any],
    shapes: Sequence[tuple[int, ...]],
    config: TrainConfig,
    axis: int | None,
    class_values: Sequence[int] | None,
    labeled_slices: Mapping[int, Sequence[int]] | None,
    forced_axis: bool,
    *,
    advise: bool = True,
) -> tuple[SparseAnnotation, str | None]:
    """:func:`build_annotation` refused where it cannot train, with the advice on how the paint lies against the
    slicing axis (``forced_axis``: whether it may disagree with the painted one; ``advise``: whether the advice
    is wanted, else it is worked out for a refusal only and None is returned)."""
    annotation = build_annotation(
        labels, shapes, config, axis=axis, labeled_slices=labeled_slices, class_values=class_values
    )
    check_class_count(annotation.class_values[1:], "The painted labels")  # class 0 is the background

    def paint_advice() -> str | None:
        if config.annotation_mode != "slice":  # scribbles have no slices
            return None
        mismatch = axis_mismatch_advice(labels, annotation.axis) if forced_axis else None
        # Paint on slices the user did not look at (another view, a leaked fill, a 3D brush), whatever the choice.
        return mismatch or painting_slip_advice(labels, annotation.axis)

    advice = paint_advice() if advise else None
    check_unpainted_slices(annotation, config.method, advice if advise else paint_advice)
    return annotation, advice


def check_unpainted_slices(
    annotation: SparseAnnotation, method: str, why: str | Callable[[], str | None] | None = None
) -> None:
    """Refuse labels that leave no slice unpainted when ``method`` learns from unpainted slices too.

    ACTION and the mean teacher draw crops from slices nobody painted at every step of their last
    stage; without any, training stopped there with nothing the user could act on. ``why``, the
    advice on how the paint lies against the slicing axis (or what works it out), ends the message when given.
    """
    if method == "supervised":
        return
    volumes = range(annotation.num_volumes)
    if any(annotation.unlabeled_slices(v) for v in volumes):
        return
    slices = sum(annotation.num_slices(v) for v in volumes)
    images = "the image" if annotation.num_volumes == 1 else f"the {annotation.num_volumes} images"
    reason = why() if callable(why) else why
    raise ValueError(
        f"All {slices} slices along axis {annotation.axis} are painted (or marked as labeled) in {images}, but "
        f"the method {method} also learns from slices nobody painted, and there are none. Paint a few slices, "
        "not every one; to train on a complete mask, choose the method supervised; or add an image nobody painted."
        + (f" {reason}" if reason else "")
    )


class WholeVolumes(Sequence):
    """``Trainer.volumes``: the images normalised whole, one at a time, when asked for, each in its stored
    voxel order (``to_stored(index, volume)`` turns a volume the trainer reads turned back)."""

    def __init__(self, images: list[NormalizedVolume], to_stored: Callable[[int, np.ndarray], np.ndarray]):
        self._images, self._to_stored = images, to_stored

    def __len__(self) -> int:
        return len(self._images)

    def __getitem__(self, index: int | slice) -> np.ndarray | list[np.ndarray]:
        if isinstance(index, slice):
            return [self[i] for i in range(len(self._images))[index]]
        index = range(len(self._images))[index]  # negative indices count from the end, as before
        return self._to_stored(index, self._images[index].whole())

"""What the user should know about their labels and volumes before trusting the result (``Trainer.advice``).

One painted slice (how far it reaches), classes named but painted nowhere, and volumes nobody painted
whose slices are stored turned or mirrored against the painted ones'. Each note says what to do.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from napari_action.data.annotations import SparseAnnotation
from napari_action.io.geometry import VoxelGeometry, turned_message

__all__ = [
    "NAMES_SHOWN",
    "SINGLE_SLICE_REACH_MM",
    "label_advice",
    "single_slice_advice",
    "turned_volume_notes",
    "unpainted_class_advice",
]


#: How far one painted slice predicts well: Colin27 (1 mm slices; docs/benchmarks.md, k = 1) scored Dice 0.8
#: within 3 mm of the painted slice, 0.6 at 4-8 mm, 0.2-0.3 at 9-16 mm.
SINGLE_SLICE_REACH_MM = 3.0


def single_slice_advice(annotation: SparseAnnotation, spacings: Sequence[Sequence[float]] | None = None) -> str | None:
    """A warning when fewer than two labeled slices hold paint, else None (``spacings``: each volume's voxel size)."""
    painted = [
        v
        for v in range(annotation.num_volumes)
        for s in annotation.labeled_slices(v)
        if (annotation.target(v, s) > 0).any()
    ]
    if len(painted) >= 2:
        return None
    missing = "a structure missing from it is never found: paint a slice near each end of the structures."
    thickness = float(spacings[painted[0]][annotation.axis]) if painted and spacings is not None else 0.0
    if thickness > SINGLE_SLICE_REACH_MM:
        # "A few slices away" would promise the neighbours of a thick slice, which lie beyond that reach.
        return (
            f"With a single painted slice, every other slice is a rough guess (one painted slice predicts well "
            f"only within about {SINGLE_SLICE_REACH_MM:g} mm, and these slices are {thickness:g} mm thick), and "
            + missing
        )
    return f"With a single painted slice, slices more than a few away from it are rough guesses and {missing}"


#: Classes named one by one in :func:`unpainted_class_advice`; the others are counted.
NAMES_SHOWN = 8


def label_advice(
    annotation: SparseAnnotation, class_names: Mapping[int, str], spacings: Sequence[Sequence[float]] | None = None
) -> list[str]:
    """The notes about the painted labels themselves: one painted slice, named classes painted nowhere."""
    one_slice = single_slice_advice(annotation, spacings)
    notes = (one_slice, unpainted_class_advice(class_names, annotation.class_values))
    return [note for note in notes if note]


def unpainted_class_advice(class_names: Mapping[int, str], learned: Sequence[int]) -> str | None:
    """A note naming the classes given a name but painted on no slice, else None.

    The network has one output per painted value, so such a class is never predicted, exported or
    flagged missing: with an atlas's worth of names, dozens went without a word.
    """
    known = {int(value) for value in learned}
    absent = [name or f"class {value}" for value, name in sorted(class_names.items()) if value not in known]
    if not absent:
        return None
    shown = ", ".join(absent[:NAMES_SHOWN])
    if len(absent) > NAMES_SHOWN:
        shown += f" and {len(absent) - NAMES_SHOWN} more"
    counted = "1 named class is" if len(absent) == 1 else f"{len(absent)} named classes are"
    return (
        f"{counted} on no painted slice, so the model does not learn them and no prediction or export will "
        f"hold them: {shown}. Paint each on a slice where it shows (while training runs, it joins at once)."
    )


def turned_volume_notes(
    world: Sequence[np.ndarray], annotation: SparseAnnotation, names: Sequence[str] | None = None
) -> list[str]:
    """A note for each volume nobody painted whose slices show the anatomy mirrored or turned against the
    painted volumes' (another voxel order in-plane: LPS beside RAS). ``world`` is in the training voxel order:
    the trainer turns every volume whose order it can name (:mod:`~napari_action.training.volume_turns`), so
    this names only those it cannot (an oblique scan with two axes along one world axis), which are taken as
    stored: the MNI152 template stored LPS beside Colin27 (RAS) scored mean Dice 0.13 as stored, 0.64
    reoriented (3 seeds)."""
    painted = annotation.painted_volumes
    if not painted or len(world) == 0:
        return []
    geometries = [VoxelGeometry.from_matrix(np.asarray(affine)) for affine in world]
    references = [geometries[index] for index in painted]
    notes = []
    for index, geometry in enumerate(geometries):
        if index in painted:
            continue
        called = names[index] if names and index < len(names) else f"volume {index + 1}"
        then = "open it again: ACTION learns from it and predicts it as stored"
        note = turned_message(called, geometry, references, annotation.axis, then=then)
        if note is not None:  # None: stored as the painted volumes are
            notes.append(note)
    return notes

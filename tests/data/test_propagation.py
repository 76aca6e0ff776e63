"""Image-guided propagation of painted slices, on moving shapes whose truth is known."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from napari_action.data.annotations import SparseAnnotation
from napari_action.data.interpolation import interpolate_labels
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import PropagationPrior, build_priors, iter_prior_runs
from napari_action.data.propagation import (
    PropagationSettings,
    iter_pieces,
    iter_propagation,
    propagate_class_slices,
    propagate_labels,
)

SIZE = 48
DEPTH = 21
THICK = (5.0, 1.0, 1.0)  # slices 5 times thicker than their pixels


def disc(radius: float, centre: tuple[float, float]) -> np.ndarray:
    yy, xx = np.mgrid[:SIZE, :SIZE]
    return np.hypot(yy - centre[0], xx - centre[1]) <= radius


def winding_tube(depth: int = DEPTH, start: int = 0, stop: int | None = None, seed: int = 0):
    """A bright tube (label 1) whose centre swings sideways and back along axis 0, plus noise.

    Shape interpolation between its two ends sees the same disc at both and
    draws a straight tube; the image shows where it went.
    """
    stop = depth if stop is None else stop
    truth = np.zeros((depth, SIZE, SIZE), np.uint8)
    for z in range(start, stop):
        swing = 10.0 * np.sin(np.pi * (z - start) / max(stop - start - 1, 1))
        truth[z][disc(7, (SIZE / 2, SIZE / 2 - 5 + swing))] = 1
    image = np.where(truth > 0, 200.0, 60.0) + np.random.default_rng(seed).normal(0, 8, truth.shape)
    return image.astype(np.float32), truth


def dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / max(np.count_nonzero(a) + np.count_nonzero(b), 1)


def painted(truth: np.ndarray, slices, axis: int = 0) -> np.ndarray:
    out = np.zeros_like(truth)
    index = [slice(None)] * 3
    for s in slices:
        index[axis] = s
        out[tuple(index)] = truth[tuple(index)]
    return out


def test_labels_follow_the_image_where_shape_interpolation_goes_straight():
    image, truth = winding_tube()
    sparse = painted(truth, (0, DEPTH - 1))
    propagated = propagate_labels(image, sparse, axis=0)
    interpolated = interpolate_labels(sparse, axis=0)
    middle = slice(5, DEPTH - 5)  # where the tube has swung furthest
    assert dice(propagated[middle] == 1, truth[middle] == 1) > 0.85
    assert dice(interpolated[middle] == 1, truth[middle] == 1) < 0.5


def test_the_flow_is_smoothed_at_the_scale_of_a_structure_not_beyond():
    image, truth = winding_tube()
    sparse = painted(truth, (0, DEPTH - 1))
    middle = slice(5, DEPTH - 5)
    scores = {}
    for sigma in (0.0, 2.0, 40.0):
        result = propagate_labels(image, sparse, axis=0, settings=PropagationSettings(flow_smoothing=sigma))
        scores[sigma] = dice(result[middle] == 1, truth[middle] == 1)
    # The default (2 px) keeps the tube's motion; smoothed over the whole slice, the static
    # background's zero flow drowns it and the label stays behind.
    assert PropagationSettings().flow_smoothing == 2.0
    assert scores[2.0] > 0.85 and scores[0.0] > 0.85
    assert scores[40.0] < scores[2.0] - 0.2


def test_painted_slices_keep_their_labels_and_the_input_is_untouched():
    image, truth = winding_tube()
    sparse = painted(truth * 7, (0, 10, DEPTH - 1))
    before = sparse.copy()
    result = propagate_labels(image, sparse, axis=0)
    for s in (0, 10, DEPTH - 1):
        np.testing.assert_array_equal(result[s], sparse[s])
    np.testing.assert_array_equal(sparse, before)
    assert result.dtype == sparse.dtype and set(np.unique(result)) == {0, 7}


def test_between_painted_slices_a_structure_ends_where_the_image_changes_not_half_way():
    # A bright tube on slices 0-6 only: painted on slice 0 (present) and 20 (absent). Blended by
    # distance alone it would reach half way; the carried image stops matching on slice 7.
    image, truth = winding_tube(depth=DEPTH, start=0, stop=7)
    sparse, ends = painted(truth, (0, DEPTH - 1)), (0, DEPTH - 1)
    result = propagate_labels(image, sparse, axis=0, labeled_slices=ends)
    distance_only = PropagationSettings(appearance_tolerance=0.0)
    by_distance = propagate_labels(image, sparse, axis=0, labeled_slices=ends, settings=distance_only)
    assert PropagationSettings().appearance_tolerance == 0.1
    assert dice(result[1:7] == 1, truth[1:7] == 1) > 0.95
    assert not result[7:].any()
    assert by_distance[7:10].any(axis=(1, 2)).all()  # by distance alone it runs on towards half way
    assert dice(by_distance[1:7] == 1, truth[1:7] == 1) < dice(result[1:7] == 1, truth[1:7] == 1)


def test_on_thick_slices_the_blend_between_painted_slices_stays_by_distance():
    image, truth = winding_tube(depth=DEPTH, start=0, stop=7)
    sparse, ends = painted(truth, (0, DEPTH - 1)), (0, DEPTH - 1)
    distance_only = PropagationSettings(appearance_tolerance=0.0)
    np.testing.assert_array_equal(
        propagate_labels(image, sparse, axis=0, spacing=THICK, labeled_slices=ends),
        propagate_labels(image, sparse, axis=0, spacing=THICK, labeled_slices=ends, settings=distance_only),
    )


def test_a_structure_is_carried_beyond_the_painted_range_and_fades_with_distance():
    image, truth = winding_tube(depth=40, start=0, stop=40)
    sparse = painted(truth, (18, 22))
    result = propagate_labels(image, sparse, axis=0, spacing=(1.0, 1.0, 1.0))
    radius = np.sqrt(np.count_nonzero(truth[18]) / np.pi)  # mm: a structure keeps half its weight that far out
    assert dice(result[14] == 1, truth[14] == 1) > 0.8  # 4 slices beyond the first painted one
    assert not result[: 18 - int(2 * radius)].any()  # far beyond: nothing rather than a guess
    # Thicker slices: the same number of slices is further in mm, so less is carried.
    thick = propagate_labels(image, sparse, axis=0, spacing=(3.0, 1.0, 1.0))
    assert np.count_nonzero(thick[:18]) < np.count_nonzero(result[:18])


def test_on_thick_slices_a_structure_ends_where_it_no_longer_stands_out_from_its_surroundings():
    image, truth = winding_tube(depth=30, start=8, stop=13)  # ends flat after slice 12: nothing on 13
    sparse = painted(truth, (8, 12))
    ended = propagate_labels(image, sparse, axis=0, spacing=THICK)
    faded = propagate_labels(image, sparse, axis=0, spacing=THICK, settings=PropagationSettings(end_contrast=0.0))
    assert faded[13].any() and faded[7].any()  # fading with distance alone carries it a slice too far
    assert not ended[13].any() and not ended[7].any()
    np.testing.assert_array_equal(ended[8:13], faded[8:13])
    # Where the structure goes on, it keeps its contrast and is carried as before.
    image, truth = winding_tube(depth=30, start=0, stop=30)
    sparse = painted(truth, (8, 12))
    on = propagate_labels(image, sparse, axis=0, spacing=THICK)
    assert dice(on[13] == 1, truth[13] == 1) > 0.8
    np.testing.assert_array_equal(
        on, propagate_labels(image, sparse, axis=0, spacing=THICK, settings=PropagationSettings(end_contrast=0.0))
    )


def walled_cavity(walled: bool, depth: int = 30, start: int = 8, stop: int = 13, seed: int = 0, muscle: float = 50.0):
    """A bright cavity (label 2) on slices ``start``..``stop - 1``, walled by dark muscle (label 1) when
    ``walled``; its bright blood goes on past ``stop`` as an unlabeled pool, as a ventricle opens into
    its atrium above a heart's base."""
    truth = np.zeros((depth, SIZE, SIZE), np.uint8)
    image = np.full(truth.shape, 100.0)
    cavity, wall = disc(7, (SIZE / 2, SIZE / 2)), disc(11, (SIZE / 2, SIZE / 2)) & ~disc(7, (SIZE / 2, SIZE / 2))
    for z in range(start, depth):
        image[z][cavity] = 200.0
        if z < stop:
            truth[z][cavity] = 2
            if walled:
                truth[z][wall] = 1
                image[z][wall] = muscle
    image += np.random.default_rng(seed).normal(0, 8, truth.shape)
    return image.astype(np.float32), truth


def test_on_thick_slices_a_walled_structure_ends_where_its_wall_does():
    image, truth = walled_cavity(walled=True)
    result = propagate_labels(image, painted(truth, (8, 12)), axis=0, spacing=THICK)
    # The pool above still stands out from the tissue around it (200 over 100, two thirds of the painted
    # contrast), but the muscle that walled it is gone: the cavity ends with it.
    assert not result[13].any()
    assert dice(result[9:12] == 2, truth[9:12] == 2) > 0.9
    # The slice where the anatomy ended it is known background, not left uncovered.
    runs = list(iter_propagation(lambda z: image[z], len(image), {8: truth[8], 12: truth[12]}, 3, THICK))
    assert any(run.start <= 13 < run.start + len(run.classes) for run in runs)
    # The same cavity without a wall is carried on, as any structure that keeps its contrast.
    image, truth = walled_cavity(walled=False)
    unwalled = propagate_labels(image, painted(truth, (8, 12)), axis=0, spacing=THICK)
    assert np.count_nonzero(unwalled[13] == 2) > 100


def test_a_wall_that_ends_is_not_kept_by_the_bright_blood_it_surrounded():
    # Muscle only a little darker than the tissue around it (75 in 100), blood far brighter (200). Past
    # the base the muscle's region is tissue: against the ring outside it, its contrast is gone; a ring
    # that also took in the blood inside it would keep half of it, and carry the wall, and with it the
    # cavity, into the pool above (the phantom's heart painted on its base slice).
    image, truth = walled_cavity(walled=True, muscle=75.0)
    result = propagate_labels(image, painted(truth, (8, 12)), axis=0, spacing=THICK)
    assert not result[13].any()
    assert dice(result[9:12] == 1, truth[9:12] == 1) > 0.8


def test_on_thin_slices_structures_fade_with_distance_only():
    image, truth = winding_tube(depth=30, start=8, stop=13)
    sparse = painted(truth, (8, 12))
    thin = (2.5, 1.0, 1.0)  # 2.5 times: below the thick-slice ratio
    default = propagate_labels(image, sparse, axis=0, spacing=thin)
    assert default[13].any()
    np.testing.assert_array_equal(
        default, propagate_labels(image, sparse, axis=0, spacing=thin, settings=PropagationSettings(end_contrast=0.0))
    )


def test_nothing_is_carried_beyond_with_extent_zero():
    image, truth = winding_tube(depth=30)
    sparse = painted(truth, (10, 20))
    result = propagate_labels(image, sparse, axis=0, settings=PropagationSettings(extent=0.0))
    assert not result[:10].any() and not result[21:].any()
    assert result[11:20].any()


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_any_slicing_axis_and_label_values_give_the_same_result(axis):
    image, truth = winding_tube()
    values = truth.astype(np.uint32) * 70000
    sparse = painted(values, (0, DEPTH - 1))
    reference = propagate_labels(image, sparse, axis=0)
    moved = propagate_labels(np.moveaxis(image, 0, axis), np.moveaxis(sparse, 0, axis), axis=axis)
    np.testing.assert_array_equal(np.moveaxis(moved, axis, 0), reference)
    assert moved.dtype == np.uint32 and set(np.unique(moved)) == {0, 70000}


def test_runs_come_painted_first_then_outwards_then_between_and_cover_each_slice_once():
    image, truth = winding_tube(depth=30)
    targets = {10: truth[10].astype(np.int64), 20: truth[20].astype(np.int64)}
    read = []
    runs = list(iter_propagation(lambda z: read.append(z) or image[z], 30, targets, 2))
    assert [r.start for r in runs[:2]] == [10, 20]
    # Outwards from the painted range in short runs first (a preview grows at once), the interval last, whole.
    assert runs[2].stop == 10 and runs[2].stop - runs[2].start < 10
    assert (runs[-1].start, runs[-1].stop) == (11, 20)
    covered = [z for r in runs for z in range(r.start, r.stop)]
    assert len(covered) == len(set(covered))
    assert set(read) <= set(range(30))  # slices are read one at a time, never the whole volume
    result = propagate_class_slices(image.__getitem__, 30, targets, 2)
    assert result.covered[10:21].all() and result.distance[15] == 5
    assert result.slice_confidence[10] == 1.0 and 0 < result.slice_confidence[15] <= 1.0
    assert result.confidence_at(29).max() == 0 or result.covered[29]


def test_bad_input_is_refused_with_a_reason():
    image, truth = winding_tube()
    with pytest.raises(ValueError, match="Nothing is painted"):
        propagate_labels(image, np.zeros_like(truth), axis=0)
    with pytest.raises(ValueError, match="one shape"):
        propagate_labels(image[:-1], truth, axis=0)
    with pytest.raises(ValueError, match="outside"):
        propagate_class_slices(image.__getitem__, DEPTH, {DEPTH: truth[0]}, 2)
    with pytest.raises(ValueError, match="window_radius"):
        PropagationSettings(window_radius=0)
    with pytest.raises(ValueError, match="flow_smoothing"):
        PropagationSettings(flow_smoothing=-1.0)
    with pytest.raises(ValueError, match="appearance_tolerance"):
        PropagationSettings(appearance_tolerance=-0.1)


def test_priors_are_kept_for_volumes_whose_labels_did_not_change():
    image, truth = winding_tube(depth=30)
    volumes = [NormalizedVolume(image, None), NormalizedVolume(image.copy(), None)]
    first = SparseAnnotation([painted(truth, (10, 20)), painted(truth, (12,))], [image.shape] * 2, axis=0)
    priors = build_priors(first, volumes, "propagation")
    assert all(isinstance(p, PropagationPrior) for p in priors.values())
    second = SparseAnnotation([painted(truth, (10, 20)), painted(truth, (12, 16))], [image.shape] * 2, axis=0)
    again = build_priors(second, volumes, "propagation", previous=priors)
    assert again[0] is priors[0] and again[1] is not priors[1]
    # Run by run as computed, then the whole is known without computing again.
    runs = list(iter_prior_runs(again[1]))
    assert runs and again[1].covered[12:17].all()
    interpolated = build_priors(second, volumes, "interpolation")
    assert interpolated[0].covered[10:21].all() and not interpolated[0].covered[21:].any()
    assert build_priors(second, volumes, "propagation") is not None
    with pytest.raises(ValueError, match="prior source"):
        build_priors(second, volumes, "registration")


class ReadLog:
    """An image read through ``[]`` (as a zarr array is) that notes which slices along axis 0 were read."""

    def __init__(self, data: np.ndarray):
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.slices: set[int] = set()
        self.threads: set[str] = set()

    def __getitem__(self, key):
        self.threads.add(threading.current_thread().name)
        first = key[0] if isinstance(key, tuple) else key
        self.slices.update(range(*first.indices(self.shape[0])) if isinstance(first, slice) else [int(first)])
        return np.asarray(self.data[key])


def test_a_stroke_recomputes_only_the_pieces_next_to_the_changed_slice():
    image, truth = winding_tube(depth=40, start=2, stop=38)
    log = ReadLog(image)
    volume = NormalizedVolume(log, None)
    before = SparseAnnotation([painted(truth, (8, 18, 28))], [image.shape], axis=0)
    priors = build_priors(before, [volume], "propagation")
    first = priors[0].result
    corrected = painted(truth, (8, 18, 28))
    corrected[28, 21:27, 23:29] = 0  # the user rubs out a few voxels of the tube on slice 28
    after = SparseAnnotation([corrected], [image.shape], axis=0)
    log.slices.clear()
    updated = build_priors(after, [volume], "propagation", previous=priors)[0]
    result = updated.result

    assert min(log.slices) >= 18  # slices 0-17 (the pieces from 8 and between 8 and 18) were not read again
    scratch = build_priors(after, [NormalizedVolume(image, None)], "propagation")[0].result
    np.testing.assert_array_equal(result.classes(), scratch.classes())
    np.testing.assert_array_equal(result.covered, scratch.covered)
    for z in np.flatnonzero(result.covered):
        np.testing.assert_allclose(result.confidence_at(z), scratch.confidence_at(z), atol=1e-3)
    assert not np.array_equal(result.classes()[28], first.classes()[28])  # the stroke is there


def test_a_second_reader_of_the_runs_gets_the_whole_prior_not_only_what_is_left():
    image, truth = winding_tube(depth=30)
    annotation = SparseAnnotation([painted(truth, (10, 20))], [image.shape], axis=0)
    prior = build_priors(annotation, [NormalizedVolume(image, None)], "propagation")[0]
    first_reader = prior.iter_runs()
    next(first_reader)  # the preview has shown one run; then training needs the whole prior
    covered = prior.covered.copy()
    list(first_reader)  # the first reader finishes
    shown = [z for run in prior.iter_runs() for z in range(run.start, run.stop)]  # a later one, from the start
    assert sorted(shown) == list(np.flatnonzero(covered))  # every slice once, none missing
    for run in prior.iter_runs():
        np.testing.assert_array_equal(run.classes[0], prior.classes_at(run.start))


def _by_piece(runs) -> dict:
    """Each piece's runs as (start, stop, classes, confidence), in the order they came; its end (None) last."""
    pieces: dict = {}
    for made in runs:
        run = made.run
        pieces.setdefault(made.piece, []).append(
            None if run is None else (run.start, run.stop, run.classes, run.confidence)
        )
    return pieces


def test_pieces_computed_side_by_side_are_those_computed_one_after_the_other():
    image, truth = winding_tube(depth=40, start=2, stop=38)
    targets = {s: truth[s].astype(np.int64) for s in (8, 18, 28)}
    alone = _by_piece(iter_pieces(image.__getitem__, 40, targets, 2))
    side_by_side = _by_piece(iter_pieces(image.__getitem__, 40, targets, 2, workers=3))
    assert set(side_by_side) == set(alone)  # same pieces; their runs may interleave
    for piece, runs in alone.items():
        assert runs[-1] is None and None not in runs[:-1]  # the piece's end comes after its runs
        assert side_by_side[piece][-1] is None
        assert [r[:2] for r in side_by_side[piece][:-1]] == [r[:2] for r in runs[:-1]]  # same runs, in order
        for (*_, classes, confidence), (*_, classes_alone, confidence_alone) in zip(
            side_by_side[piece][:-1], runs[:-1], strict=True
        ):
            np.testing.assert_array_equal(classes, classes_alone)
            np.testing.assert_array_equal(confidence, confidence_alone)


def test_side_by_side_a_run_is_given_as_soon_as_it_is_made_not_once_its_piece_is_whole():
    image, truth = winding_tube(depth=60, start=2, stop=58)
    targets = {s: truth[s].astype(np.int64) for s in (20, 40)}
    given_beyond = threading.Event()
    far_reads = []

    def read(z):
        if z <= 11 or z >= 49:  # beyond the first run of 8 slices: only once a nearer run was given to the reader
            far_reads.append(z)
            assert given_beyond.wait(timeout=60), "the piece's first run was held back until the piece was whole"
        return image[z]

    kinds = []
    far = PropagationSettings(extent=4.0)  # carried well beyond: runs of 8 slices, several per piece
    for made in iter_pieces(read, 60, targets, 2, settings=far, workers=2):
        if made.run is None:
            continue
        kinds.append(made.piece.kind)
        if made.piece.kind == "beyond":
            given_beyond.set()
    assert kinds[:2] == ["painted", "painted"] and kinds[2] == "beyond" and kinds[-1] == "between"
    assert far_reads  # the carry did go that far


def test_an_error_in_a_worker_is_raised_to_the_reader():
    image, truth = winding_tube(depth=40, start=2, stop=38)
    targets = {s: truth[s].astype(np.int64) for s in (8, 18, 28)}

    def read(z):
        if z == 12:
            raise OSError("the scan's disk went away")
        return image[z]

    with pytest.raises(OSError, match="disk went away"):
        list(iter_pieces(read, 40, targets, 2, workers=2))


def test_a_prior_uses_the_threads_torch_was_given_and_reads_a_lazy_image_safely():
    image, truth = winding_tube(depth=40, start=2, stop=38)
    annotation = SparseAnnotation([painted(truth, (8, 18, 28))], [image.shape], axis=0)
    alone = build_priors(annotation, [NormalizedVolume(image, None)], "propagation")[0].result
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        # A lazy image (read through [] as zarr is) goes through the volume's slice cache from both threads.
        log = ReadLog(image)
        prior = build_priors(annotation, [NormalizedVolume.sampled(log, axis=0)], "propagation")[0]
        exact = build_priors(annotation, [NormalizedVolume.exact(image)], "propagation")[0]
        side_by_side, reference = prior.result, exact.result
    finally:
        torch.set_num_threads(threads)
    assert any(name.startswith("propagation") for name in log.threads)  # computed by the pool's threads
    np.testing.assert_array_equal(side_by_side.classes(), reference.classes())
    np.testing.assert_array_equal(alone.covered, reference.covered)


def test_a_reader_that_stops_early_does_not_wait_for_the_pieces_in_hand():
    image, truth = winding_tube(depth=40, start=2, stop=38)
    targets = {s: truth[s].astype(np.int64) for s in (8, 18, 28)}
    runs = iter_pieces(image.__getitem__, 40, targets, 2, workers=2)
    made = next(runs)
    assert made.piece.kind == "painted" and made.run.start in (8, 18, 28)
    runs.close()  # Stop: the pool is let go; nothing raises

"""Volumes stored in another voxel order than the painted one: read in its order, given back in their own.

The MNI152 template stored LPS beside a painted Colin27 (RAS) scored mean Dice 0.13 read as stored and 0.64
reoriented; the trainer now reorients it itself, and everything it hands out for that volume must land on the
user's voxels as stored.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_action.io.reoriented import Reorientation
from napari_action.progress import AnnotationUpdate, FocusRequest, PredictionUpdate, SlicePrediction
from napari_action.training.trainer import Trainer
from napari_action.training.volume_turns import VolumeTurns
from tests.helpers.engine import sparse, tiny_config

SHAPE = (32, 28, 10)
RAS = np.diag([1.0, 1.0, 3.0, 1.0])
LPS = np.diag([-1.0, -1.0, 3.0, 1.0])  # the same voxels mirrored left-right and front-back


def _turns(turn: Reorientation, training_shape=(4, 5, 6)):
    """A training-order volume of distinct values, the stored volume it comes from, and the turns of both volumes."""
    training = np.arange(np.prod(training_shape), dtype=np.int32).reshape(training_shape)
    stored = turn.to_stored(training)
    return training, stored, VolumeTurns([None, turn], [training_shape, stored.shape])


@pytest.mark.parametrize("axes", list(itertools.permutations(range(3))))
@pytest.mark.parametrize("flips", [(False, False, False), (True, False, True), (False, True, True)])
def test_a_streamed_run_of_slices_lands_on_the_stored_voxels_it_was_predicted_for(axes, flips):
    turn = Reorientation(axes, flips)
    training, stored, turns = _turns(turn)
    for axis in range(3):
        run = np.moveaxis(training, axis, 0)[1:3]
        [out] = turns.slices_out([SlicePrediction(1, axis, 1, run, -run.astype(np.float32))])
        assert out.axis == axes[axis]
        np.testing.assert_array_equal(np.moveaxis(stored, out.axis, 0)[out.start : out.stop], out.labels)
        np.testing.assert_array_equal(-out.confidence, out.labels)  # the confidence goes with its labels
    untouched = SlicePrediction(0, 2, 0, training[None, :, :, 0], training[None, :, :, 0].astype(np.float32))
    assert turns.slices_out([untouched])[0] is untouched  # a volume taken as stored passes as it is


def test_a_whole_volume_prediction_comes_back_in_the_stored_order():
    turn = Reorientation((2, 0, 1), (True, False, True))
    training, stored, turns = _turns(turn)
    entropy = training.astype(np.float32)
    [update] = turns.updates_out([PredictionUpdate(1, 6, 6, done=True, labels=training, entropy=entropy, axis=1)])
    np.testing.assert_array_equal(update.labels, stored)
    assert update.axis == 0  # its slices lie along stored axis 0: the quality record and uncertainty go along it
    np.testing.assert_array_equal(update.entropy, stored.astype(np.float32))
    assert update.confidence is None and update.labels.flags.c_contiguous
    running = PredictionUpdate(1, 2, 6)
    assert next(turns.updates_out([running])) is running


def test_the_slice_the_user_looks_at_is_the_mirrored_training_slice_along_the_axis_it_lies_on_as_stored():
    mirrored = VolumeTurns([None, Reorientation((0, 1, 2), (True, True, True))], [(4, 5, 6), (4, 5, 6)])
    assert mirrored.focus(FocusRequest(1, 1), axis=2) == FocusRequest(1, 4)
    assert mirrored.focus(FocusRequest(0, 1), axis=2) == FocusRequest(0, 1)
    assert mirrored.labeled_slices({1: [0, 5], 0: [3]}, axis=2) == {1: [5, 0], 0: [3]}
    # Training axis 2 lies along stored axis 0 (6 slices), reversed: the user's slice 1 there is training slice 4.
    swapped = VolumeTurns([None, Reorientation((2, 1, 0), (False, False, True))], [(4, 5, 6), (6, 5, 4)])
    assert swapped.stored_axis(1, 2) == 0 and swapped.stored_axis(0, 2) == 2
    assert swapped.focus(FocusRequest(1, 1), axis=2) == FocusRequest(1, 4)
    assert swapped.labeled_slices({1: [0, 3]}, axis=2) == {1: [5, 2]}


def _off_centre(seed: int = 0):
    """A bright disc (1) left of and behind a dark square (2) on every axial slice: mirrored, they swap places."""
    rng = np.random.default_rng(seed)
    truth = np.zeros(SHAPE, np.uint8)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    truth[np.hypot(yy - 9, xx - 8) < 5] = 1
    truth[20:28, 15:24] = 2
    image = np.choose(truth, [100.0, 300.0, 40.0]) + rng.normal(0, 10, SHAPE)
    return image.astype(np.float32), truth


def test_a_volume_nobody_painted_stored_mirrored_is_read_in_the_painted_order_and_answered_in_its_own():
    image, truth = _off_centre()
    mirrored = image[::-1, ::-1].copy()  # the same anatomy stored LPS: every voxel keeps its world position
    # The painted volume's prior carried onto it by registration: its preview, in its stored order too.
    config = tiny_config(unpainted_prior="registration")
    trainer = Trainer([image, mirrored], [sparse(truth)], config, affines=[RAS, LPS])
    assert trainer.turns.turned(1) and not trainer.turns.turned(0)
    # The network sees the two volumes alike; the user's arrays stay as they were given.
    np.testing.assert_allclose(trainer.images[1].whole(), trainer.images[0].whole())
    np.testing.assert_allclose(trainer.volumes[1], trainer.volumes[0][::-1, ::-1])
    preview = {p.volume_index: p for run in trainer.iter_preview() for p in run if p.start <= 4 < p.stop}
    np.testing.assert_array_equal(preview[1].labels[4 - preview[1].start], truth[::-1, ::-1, 4])
    streamed = [p for progress in trainer.iter_train() for p in progress.predictions if p.volume_index == 1]
    assert streamed and all(p.labels.shape[1:] == SHAPE[:2] for p in streamed)
    result = [u for u in trainer.predict_volume(1) if u.done][0].labels
    painted = [u for u in trainer.predict_volume(0) if u.done][0].labels
    # The painted volume's result mirrored, where the structures are as stored (the disc and the square swap sides).
    found = (result > 0) | (painted[::-1, ::-1] > 0)
    assert found.any() and np.mean(result[found] == painted[::-1, ::-1][found]) > 0.95
    assert np.mean(result[found] == painted[found]) < 0.5


def test_a_correction_painted_on_the_mirrored_volume_trains_on_the_slice_it_was_painted_on():
    image, truth = _off_centre()
    mirrored_truth = truth[::-1, ::-1]
    trainer = Trainer([image, image[::-1, ::-1].copy()], [sparse(truth)], tiny_config(), affines=[RAS, LPS])
    corrected = np.zeros(SHAPE, np.uint8)
    corrected[:, :, 5] = mirrored_truth[:, :, 5]
    generator = trainer.iter_train()
    next(generator)
    generator.send(AnnotationUpdate((sparse(truth), corrected)))
    assert trainer.annotation.labeled_slices(1) == [5]
    # In the painted order the mirrored correction is the truth itself (values 1 and 2 are classes 1 and 2).
    np.testing.assert_array_equal(trainer.annotation.target(1, 5), truth[:, :, 5])
    assert not np.shares_memory(trainer.annotation.target(1, 5), corrected)  # the user's labels stay theirs
    generator.close()


def test_a_painted_volume_stored_mirrored_is_turned_with_its_paint():
    image, truth = _off_centre()
    painted = [sparse(truth), sparse(truth)[::-1, ::-1].copy()]
    both = Trainer([image, image[::-1, ::-1].copy()], painted, tiny_config(), affines=[RAS, LPS])
    assert both.turns.turned(1)
    np.testing.assert_array_equal(both.annotation.target(1, 2), both.annotation.target(0, 2))


# Stored with its axial slices along its first array axis: the same voxels as the RAS image, axes moved.
SAL = np.array([[0.0, 1.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [3.0, 0.0, 0.0, 0.0], [0, 0, 0, 1.0]])


def test_a_scan_stored_with_its_axial_slices_along_another_axis_is_sliced_axially_painted_or_not():
    image, truth = _off_centre()
    across, across_truth = (np.moveaxis(a, 2, 0).copy() for a in (image, truth))
    unpainted = Trainer([image, across], [sparse(truth), None], tiny_config(), affines=[RAS, SAL])
    assert unpainted.turns.turned(1) and unpainted.axis == 2
    np.testing.assert_allclose(unpainted.images[1].whole(), unpainted.images[0].whole())
    # Axial slices painted on both scans, along array axis 2 of one and axis 0 of the other: one slicing axis,
    # where as stored the paint of the second crossed every slice of the first's axis (and was refused or misread).
    across_paint = np.zeros_like(across_truth)
    across_paint[[4, 8]] = across_truth[[4, 8]]
    both = Trainer([image, across], [sparse(truth), across_paint], tiny_config(), affines=[RAS, SAL])
    assert both.axis == 2 and both.annotation.labeled_slices(1) == [4, 8]
    np.testing.assert_array_equal(both.annotation.target(1, 4), truth[:, :, 4])
    assert not [note for note in both.advice if "crosses" in note]

"""Tests for napari_action.training.stream_schedule: when to stream, which slices, and what is streamed."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_action.inference.postprocess import trim_beyond_extents
from napari_action.inference.predictor import Predictor
from napari_action.networks.unet import UNet
from napari_action.progress import SlicePrediction
from napari_action.training.stream_schedule import StreamCursor

NEVER = 1e9  # seconds: a time trigger that never fires within a test


def sweep(cursor: StreamCursor, calls: int) -> list[tuple[int, int, int]]:
    return [cursor.next_range() for _ in range(calls)]


def test_due_every_n_steps_counted_from_the_last_stream():
    cursor = StreamCursor([10], chunk=4)
    assert [step for step in range(1, 10) if cursor.due(step, 3, NEVER)] == [3, 6, 9]


def test_due_after_enough_seconds_and_the_clock_restarts():
    cursor = StreamCursor([10], chunk=4)
    assert not cursor.due(1, 100, 60.0)
    time.sleep(0.3)
    assert cursor.due(2, 100, 0.25)  # 0.3 s have passed: due by time, far from 100 steps
    assert not cursor.due(3, 100, 0.25)  # the clock restarted
    # ...and so did the step count: 2 steps after the timed stream, not 3 since the start.
    assert not cursor.due(3, 2, NEVER) and cursor.due(4, 2, NEVER)


def test_sweep_alternates_volumes_and_advances_through_their_slices():
    cursor = StreamCursor([5, 3], chunk=2)
    assert sweep(cursor, 6) == [(0, 0, 2), (1, 0, 2), (0, 2, 4), (1, 2, 3), (0, 4, 5), (1, 0, 2)]


@pytest.mark.parametrize(("n_slices", "chunk"), [([10, 4, 7], 3), ([1, 6], 4), ([8], 8)])
def test_sweep_covers_every_slice_of_every_volume(n_slices, chunk):
    cursor = StreamCursor(n_slices, chunk)
    # One pass of each volume takes ceil(n / chunk) of its turns; volumes take turns.
    calls = len(n_slices) * max(-(-n // chunk) for n in n_slices)
    covered = [set() for _ in n_slices]
    for volume, start, stop in sweep(cursor, calls):
        assert 0 <= start < stop <= n_slices[volume] and stop - start <= chunk
        covered[volume] |= set(range(start, stop))
    assert covered == [set(range(n)) for n in n_slices]


def test_focus_centres_the_next_chunk_then_the_sweep_resumes():
    cursor = StreamCursor([20, 12], chunk=4)
    assert cursor.next_range() == (0, 0, 4)
    cursor.focus(1, 7)
    assert cursor.next_range() == (1, 5, 9)  # slices 5..8: slice 7 in the middle
    assert sweep(cursor, 2) == [(1, 0, 4), (0, 4, 8)]  # the sweep goes on where it was


@pytest.mark.parametrize(
    ("slice_index", "expected"),
    [(0, (0, 0, 4)), (1, (0, 0, 4)), (-5, (0, 0, 4)), (9, (0, 6, 10)), (8, (0, 6, 10)), (100, (0, 6, 10))],
)
def test_focus_clamps_the_chunk_at_the_ends_of_the_volume(slice_index, expected):
    cursor = StreamCursor([10], chunk=4)
    cursor.focus(0, slice_index)
    assert cursor.next_range() == expected


def test_focus_on_a_volume_shorter_than_a_chunk_streams_it_whole():
    cursor = StreamCursor([3, 10], chunk=8)
    cursor.focus(0, 2)
    assert cursor.next_range() == (0, 0, 3)


def test_focus_on_an_unknown_volume_is_ignored():
    cursor = StreamCursor([6, 6], chunk=2)
    cursor.focus(2, 3)
    cursor.focus(-1, 3)
    assert sweep(cursor, 2) == [(0, 0, 2), (1, 0, 2)]


@pytest.fixture
def predictor(torch_seed) -> Predictor:
    """An untrained 2-wide U-Net with three classes (label values 0, 3, 7), slicing axis 1."""
    return Predictor(UNet(1, 3, base_width=2), [0, 3, 7], axis=1, device="cpu")


def test_predict_streams_the_next_chunk_along_the_predictor_axis(predictor):
    rng = np.random.default_rng(0)
    volumes = [rng.normal(size=(20, 12, 18)).astype(np.float32), rng.normal(size=(16, 6, 24)).astype(np.float32)]
    cursor = StreamCursor([12, 6], chunk=4)
    cursor.focus(0, 10)
    expected_ranges = [(0, 8, 12), (0, 0, 4), (1, 0, 4), (0, 4, 8), (1, 4, 6)]
    for volume, start, stop in expected_ranges:
        (streamed,) = cursor.predict(predictor, volumes)
        assert isinstance(streamed, SlicePrediction)
        assert (streamed.volume_index, streamed.axis, streamed.start, streamed.stop) == (volume, 1, start, stop)
        in_plane = np.delete(volumes[volume].shape, 1)
        assert streamed.labels.shape == streamed.confidence.shape == (stop - start, *in_plane)
        # Exactly those slices, predicted as the predictor predicts them.
        labels, probs = predictor.predict_slices(np.moveaxis(volumes[volume], 1, 0), start, stop)
        np.testing.assert_array_equal(streamed.labels, labels)
        np.testing.assert_array_equal(streamed.confidence, probs.max(axis=1))
        assert set(np.unique(streamed.labels)) <= {0, 3, 7}


def test_fit_gate_opens_once_the_network_fits_the_labeled_slices_and_stays_open():
    from napari_action.training.stream_schedule import FitGate
    from napari_action.training.trainer import Trainer
    from tests.helpers.engine import disc_volume, sparse, tiny_config

    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(method="supervised", steps_stage3=80, lr=0.05))
    closed = FitGate(threshold=0.99)
    assert closed.check(trainer.predictor(), trainer.pool) is not None and not closed.open
    trainer.train()
    gate = FitGate(threshold=0.6, slices_per_check=1)
    fit = gate.check(trainer.predictor(), trainer.pool)
    assert fit >= 0.6 and gate.open
    gate.threshold = 1.1  # a later dip must not close it again
    gate.check(trainer.predictor(), trainer.pool)
    assert gate.open
    assert FitGate(threshold=0.0).open  # no gate: stream at once


class _OneHotPredictor:
    """Takes a slice of class ids for the image and predicts exactly those (one-hot probabilities)."""

    def __init__(self, num_classes: int):
        self.num_classes = num_classes

    def class_probabilities(self, channels, pad, scale=None):
        return np.moveaxis(np.eye(self.num_classes, dtype=np.float32)[channels], -1, 0)


class _FixedPool:
    """Labeled slices whose image is the class map the one-hot predictor is to predict on them."""

    def __init__(self, targets: dict[tuple[int, int], np.ndarray], predicted: dict[tuple[int, int], np.ndarray]):
        self.targets, self.predicted, self.labeled = targets, predicted, list(targets)

    def target(self, v, s):
        return self.targets[v, s]

    def image(self, v, s):
        return self.predicted[v, s]

    def pad_value(self, v):
        return 0.0

    def slice_scale(self, v):
        return None


def test_fit_is_the_mean_foreground_dice_on_supervised_pixels_of_slices_with_foreground():
    from napari_action.training.stream_schedule import FitGate

    targets = {(0, 1): np.array([[-1, 1, 1, 0]]), (0, 2): np.zeros((1, 4), np.int64)}
    predicted = {(0, 1): np.array([[1, 1, 0, 2]]), (0, 2): np.zeros((1, 4), np.int64)}
    gate = FitGate(threshold=0.5, slices_per_check=2)
    fit = gate.check(_OneHotPredictor(3), _FixedPool(targets, predicted))
    # Slice 1 without its ignored pixel: class 1 Dice 2/3, class 2 (predicted only) 0; slice 2 has no foreground.
    assert fit == pytest.approx(1 / 3) and not gate.open


def test_streamed_slices_are_mixed_with_the_prior_as_the_final_prediction_is():
    from napari_action.training.trainer import Trainer
    from tests.helpers.engine import AXIS, PAINTED, disc_volume, sparse, tiny_config

    image, truth = disc_volume(0)
    painted = sparse(truth)
    trainer = Trainer([image], [painted], tiny_config())  # untrained: the network alone knows nothing
    predictor, spacings = trainer.predictor(), trainer.spacings
    cursor = StreamCursor([image.shape[AXIS]], chunk=1)
    cursor.focus(0, PAINTED[0])
    (mixed,) = cursor.predict(predictor, trainer.images, trainer.pool.priors, spacings)
    # On a painted slice the prior is the painting, at full weight: the layer shows what was painted.
    np.testing.assert_array_equal(mixed.labels[0], np.take(painted, PAINTED[0], axis=AXIS))
    cursor.focus(0, PAINTED[0])
    (alone,) = cursor.predict(predictor, trainer.images)
    assert not np.array_equal(alone.labels[0], mixed.labels[0])  # without the prior, the network's guess


def test_the_preview_stays_on_the_slices_it_reaches_and_the_network_fills_the_others():
    from napari_action.training.trainer import Trainer
    from tests.helpers.engine import AXIS, PAINTED, disc_volume, sparse, tiny_config

    image, truth = disc_volume(0)
    # The interpolation reaches only the slices between the painted ones (2 to 7 of 10).
    trainer = Trainer([image], [sparse(truth)], tiny_config(prior_source="interpolation"))
    n_slices = image.shape[AXIS]
    reached = trainer.prior(0).covered
    assert reached[PAINTED[0] : PAINTED[-1] + 1].all() and not reached.all()
    cursor = StreamCursor([n_slices], chunk=n_slices)
    priors, spacings = trainer.pool.priors, trainer.spacings
    streamed = cursor.predict(trainer.predictor(), trainer.images, priors, spacings, skip_reached=True)
    shown = [z for run in streamed for z in range(run.start, run.stop)]
    assert shown == list(np.flatnonzero(~reached))  # every unreached slice, none of the others
    everywhere = cursor.predict(trainer.predictor(), trainer.images, trainer.pool.priors, trainer.spacings)
    assert [(run.start, run.stop) for run in everywhere] == [(0, n_slices)]


def test_a_cut_keeps_streamed_structures_within_the_slices_their_propagation_reaches():
    from napari_action.training.trainer import Trainer
    from tests.helpers.engine import disc_volume, sparse, tiny_config

    # The image shows the disc and ring on all 40 slices; the one painted slice's propagation stops
    # them a few slices away. The network, trained on the painted slice, finds them on every slice.
    # Streamed slices end them only with a cut: too few slices come at a time to watch them taper.
    image, truth = disc_volume(0, shape=(32, 32, 40))
    config = tiny_config(method="supervised", steps_stage3=60, lr=0.05, stream_every_steps=1000, structure_ends="cut")
    trainer = Trainer([image], [sparse(truth, slices=(20,))], config)
    trainer.train()
    extents = trainer.predictor().extents_of(trainer.prior(0))
    cursor = StreamCursor([40], chunk=40)
    (streamed,) = cursor.predict(trainer.predictor(), trainer.images, trainer.pool.priors, trainer.spacings)
    (alone,) = cursor.predict(trainer.predictor(), trainer.images)
    for c in (1, 2):
        beyond = [z for z in range(40) if not extents.first[c] <= z <= extents.last[c]]
        assert beyond and (alone.labels[beyond] == c).any()
        assert not (streamed.labels[beyond] == c).any()
    # The taper, the whole volume in one chunk: as on a whole-volume prediction (the disc keeps its
    # area on every slice, so it narrows nowhere and grows nowhere: kept).
    trainer.config.structure_ends = "network"
    (network,) = cursor.predict(trainer.predictor(), trainer.images, trainer.pool.priors, trainer.spacings)
    trainer.config.structure_ends = "taper"
    (tapered,) = cursor.predict(trainer.predictor(), trainer.images, trainer.pool.priors, trainer.spacings)
    expected = network.labels.copy()
    trim_beyond_extents(expected, extents, trainer.class_values, "taper")
    np.testing.assert_array_equal(tapered.labels, expected)
    # Eight slices at a time, the sweep starting at slice 0: the slices between those and the extent
    # are not streamed yet, so nothing shows the structure narrowing there and it is ended; once they
    # are, the next sweep shows it.
    eight = StreamCursor([40], chunk=8)
    below = range(8)
    assert all(z < extents.first[c] for z in below for c in (1, 2))
    priors, spacings = trainer.pool.priors, trainer.spacings
    sweep = [eight.predict(trainer.predictor(), trainer.images, priors, spacings) for _ in range(6)]
    (first_pass,), (second_pass,) = sweep[0], sweep[5]
    assert np.isin(expected[below], [1, 2]).any() and not np.isin(first_pass.labels, [1, 2]).any()
    np.testing.assert_array_equal(second_pass.labels, expected[below])

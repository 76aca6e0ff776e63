"""The training worker: messages from the GUI reach the trainer between steps, each once and in order.

No viewer and no thread here: the generator that drives the trainer is stepped by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_action._napari.workers import TrainingRun, _drive, _take
from napari_action.progress import AnnotationUpdate, FocusRequest, SlicePrediction, TrainProgress


class _FakeTrainer:
    """Records what ``iter_train`` receives between its steps (each step's progress streams one slice)."""

    class_values = (0, 1)

    def __init__(self, steps: int):
        self.steps = steps
        self.received: list = []

    def iter_train(self):
        for step in range(self.steps):
            command = yield _progress(step)
            self.received.append(command)


def _slice(start: int, confidence: float = 0.75) -> SlicePrediction:
    return SlicePrediction(0, 0, start, np.ones((1, 4, 4), np.uint8), np.full((1, 4, 4), confidence, np.float32))


def _progress(step: int) -> TrainProgress:
    return TrainProgress("stage iii", step, 5, {}, 0.0, 1.0, 0.0, "CPU", predictions=(_slice(step),))


def _steps(steps) -> list[tuple]:
    """(step, messages acknowledged, trainer) of each yielded step."""
    return [(s.progress.step, s.received, s.trainer) for s in steps]


def test_take_supersedes_older_message_of_same_kind():
    queue: list = []
    old, new, focus = AnnotationUpdate(labels=(None,)), AnnotationUpdate(labels=(None,)), FocusRequest(0, 1)
    assert _take([(1, old), (2, focus)], 0, queue) == 2
    assert _take([(1, old), (2, focus), (3, new)], 2, queue) == 3  # 1 and 2 already taken
    assert queue == [focus, new]


def test_drive_delivers_every_message_once_in_order():
    trainer = _FakeTrainer(steps=5)
    gen = _drive(lambda: trainer, background=False)  # built in the worker, handed over first
    ready = next(gen)
    assert ready.progress is None and ready.trainer is trainer
    early, labels, focus = FocusRequest(0, 1), AnnotationUpdate(labels=(None,)), FocusRequest(0, 3)
    assert _steps([gen.send(((1, early),))]) == [(0, 1, None)]  # a fresh iter_train is started with None
    # 1 is resent (its ack had not reached the GUI) and ignored; 3 supersedes the queued focus 1.
    step = gen.send(((1, early), (2, labels), (3, focus)))
    assert _steps([step]) == [(1, 3, None)]
    assert _steps(gen) == [(2, 3, None), (3, 3, None), (4, 3, None)]
    assert trainer.received == [labels, focus, None, None, None]


def test_drive_hands_streamed_slices_over_with_their_uncertainty_scored_in_the_worker():
    trainer = _PreviewingTrainer(steps=1)
    steps = list(_drive(lambda: trainer, background=False, preview=True))
    streamed = [p for s in steps for p in s.preview] + [p for s in steps if s.progress for p in s.progress.predictions]
    assert len(streamed) == 3  # two preview runs, one step's slice
    for prediction in streamed:
        np.testing.assert_allclose(prediction.uncertainty, 0.5)  # (1 - 0.75) * 2 classes / 1
        np.testing.assert_allclose(prediction.slice_scores, [0.5])
        assert prediction.confidence is None  # read by nothing once the uncertainty is made: let go


class _PreviewingTrainer(_FakeTrainer):
    """A trainer whose prior comes in two runs before training."""

    def iter_preview(self):
        yield (_slice(10),)
        yield (_slice(11),)


def test_drive_yields_the_preview_before_the_first_step_and_takes_messages_meanwhile():
    trainer = _PreviewingTrainer(steps=2)
    gen = _drive(lambda: trainer, background=False, preview=True)
    assert next(gen).trainer is trainer
    first = gen.send(())
    assert [p.start for p in first.preview] == [10] and first.progress is None
    labels = AnnotationUpdate(labels=(None,))
    second = gen.send(((1, labels),))  # sent during the preview: acknowledged, handed to the first step
    assert [p.start for p in second.preview] == [11] and second.received == 1
    assert [(s.progress.step, s.preview) for s in gen] == [(0, ()), (1, ())]
    assert trainer.received == [labels, None]
    # A further round of the same trainer ("Retrain", "Update once") shows no preview again.
    again = _drive(lambda: trainer, background=False)
    next(again)
    assert again.send(()).preview == ()


def test_training_run_takes_a_trainer_or_a_function_building_it(qapp):
    trainer = _FakeTrainer(steps=1)
    with pytest.raises(TypeError):
        TrainingRun(total_steps=1)
    with pytest.raises(TypeError):
        TrainingRun(trainer, build=lambda: trainer, total_steps=1)
    assert TrainingRun(trainer, total_steps=1).trainer is trainer
    assert TrainingRun(build=lambda: trainer, total_steps=1).trainer is None  # known once built, in the worker

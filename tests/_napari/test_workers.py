"""The training worker: messages from the GUI reach the trainer between steps, each once and in order.

No viewer and no thread here: the generator that drives the trainer is stepped by hand.
"""

from __future__ import annotations

import pytest

from napari_action._napari.workers import TrainingRun, _drive, _take
from napari_action.progress import AnnotationUpdate, FocusRequest


class _FakeTrainer:
    """Records what ``iter_train`` receives between its steps."""

    def __init__(self, steps: int):
        self.steps = steps
        self.received: list = []

    def iter_train(self):
        for step in range(self.steps):
            command = yield step
            self.received.append(command)


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
    assert gen.send(((1, early),))[:3] == (0, 1, None)  # a fresh iter_train is started with None
    # 1 is resent (its ack had not reached the GUI) and ignored; 3 supersedes the queued focus 1.
    step = gen.send(((1, early), (2, labels), (3, focus)))
    assert step[:3] == (1, 3, None)
    assert [s[:3] for s in gen] == [(2, 3, None), (3, 3, None), (4, 3, None)]
    assert trainer.received == [labels, focus, None, None, None]


class _PreviewingTrainer(_FakeTrainer):
    """A trainer whose prior comes in two runs before training."""

    def iter_preview(self):
        yield ("run 1",)
        yield ("run 2",)


def test_drive_yields_the_preview_before_the_first_step_and_takes_messages_meanwhile():
    trainer = _PreviewingTrainer(steps=2)
    gen = _drive(lambda: trainer, background=False, preview=True)
    assert next(gen).trainer is trainer
    first = gen.send(())
    assert first.preview == ("run 1",) and first.progress is None
    labels = AnnotationUpdate(labels=(None,))
    second = gen.send(((1, labels),))  # sent during the preview: acknowledged, handed to the first step
    assert second.preview == ("run 2",) and second.received == 1
    assert [(s.progress, s.preview) for s in gen] == [(0, ()), (1, ())]
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

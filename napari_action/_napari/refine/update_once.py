""" "Update once": one short training round on demand, then fresh predictions.

For users who prefer to decide when training runs (ilastik #2425's "single
update"): the current labels (painted plus accepted) are handed to the
existing trainer, which runs ``steps`` more stage-iii steps from its current
weights (``Trainer.iter_train(steps)``) in the usual
:class:`~napari_action._napari.workers.TrainingRun` (so Pause / Stop, streaming and live label
updates work as in continuous training), after which every training volume
is predicted again (which refreshes the prediction layers, the uncertainty
and the "next slices" list).
"""

from __future__ import annotations

import logging
from collections.abc import Generator, Mapping, Sequence
from functools import partial
from typing import Any

import numpy as np

from napari_action.inference.model_protocol import TrainableModel

logger = logging.getLogger(__name__)


class ShortRound:
    """A trainer seen through one short round: ``iter_train()`` runs ``steps`` steps.

    :class:`~napari_action._napari.workers.TrainingRun` drives ``iter_train()`` without arguments;
    this adapter supplies the step count and first installs the labels
    snapshotted on the GUI thread (applied in the worker, between steps).
    Every other attribute (``axis``, ``request_stop``...) is the trainer's.

    Parameters
    ----------
    trainer : napari_action.training.trainer.Trainer
        Trained (or partly trained) trainer; continues from its weights.
    steps : int
        Steps of the round.
    labels : sequence of np.ndarray or None
        Training labels, one per volume.
    labeled_slices : mapping of int to sequence of int, optional
        Slices that count as labeled even if they hold only background.
    """

    def __init__(
        self,
        trainer: TrainableModel,
        steps: int,
        labels: Sequence[np.ndarray | None],
        labeled_slices: Mapping[int, Sequence[int]] | None = None,
    ):
        if steps < 1:
            raise ValueError(f"An update needs at least one step, got {steps}.")
        self.trainer = trainer
        self.steps = int(steps)
        self._labels = list(labels)
        self._labeled_slices = dict(labeled_slices or {})

    def iter_train(self) -> Generator[Any, object, None]:
        """Install the labels, then run the trainer's round (sent messages pass through)."""
        self.trainer.update_annotation(self._labels, self._labeled_slices or None)
        yield from self.trainer.iter_train(self.steps)

    def __getattr__(self, name: str):
        # Only reached for attributes ShortRound lacks; never for its own private ones.
        if name.startswith("_") or name == "trainer":
            raise AttributeError(name)
        return getattr(self.trainer, name)


def start_update_once(widget, steps: int) -> bool:
    """Run ``steps`` steps of the widget's trainer on its current labels, then predict again.

    The round is started by the widget (:meth:`~napari_action._napari.widget.ActionWidget.start_run`),
    the same way as Train, so the buttons, status line, loss plot and streaming behave alike.

    Returns
    -------
    bool
        False if a run or job is active.

    Raises
    ------
    ValueError
        When an update cannot start, with a message telling the user why.
    """
    state = widget.training_state
    trainer, plan = state.trainer, state.plan
    if state.busy:
        return False
    if not state.can_continue:
        raise ValueError("press Train first; Update once continues from the trained model.")
    replaced = [image.name for index, image in enumerate(plan.images) if plan.replaced(index)]
    if replaced:
        # The trainer holds the data it read at Train: a round would learn from the old scan, not the one shown.
        raise ValueError(
            f"image {replaced[0]!r} was given new data since Train, and Update once would go on learning from the "
            "data it had then. Press Train to train on the new data (your painted labels are kept)."
        )
    removed = next((layer.name for layer in plan.used_layers() if layer not in widget.viewer.layers), None)
    if removed is not None:
        # The trainer holds what it read at Train: a round would learn from labels deleted or a scan closed since.
        raise ValueError(
            f"layer {removed!r} was removed since Train, and Update once would go on learning from what it held "
            "then. Press Train to train on the layers left."
        )
    training = widget.training_labels(plan, axis=trainer.axis)
    if not training.any():
        raise ValueError("nothing is labeled: paint or accept a slice first.")
    return widget.start_run(
        ShortRound(trainer, steps, training.labels, training.labeled_slices),
        total_steps=trainer.round_steps(steps),
        status=f"Update once: {steps} steps from the current weights…",
        on_finished=partial(_predict_training_volumes, widget),
    )


def _predict_training_volumes(widget, run) -> None:
    """After a round that did not fail: predict every training volume still open with the new weights."""
    plan = widget.training_state.plan
    if run.error is None and plan is not None:
        names = [image.name for image in plan.images if image in widget.viewer.layers]
        if names:
            widget.predict_images(names)

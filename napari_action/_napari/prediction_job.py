"""Whole-volume predictions of several volumes in one napari thread worker (the widget's Predict).

A training volume is predicted by its index (the trainer knows its prior, its voxel size and its voxel
order); any other image as an array, read in the model's voxel order where it is stored in another
(:func:`~napari_action._napari.view_plane.training_order`) and given back in its own. Each finished
volume comes with its quality record and its slices' uncertainty scores, counted in the worker.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Container, Generator, Sequence
from typing import Any

import numpy as np
from napari.utils import progress as napari_progress

from napari_action._napari.threads import cap_torch_threads, lower_thread_priority, new_worker
from napari_action.inference.made_by import model_record
from napari_action.inference.model_protocol import SegmentationModel
from napari_action.inference.quality import PredictionStats, QualityAccumulator
from napari_action.inference.suggestions import slice_scores
from napari_action.io.reoriented import Reorientation
from napari_action.progress import PredictionUpdate

logger = logging.getLogger(__name__)

#: Progress-bar units per predicted volume (a prediction reports slices done of its total).
_STEPS_PER_VOLUME = 1000
#: What :class:`PredictionJob` predicts: (key, training-volume index or 3D array, voxel size or None, turn or None).
PredictionItem = tuple[Any, int | np.ndarray, tuple | None, Reorientation | None]


def _predict_all(
    model: SegmentationModel, items: Sequence[PredictionItem], dropped: Container = frozenset()
) -> Generator:
    """Predict ``items`` one after the other; a volume whose key is in ``dropped`` (its scan closed: the GUI
    thread adds to it) is not begun, or left after the batch of slices in hand."""
    lower_thread_priority()
    cap_torch_threads(model.config.num_threads)
    # Hashed here, once per job: the weights do not change while it runs (training waits), and hashing
    # them on the GUI thread would stall it. Each update carries it to the layer it is written into.
    made_by = model_record(model)
    for key, volume, spacing, turn in items:
        if key in dropped:
            continue
        if turn is not None:  # read in the model's voxel order (a view), given back in its own
            volume = turn.from_stored(np.asarray(volume))
            spacing = None if spacing is None else tuple(spacing[axis] for axis in turn.stored_axes)
        # The layers show labels and rank slices by the entropy: the confidence volume (4 bytes a voxel) goes unmade.
        extra = {"with_confidence": False} if spacing is None else {"spacing": spacing, "with_confidence": False}
        updates = model.predict_volume(volume, **extra)
        for update in updates:
            if key in dropped:
                updates.close()  # its arrays go now, not when the next volume replaces them
                break
            if update.done:  # np.shape: a training volume comes by its index, never turned here
                update, record = _scored(model, update, turn, np.shape(volume))
            else:
                record = None
            yield key, update, record, made_by


def _scored(
    model: SegmentationModel, update: PredictionUpdate, turn: Reorientation | None, shape: tuple[int, ...]
) -> tuple[PredictionUpdate, PredictionStats | None]:
    """A finished prediction with its slices' uncertainty scores, and its quality record, counted here rather than
    on the GUI thread; ``turn``, ``shape``: how an array was read, and its shape so read (None: as stored).

    Both in one pass over the slices: the record scores each slice to find the worst, the very scores the
    Refine panel shows; scoring them again took 1.1 s of 5.8 s (CPU) for a 512 x 512 x 400 CT. The voxel size
    is the layer's, which only the GUI thread may read, so the record counts 1 mL per voxel
    (:meth:`PredictionStats.with_voxel_ml` sets the real one).
    """
    if update.labels is None or update.entropy is None:
        return update, None
    accumulator = QualityAccumulator(model.class_values, _axis(model, update), voxel_ml=1.0)
    accumulator.add_volume(update.labels, update.entropy)
    record = accumulator.finish()
    if turn is None and update.entropy.dtype == np.float32:  # the values the panel's map holds, in its order
        return dataclasses.replace(update, slice_scores=accumulator.slice_scores()), record
    # Read turned, each slice's voxels come in another order, which can move a score's last bit: the panel's
    # scores are those of the stored slices as it holds them (float32), scored once more here.
    if turn is not None:
        update, record = turn.prediction_to_stored(update), record.in_stored_order(turn, shape)
    scores = slice_scores(np.asarray(update.entropy, dtype=np.float32), _axis(model, update))
    return dataclasses.replace(update, slice_scores=scores), record


def _axis(model: SegmentationModel, update: PredictionUpdate) -> int:
    """The axis a prediction's slices lie along: the model's, but for a volume stored turned."""
    return int(model.axis if update.axis is None else update.axis)


class PredictionJob:
    """Whole-volume predictions of several volumes in one worker.

    Parameters
    ----------
    trainer : SegmentationModel
        A trainer or a loaded model; do not train it at the same time.
    items : sequence of (key, volume, spacing, turn)
        ``volume`` is a training-volume index or a 3D array, ``spacing`` its
        voxel size in mm (None: the model's own, or 1 mm), ``turn`` the
        :class:`~napari_action.io.reoriented.Reorientation` that reads an array in the
        model's voxel order (None: as stored); ``key`` comes back with every update.
    on_update : callable
        ``on_update(key, PredictionUpdate, PredictionStats or None)`` on the GUI
        thread; the last update of a volume has ``done=True``, the labels and
        the volume's quality record (counted at 1 mL per voxel), the others None;
        :attr:`made_by` says which model made them.
    on_finished : callable, optional
        Called once on the GUI thread when the worker ends (also on error).
    progress_bar : bool
        Show a napari progress bar (activity dock). Off by default, as for :class:`TrainingRun`:
        while it runs napari animates its "in progress" indicator, and each frame repaints the main
        window; under software OpenGL that took about a quarter of the GUI thread's time during
        "Predict all" (docs/benchmarks.md, "GUI responsiveness during Predict all"). The caller shows
        :meth:`progress_text` instead (the widget's status line).
    """

    def __init__(
        self,
        trainer: SegmentationModel,
        items: Sequence[PredictionItem],
        on_update: Callable[[Any, PredictionUpdate, PredictionStats | None], None],
        on_finished: Callable[[], None] | None = None,
        *,
        progress_bar: bool = False,
    ):
        self.trainer = trainer
        self.items = list(items)
        self.on_update = on_update
        self.on_finished = on_finished
        self.progress_bar = progress_bar
        self.is_running = False
        self.cancelled = False
        self._worker = None
        self._bar = None
        self._done: dict[Any, int] = {}
        self._renamed: dict[Any, Any] = {}  # key an item was started with -> the image's name now (None: closed)
        self._dropped: set[Any] = set()  # keys of closed images: the worker leaves them (read there, added to here)
        #: The images left because their prediction layer was deleted while the job ran (:meth:`leave`).
        self.left: list[Any] = []
        #: The images left because they were given new data while the job ran (:meth:`leave_changed`).
        self.changed: list[Any] = []
        #: The model's record (:func:`~napari_action.inference.made_by.model_record`), from its first update on.
        self.made_by: dict[str, Any] | None = None

    def start(self) -> None:
        """Start predicting in a worker thread."""
        worker = new_worker(
            _predict_all,
            self.trainer,
            self.items,
            self._dropped,
            connect={"yielded": self._on_yielded, "finished": self._on_finished},
        )
        # Each volume counts the same; predictions say how far along they are (slices_done of total_slices).
        if self.progress_bar:
            self._bar = napari_progress(total=len(self.items) * _STEPS_PER_VOLUME, desc="ACTION prediction")
        self._worker = worker
        self.is_running = True
        worker.start()

    def rename(self, old: Any, new: Any) -> None:
        """The image called ``old`` is called ``new`` now (renamed in the viewer while it waits or is predicted).

        Its updates come back under ``new``: under the old name no layer was found for them, and the
        prediction was dropped without a word.
        """
        for key in (item[0] for item in self.items):
            if self._renamed.get(key, key) == old:
                self._renamed[key] = new

    def forget(self, name: Any) -> None:
        """The image called ``name`` was closed: its prediction goes nowhere, not to an image opened since under
        its name (which got the closed scan's labels and quality row), and the worker leaves it: not begun, or
        left after the batch of slices in hand."""
        self._dropped.update(item[0] for item in self.items if self._renamed.get(item[0], item[0]) == name)
        self.rename(name, None)

    def leave(self, name: Any) -> None:
        """The prediction layer of the image called ``name`` was deleted while the job runs: its result goes nowhere.

        The job made the layer again for it, as if the user had not deleted it. Deleting it says the user wants
        none: the image is left as a closed one is (:meth:`forget`), and :attr:`outcome` says so. An image the
        job has finished, or left already, is not named.
        """
        if not any(self._still_to_write(item[0], name) for item in self.items):
            return
        self.forget(name)
        self.left.append(name)

    def leave_changed(self, name: Any) -> None:
        """The image called ``name`` was given new data while the job runs (``layer.data = a crop``, another scan).

        The job predicts the data the image held when Predict was pressed: written over the new data, a crop got a
        layer of its own shape and the old prediction failed to fit it. The image is left as a closed one is
        (:meth:`forget`), and :attr:`outcome` says to predict it again. An image finished, or left already, is not
        named.
        """
        if not any(self._still_to_write(item[0], name) for item in self.items):
            return
        self.forget(name)
        self.changed.append(name)

    def _still_to_write(self, key: Any, name: Any) -> bool:
        """True if the item started as ``key`` is the image called ``name`` now and its result is still to come."""
        current = self._renamed.get(key, key)
        return current == name and key not in self._dropped and self._done.get(key, 0) < _STEPS_PER_VOLUME

    @property
    def fraction(self) -> float:
        """How far the job is, from 0 to 1 (each volume counts the same)."""
        return sum(self._done.values()) / max(len(self.items) * _STEPS_PER_VOLUME, 1)

    def progress_text(self, key: Any) -> str:
        """``Predicting volume 3 of 17 (brain-3), 40% done…``: where the job is, ``key`` the volume in hand."""
        keys = [self._renamed.get(item[0], item[0]) for item in self.items]
        number = keys.index(key) + 1 if key in keys else len(self._done)
        return f"Predicting volume {number} of {len(self.items)} ({key}), {self.fraction:.0%} done…"

    def cancel(self) -> None:
        """Stop after the batch of slices in hand (Stop pressed): the volumes finished so far stay written."""
        if self.is_running:
            self.cancelled = True
            self._worker.quit()

    @property
    def outcome(self) -> str | None:
        """What a cancelled job, or one that left images, leaves, for the status line (None: it ran to its end)."""
        left = " ".join(text for text in (self._left_text(), self._changed_text()) if text) or None
        if not self.cancelled:
            return None if left is None else f"Prediction done. {left}"
        finished = sum(1 for done in self._done.values() if done >= _STEPS_PER_VOLUME)
        stopped = (
            f"Prediction stopped: {finished} of {len(self.items)} volume(s) predicted, in their layers; "
            "the others keep what they showed. Press Predict to predict them."
        )
        return stopped if left is None else f"{stopped} {left}"

    def _left_text(self) -> str | None:
        """``Left 'scan': its prediction layer was deleted …``: the images :meth:`leave` took out of the job."""
        return _left_sentence(
            self.left,
            ("its prediction layer was deleted", "its result was not put back"),
            ("their prediction layers were deleted", "their results were not put back"),
        )

    def _changed_text(self) -> str | None:
        """``Left 'scan': its data changed …``: the images :meth:`leave_changed` took out of the job."""
        return _left_sentence(
            self.changed,
            ("its data changed", "its result, of the data it held before, was not written"),
            ("their data changed", "their results, of the data they held before, were not written"),
        )

    def abandon(self) -> None:
        """Quit at the next batch without calling back."""
        self.on_update = lambda key, update, record: None
        self.on_finished = None
        if self.is_running:
            self._worker.quit()

    def _on_yielded(self, item: tuple[Any, PredictionUpdate, PredictionStats | None, dict]) -> None:
        started, update, record, self.made_by = item
        before = self._done.get(started, 0)
        self._done[started] = round(_STEPS_PER_VOLUME * update.slices_done / max(update.total_slices, 1))
        key = self._renamed.get(started, started)
        # The update first: napari's bar processes events when it moves, which can deliver the worker's
        # `finished` here, and the job must not end (autosave, resumed training) before its last volume is written.
        if key is not None:
            self.on_update(key, update, record)
        if self._bar is not None:
            self._bar.update(self._done[started] - before)

    def _on_finished(self) -> None:
        self.is_running = False
        if self._bar is not None:
            self._bar.close()
        if self.on_finished is not None:
            self.on_finished()


def _left_sentence(names: list, one: tuple[str, str], several: tuple[str, str]) -> str | None:
    """``Left <names>: <what happened> while Predict ran, so <what was not done>. Press Predict …``; None for no names.

    ``one`` and ``several`` are (what happened, what was not done), worded for one image and for more.
    """
    if not names:
        return None
    (happened, undone), them = (one, "it") if len(names) == 1 else (several, "them")
    listed = ", ".join(repr(name) for name in names)
    return f"Left {listed}: {happened} while Predict ran, so {undone}. Press Predict to predict {them} again."

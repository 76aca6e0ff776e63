"""The worker side of Predict: what a whole-volume prediction hands the layers."""

from __future__ import annotations

import threading

import numpy as np

from napari_action._napari.prediction_job import _predict_all
from napari_action.inference.uncertainty import UncertaintyMaps


def test_the_job_predicts_labels_and_entropy_without_the_confidence_volume(supervised_trainer):
    # The layers never read the confidence: making it cost 4 bytes a voxel on top of the labels and entropy.
    image = supervised_trainer.volumes[0]
    items = [("training volume", 0, None, None), ("array", np.asarray(image), (0.8, 0.8, 3.0), None)]
    finished = []
    # In a thread of its own, as in the widget: the job lowers its thread's priority and caps its torch threads.
    worker = threading.Thread(
        target=lambda: finished.extend(u for u in _predict_all(supervised_trainer, items) if u[1].done)
    )
    worker.start()
    worker.join()
    assert [key for key, _, _ in finished] == ["training volume", "array"]
    for _, update, record in finished:
        assert update.confidence is None and update.labels.shape == image.shape
        assert update.entropy.shape == image.shape and record is not None


def test_the_job_scores_every_slice_as_the_refine_panel_would_so_that_the_gui_thread_does_not(supervised_trainer):
    # Scoring the 400 slices of a 512 x 512 x 400 CT took 2.8 s on napari's GUI thread after each volume landed.
    image = np.asarray(supervised_trainer.volumes[0])
    other = np.ascontiguousarray(np.flip(image[:, :24], axis=1))  # another shape, another image
    items = [("training image", image, None, None), ("other", other, None, None)]
    finished = []
    worker = threading.Thread(
        target=lambda: finished.extend(u for u in _predict_all(supervised_trainer, items) if u[1].done)
    )
    worker.start()
    worker.join()
    for name, update, _ in finished:
        axis = supervised_trainer.axis if update.axis is None else update.axis
        own = UncertaintyMaps().set_volume(name, update.entropy, axis).scores()  # as the panel scored them
        np.testing.assert_array_equal(update.slice_scores, own)
        handed = UncertaintyMaps().set_volume(name, update.entropy, axis, update.slice_scores)
        assert not handed._stale.any()  # nothing left for the GUI thread to score
        np.testing.assert_array_equal(handed.scores(), own)

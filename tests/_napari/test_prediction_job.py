"""The worker side of Predict: what a whole-volume prediction hands the layers."""

from __future__ import annotations

import threading

import numpy as np

from napari_action._napari.prediction_job import _predict_all


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

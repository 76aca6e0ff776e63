"""The worker side of Predict: what a whole-volume prediction hands the layers."""

from __future__ import annotations

import threading

import numpy as np

from napari_action._napari.prediction_job import _predict_all
from napari_action.inference.quality import QualityAccumulator
from napari_action.inference.suggestions import slice_scores
from napari_action.inference.uncertainty import UncertaintyMaps
from napari_action.io.checkpoint import weights_fingerprint
from napari_action.io.reoriented import Reorientation


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
    assert [key for key, _, _, _ in finished] == ["training volume", "array"]
    for _, update, record, _ in finished:
        assert update.confidence is None and update.labels.shape == image.shape
        assert update.entropy.shape == image.shape and record is not None


def test_every_prediction_comes_with_the_record_of_the_model_that_made_it(supervised_trainer):
    # An exported mask names the model that predicted it (its sidecar and header), not the one there at export.
    image = np.asarray(supervised_trainer.volumes[0])
    finished = _finished(supervised_trainer, [("training volume", 0, None, None), ("array", image, None, None)])
    config, checkpoint = supervised_trainer.config, supervised_trainer.checkpoint()
    expected = {
        "fingerprint": weights_fingerprint(checkpoint),
        "method": "supervised",
        "seed": config.seed,
        "axis": supervised_trainer.axis,
        "steps": supervised_trainer.step,
    }
    assert [made_by for _, _, _, made_by in finished] == [expected, expected]
    assert supervised_trainer.step > 0 and len(expected["fingerprint"]) == 16


def _finished(trainer, items):
    """The finished predictions of ``items``, made in a thread of its own as in the widget (the job lowers its
    thread's priority and caps its torch threads)."""
    finished = []
    worker = threading.Thread(target=lambda: finished.extend(u for u in _predict_all(trainer, items) if u[1].done))
    worker.start()
    worker.join()
    return finished


def _separate_record(trainer, update, turn):
    """The quality record as counted on its own pass (in the order the model read the volume)."""
    labels, entropy = update.labels, update.entropy
    axis = trainer.axis if update.axis is None else update.axis
    if turn is not None:
        labels, entropy, axis = turn.from_stored(labels), turn.from_stored(entropy), trainer.axis
    accumulator = QualityAccumulator(trainer.class_values, axis, voxel_ml=1.0)
    accumulator.add_volume(labels, entropy)
    record = accumulator.finish()
    return record if turn is None else record.in_stored_order(turn, labels.shape)


def test_the_job_scores_every_slice_as_the_refine_panel_would_so_that_the_gui_thread_does_not(supervised_trainer):
    # Scoring the 400 slices of a 512 x 512 x 400 CT took 2.8 s on napari's GUI thread after each volume landed;
    # in the worker the record's pass scores them, where a pass of their own took 1.1 s of 5.8 s (CPU).
    image = np.asarray(supervised_trainer.volumes[0])
    other = np.ascontiguousarray(np.flip(image[:, :24], axis=1))  # another shape, another image
    turn = Reorientation((2, 0, 1), (True, False, True))  # stored in another voxel order: read turned
    items = [
        ("training volume", 0, None, None),
        ("training image", image, None, None),
        ("other", other, None, None),
        ("turned", np.ascontiguousarray(turn.to_stored(image)), None, turn),
    ]
    finished = _finished(supervised_trainer, items)
    assert [name for name, _, _, _ in finished] == [item[0] for item in items]
    for (name, update, record, _), item in zip(finished, items, strict=True):
        axis = supervised_trainer.axis if update.axis is None else update.axis
        # Bit for bit what the two passes the job made before give: the record's, and the panel's own scoring.
        assert record == _separate_record(supervised_trainer, update, item[3])
        own = UncertaintyMaps().set_volume(name, update.entropy, axis).scores()  # as the panel scored them
        np.testing.assert_array_equal(update.slice_scores, own)
        np.testing.assert_array_equal(update.slice_scores, slice_scores(update.entropy, axis))
        assert record.worst_slice == int(own.argmax()) and record.axis == axis
        handed = UncertaintyMaps().set_volume(name, update.entropy, axis, update.slice_scores)
        assert not handed._stale.any()  # nothing left for the GUI thread to score
        np.testing.assert_array_equal(handed.scores(), own)


def test_a_volume_dropped_while_it_waits_or_is_predicted_is_left_there_and_the_others_go_on(supervised_trainer):
    # A scan closed while Predict ran was predicted to its end and its prediction thrown away: a minute of CPU for
    # a large CT, the next scans waiting behind it.
    image = np.asarray(supervised_trainer.volumes[0])
    items = [("closed mid-volume", 0, None, None), ("closed first", image, None, None), ("kept", image, None, None)]
    dropped = {"closed first"}
    seen = []

    def predict() -> None:
        for key, update, _, _ in _predict_all(supervised_trainer, items, dropped):
            seen.append((key, update.done))
            dropped.add("closed mid-volume")  # after its first batch of slices (10 slices, 8 a batch)

    worker = threading.Thread(target=predict)
    worker.start()
    worker.join()
    assert seen[0] == ("closed mid-volume", False) and seen[-1] == ("kept", True)
    assert {key for key, _ in seen[1:]} == {"kept"}

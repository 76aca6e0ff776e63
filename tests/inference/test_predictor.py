"""Tests for napari_action.inference.predictor: slice-wise prediction of whole volumes at their own size.

Most tests use a supervised model that learned the disc volume of tests/helpers/engine.py with
label values 300 (disc) and 7 (ring), so that label values, dtypes and positions can be checked
against the truth; the others use an untrained U-Net and compare the predictor with itself.
"""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.data.intensity import normalize_volume
from napari_action.inference.loaded_model import load_model
from napari_action.inference.predictor import Predictor, predict_volume, slice_stack
from napari_action.networks.unet import UNet
from napari_action.progress import PredictionUpdate
from napari_action.training.trainer import Trainer
from napari_action.training.volume_prediction import ENDS_AID, PAINTED_AID
from tests.helpers.engine import disc_volume, out_of_memory_hook, sparse, tiny_config

VALUES = np.array([0, 300, 7])  # the label value of each class of disc_volume: background, disc, ring


@pytest.fixture(scope="module")
def trained():
    """``(trainer, image, values)``: 60 supervised steps on the disc volume painted with :data:`VALUES`.

    ``values`` is the whole truth in label values; the trainer's ``volumes[0]`` is the normalised image.
    """
    image, truth = disc_volume(0)
    values = VALUES[truth]
    config = tiny_config(method="supervised", steps_stage3=60, lr=0.05, stream_every_steps=1000)
    trainer = Trainer([image], [sparse(values)], config)
    trainer.train()
    return trainer, image, values


def final(updates) -> PredictionUpdate:
    """The last update of a prediction, checked to be the one holding the result."""
    *_, last = updates
    assert last.done
    return last


def untrained(in_channels: int = 1, class_values=(0, 1, 2), **kwargs) -> Predictor:
    """A predictor over a fresh 2-wide U-Net (eval mode, CPU)."""
    return Predictor(UNet(in_channels, len(class_values), base_width=2), class_values, device="cpu", **kwargs)


# -- 2.5D context ---------------------------------------------------------------------------------
def test_slice_stack_puts_neighbours_in_channels_and_repeats_the_edge_slices():
    moved = np.broadcast_to(np.arange(5.0)[:, None, None], (5, 2, 3))  # every voxel holds its slice index
    stack = slice_stack(moved, 0, 5, context=2)
    assert stack.shape == (5, 5, 2, 3)
    expected = [[0, 0, 0, 1, 2], [0, 0, 1, 2, 3], [0, 1, 2, 3, 4], [1, 2, 3, 4, 4], [2, 3, 4, 4, 4]]
    np.testing.assert_array_equal(stack[:, :, 1, 2], expected)
    np.testing.assert_array_equal(slice_stack(moved, 3, 5, context=1)[:, :, 0, 0], [[2, 3, 4], [3, 4, 4]])
    assert slice_stack(moved, 1, 3, context=0).shape == (2, 1, 2, 3)


def test_context_beyond_the_volume_is_the_edge_slice_in_predictions(torch_seed):
    predictor = untrained(in_channels=3, axis=0, context=1)
    volume = np.random.default_rng(0).normal(size=(5, 16, 16)).astype(np.float32)
    # The same volume with its first and last slices doubled: there the neighbours really exist.
    doubled = np.concatenate([volume[:1], volume, volume[-1:]])
    _, first = predictor.predict_slices(volume, 0, 1)
    _, last = predictor.predict_slices(volume, 4, 5)
    np.testing.assert_array_equal(first, predictor.predict_slices(doubled, 1, 2)[1])
    np.testing.assert_array_equal(last, predictor.predict_slices(doubled, 5, 6)[1])
    assert not np.array_equal(first, predictor.predict_slices(volume, 1, 2)[1])  # the context does count


# -- sizes, values and progress -------------------------------------------------------------------
def test_predict_slices_gives_probabilities_per_class_at_the_slice_size(torch_seed):
    predictor = untrained(class_values=(0, 4, 9), axis=0)
    volume = np.random.default_rng(1).normal(size=(5, 17, 33)).astype(np.float32)
    labels, probs = predictor.predict_slices(volume, 1, 4)
    assert labels.shape == (3, 17, 33) and probs.shape == (3, 3, 17, 33) and probs.dtype == np.float32
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, atol=1e-5)
    np.testing.assert_array_equal(labels, np.array([0, 4, 9])[probs.argmax(axis=1)])


def test_labels_are_the_painted_values_in_their_smallest_dtype(trained):
    trainer, image, values = trained
    labels, confidence = trainer.predictor().predict(image)
    assert labels.shape == confidence.shape == image.shape
    assert labels.dtype == np.int16  # 300 does not fit uint8
    assert set(np.unique(labels)) == {0, 7, 300}  # label values, never the class ids 1 and 2
    assert np.mean(labels == values) > 0.9
    assert confidence.dtype == np.float32 and confidence.min() >= 1 / 3 - 1e-6 and confidence.max() <= 1.0


def test_odd_sizes_are_padded_with_the_volume_minimum_and_cropped_back(trained):
    trainer, _, values = trained
    predictor = trainer.predictor()
    crop = trainer.volumes[0][:31, :29]  # 31 x 29 slices: the U-Net needs multiples of 16
    found = final(predictor.iter_predict(crop, normalized=True))
    assert found.labels.shape == found.confidence.shape == found.entropy.shape == crop.shape
    # Cropped back in place: the disc is where the truth has it (a result shifted by the padding is not).
    assert np.mean(found.labels == values[:31, :29]) > 0.9
    # The same as padding by hand, at the bottom and right, with the volume's minimum.
    padded = np.pad(crop, ((0, 1), (0, 3), (0, 0)), constant_values=crop.min())
    by_hand = final(predictor.iter_predict(padded, normalized=True))
    np.testing.assert_array_equal(found.labels, by_hand.labels[:31, :29])
    np.testing.assert_array_equal(found.confidence, by_hand.confidence[:31, :29])


def test_iter_predict_reports_every_batch_then_the_result(trained):
    trainer, image, _ = trained
    predictor = trainer.predictor()
    predictor.smoothing_mm = 0.0  # no smoothing: every predicted slice is final at once
    updates = list(predictor.iter_predict(image, batch_size=4, volume_index=3))
    progress = [(u.volume_index, u.slices_done, u.total_slices, u.done) for u in updates]
    assert progress == [(3, 4, 10, False), (3, 8, 10, False), (3, 10, 10, False), (3, 10, 10, True)]
    assert all(u.labels is None and u.confidence is None and u.entropy is None for u in updates[:-1])
    labels, confidence = predictor.predict(image)
    np.testing.assert_array_equal(updates[-1].labels, labels)
    np.testing.assert_array_equal(updates[-1].confidence, confidence)
    entropy = updates[-1].entropy
    assert entropy.shape == image.shape and entropy.min() >= 0.0 and entropy.max() <= 1.0
    # Confident voxels are the certain ones.
    assert entropy[confidence > 0.99].max() < entropy[confidence < 0.6].min()


def test_a_prediction_asked_without_its_confidence_makes_none_and_the_same_labels_and_entropy(trained):
    # napari's layers take the labels and the entropy only: the confidence volume cost 4 bytes a voxel
    # (420 MB on a 512 x 512 x 400 CT) for nothing.
    trainer, image, _ = trained
    full = final(trainer.predict_volume(0))
    lean = final(trainer.predict_volume(0, with_confidence=False))
    assert full.confidence is not None and lean.confidence is None
    np.testing.assert_array_equal(lean.labels, full.labels)
    np.testing.assert_array_equal(lean.entropy, full.entropy)


def test_iter_predict_refuses_a_volume_that_is_not_3d(trained):
    trainer, _, _ = trained
    with pytest.raises(ValueError, match="3D volume"):
        next(trainer.predictor().iter_predict(np.zeros((32, 32), np.float32)))


def test_a_volume_given_as_nested_lists_is_predicted_like_its_array(supervised_trainer):
    # Raised AttributeError: 'list' object has no attribute 'ndim' (the trainer takes lists, the predictor did not).
    image, _ = disc_volume(1)
    predictor = supervised_trainer.predictor()
    labels, confidence = predictor.predict(image.tolist())
    expected, expected_confidence = predictor.predict(image)
    np.testing.assert_array_equal(labels, expected)
    np.testing.assert_array_equal(confidence, expected_confidence)


def test_nan_voxels_in_a_volume_to_predict_are_refused_saying_how_to_replace_them(supervised_trainer):
    # Said "fill or mask them before training" to someone predicting.
    image, _ = disc_volume(1)
    image[3, 4, :2] = np.nan
    with pytest.raises(ValueError) as refused:
        supervised_trainer.predictor().predict(image)
    message = str(refused.value)
    assert "2 NaN and 0 infinite voxels" in message and "training" not in message
    assert "np.nan_to_num(image" in message and "nan_policy='zero'" in message


@pytest.mark.parametrize(
    ("spacing", "said"),
    [
        ((1.0, 1.0), "one value per axis"),  # raised IndexError: tuple index out of range
        ((1.0, 1.0, 0.0), "positive and finite"),  # raised ZeroDivisionError
        ((1.0, 1.0, -2.0), "positive and finite"),  # raised "sigma must be >= 0"
        ((1.0, np.nan, 2.0), "positive and finite"),  # was predicted without a word
        ((1.0, 1.0, 2.0, 1.0), "one value per axis"),  # the fourth was ignored
        (2.0, "sequence of 3 numbers"),  # raised TypeError: 'float' object is not subscriptable
    ],
)
def test_a_spacing_that_is_not_three_voxel_sizes_is_refused_saying_what_to_give(supervised_trainer, spacing, said):
    image, _ = disc_volume(1)
    with pytest.raises(ValueError, match=said) as refused:
        supervised_trainer.predictor().predict(image, spacing=spacing)
    assert "meta.zooms of load_volume" in str(refused.value)


def test_a_training_image_index_out_of_range_says_how_many_there_are(supervised_trainer):
    # Raised a bare IndexError: list index out of range.
    with pytest.raises(IndexError, match=r"The trainer has 1 image\(s\), numbered 0 to 0; got 1. To predict another"):
        supervised_trainer.predict_volume(1)


def test_axis_override_slices_along_another_axis(trained):
    trainer, _, _ = trained
    predictor = trainer.predictor()
    volume = trainer.volumes[0]
    turned = np.moveaxis(volume, 2, 0)  # the same voxels, the training axis first
    assert predictor.axis == 2
    expected = final(predictor.iter_predict(volume, normalized=True)).labels
    along_0 = final(predictor.iter_predict(turned, normalized=True, axis=0)).labels
    np.testing.assert_array_equal(along_0, np.moveaxis(expected, 2, 0))
    # Without the override the turned volume is cut along its axis 2, into other slices.
    default = final(predictor.iter_predict(turned, normalized=True)).labels
    assert default.shape == turned.shape and not np.array_equal(default, along_0)


# -- from a checkpoint ----------------------------------------------------------------------------
def test_predict_volume_takes_a_predictor_or_a_checkpoint_path(trained, tmp_path):
    trainer, image, values = trained
    path = trainer.save_checkpoint(tmp_path / "model.pt")
    from_file = list(predict_volume(path, image, batch_size=4))
    assert [u.slices_done for u in from_file] == [0, 3, 10, 10]  # smoothing finishes a slice 5 slices later
    result = final(from_file)
    assert result.labels.dtype == np.int16 and np.mean(result.labels == values) > 0.9
    # The same as the predictor of that checkpoint (built for the same device).
    loaded = Predictor.from_checkpoint(path)
    assert (loaded.axis, list(loaded.class_values)) == (2, [0, 7, 300])
    expected = final(predict_volume(loaded, image, batch_size=4))
    np.testing.assert_array_equal(result.labels, expected.labels)
    np.testing.assert_array_equal(result.confidence, expected.confidence)


def test_smoothing_finishes_slices_once_their_neighbours_are_predicted(trained):
    trainer, image, _ = trained
    predictor = trainer.predictor()
    assert predictor.smoothing_mm == 1.5  # the default: on 1 mm slices a kernel radius of 5 slices
    updates = list(predictor.iter_predict(image, batch_size=4))
    assert [u.slices_done for u in updates] == [0, 3, 10, 10]


def test_smoothing_averages_probabilities_across_slices_like_a_gaussian_filter(trained):
    from scipy import ndimage

    trainer, image, _ = trained
    predictor = trainer.predictor()
    predictor.smoothing_mm = 0.0
    data = normalize_volume(image)
    moved = np.moveaxis(data, predictor.axis, 0)
    probs = predictor.predict_slices(moved, 0, moved.shape[0])[1]
    ones = np.ones(moved.shape[0])
    expected = ndimage.gaussian_filter1d(probs, 1.5, axis=0, mode="constant", truncate=3.0)
    expected /= ndimage.gaussian_filter1d(ones, 1.5, mode="constant", truncate=3.0)[:, None, None, None]
    predictor.smoothing_mm = 1.5
    _, confidence = predictor.predict(data, normalized=True)
    np.testing.assert_allclose(np.moveaxis(confidence, predictor.axis, 0), expected.max(axis=1), atol=1e-5)


def test_a_prior_keeps_labeled_slices_and_leans_on_the_interpolation_next_to_them(trained):
    trainer, image, truth = trained
    prior = trainer.prior(0)
    assert prior is not None
    labels, _ = trainer.predictor().predict(image, prior=prior)
    moved_labels, moved_truth = np.moveaxis(labels, trainer.axis, 0), np.moveaxis(truth, trainer.axis, 0)
    for s in trainer.annotation.labeled_slices(0):
        np.testing.assert_array_equal(moved_labels[s], moved_truth[s])


def test_running_out_of_gpu_memory_predicts_fewer_slices_at_a_time(supervised_trainer):
    image, _ = disc_volume(3)
    predictor = supervised_trainer.predictor()
    expected, _ = predictor.predict(image, batch_size=8)
    handle = predictor.net.register_forward_pre_hook(out_of_memory_hook(2))  # 8 -> 4 -> 2 slices
    try:
        labels, _ = predictor.predict(image, batch_size=8)
    finally:
        handle.remove()
    np.testing.assert_array_equal(labels, expected)


def test_out_of_memory_for_a_single_slice_asks_for_the_cpu(supervised_trainer):
    image, _ = disc_volume(3)
    predictor = supervised_trainer.predictor()
    handle = predictor.net.register_forward_pre_hook(out_of_memory_hook(100))
    try:
        with pytest.raises(MemoryError, match=r"even one slice .* predict on the CPU"):
            predictor.predict(image, batch_size=2)
    finally:
        handle.remove()


def _blob_volume(shift: int = 0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """40 slices along axis 2 of a bright disc (label 1, radius 6) on slices 10-28 (+ ``shift``): below, the
    same disc narrowing to nothing (the structure's end); above, a bright disc that grows (something
    else that looks alike)."""
    yy, xx = np.mgrid[:32, :32]
    distance = np.hypot(yy - 15.5, xx - 15.5)
    z = np.arange(40) - shift
    radius = np.where(z < 10, 6.0 - 0.6 * (10 - z), np.where(z <= 28, 6.0, 6.0 + 0.8 * (z - 28)))
    blob = distance[..., None] < radius[None, None, :]
    rng = np.random.default_rng(seed)
    image = np.where(blob, 300.0, 100.0) + rng.normal(0, 10, blob.shape)
    truth = (blob & (z >= 0)[None, None, :] & (z <= 28)[None, None, :]).astype(np.uint8)
    return image.astype(np.float32), truth


def _blob_trainer(*volumes):
    config = tiny_config(method="supervised", steps_stage3=60, lr=0.05, stream_every_steps=1000)
    trainer = Trainer([image for image, _ in volumes], [sparse(volumes[0][1], slices=(20,))], config)
    trainer.train()
    return trainer


def _areas(update: PredictionUpdate) -> np.ndarray:
    return np.count_nonzero(update.labels == 1, axis=(0, 1))


def test_on_a_painted_volume_a_structure_ends_where_it_stops_tapering_beyond_its_propagation():
    trainer = _blob_trainer(_blob_volume())
    extents = trainer.predictor().extents_of(trainer.prior(0))
    first, last = int(extents.first[1]), int(extents.last[1])
    assert 0 < first < 20 < last < 28  # the painted disc's radius stops its propagation early

    trainer.config.structure_ends = "network"
    alone = _areas(final(trainer.predict_volume(0)))
    assert (alone[31:] > alone[last]).all()  # the network alone runs on into the growing disc
    trainer.config.structure_ends = "taper"
    tapered = _areas(final(trainer.predict_volume(0)))
    np.testing.assert_array_equal(tapered[: last + 1], alone[: last + 1])  # the narrowing end is kept
    ends = np.flatnonzero(tapered[last:] == 0)
    assert ends.size and not tapered[last + ends[0] :].any()  # ended once, for good
    assert last + ends[0] <= 32  # where the other disc has grown by a third
    trainer.config.structure_ends = "cut"
    cut = _areas(final(trainer.predict_volume(0)))
    assert not cut[:first].any() and not cut[last + 1 :].any()
    np.testing.assert_array_equal(cut[first : last + 1], alone[first : last + 1])


def test_a_volume_nobody_painted_is_bounded_by_the_painted_propagation_registered_onto_it():
    trainer = _blob_trainer(_blob_volume(), _blob_volume(shift=4, seed=1))  # the same anatomy four slices on
    own, carried = trainer.structure_extents(0), trainer.structure_extents(1)
    assert own == trainer.predictor().extents_of(trainer.prior(0))  # a painted volume: its own propagation
    assert abs(carried.first[1] - (own.first[1] + 4)) <= 1 and abs(carried.last[1] - (own.last[1] + 4)) <= 1

    bounded = _areas(final(trainer.predict_volume(1)))
    trainer.config.structure_ends = "network"
    assert trainer.structure_extents(1) is None
    alone = _areas(final(trainer.predict_volume(1)))
    assert alone[36:].all() and not bounded[36:].any()
    np.testing.assert_array_equal(bounded[: carried.last[1] + 1], alone[: carried.last[1] + 1])


def test_a_training_volume_says_what_besides_the_network_made_its_prediction_which_the_saved_model_lacks(tmp_path):
    # napari's Cohort tab rated a scan nobody painted, cut where the painted scan's labels reach, 0.497; predicted
    # by `napari-action predict` with the saved model, the network's own mask of the file, 0.558, and nothing
    # told the two apart. The prediction now says what helped make it; the Cohort tab shows it on the row.
    unpainted = _blob_volume(shift=4, seed=1)
    trainer = _blob_trainer(_blob_volume(), unpainted)
    assert final(trainer.predict_volume(0)).aided_by == PAINTED_AID
    bounded = final(trainer.predict_volume(1))
    assert bounded.aided_by == ENDS_AID

    saved = load_model(trainer.save_checkpoint(tmp_path / "model.pt"))
    alone = final(saved.predict_volume(unpainted[0]))
    assert alone.aided_by is None and not np.array_equal(alone.labels, bounded.labels)
    trainer.config.structure_ends = "network"
    unaided = final(trainer.predict_volume(1))
    assert unaided.aided_by is None
    np.testing.assert_array_equal(unaided.labels, alone.labels)  # nothing but the network: the saved model's mask


@pytest.mark.parametrize("rule", ["auto", "sometimes"])
def test_a_predictor_applies_a_rule_and_refuses_anything_else(rule):
    with pytest.raises(ValueError, match="'taper', 'cut', 'network'"):
        untrained(axis=0, structure_ends=rule)  # "auto" is for the trainer to decide, from the slice thickness


def test_smoothing_of_micrometre_slices_read_in_millimetres_spans_as_many_slices_as_on_1_mm_ones(trained):
    """A microscope's 2 µm slices, read in mm from a header in micrometres: 1.5 mm of smoothing spanned 750
    slices, averaged each slice with the whole stack, and a structure on a few of its slices was predicted nowhere."""
    trainer, image, values = trained
    predictor = trainer.predictor()
    assert predictor.smoothing_mm == 1.5 and predictor.axis == 2
    stack = image.copy()
    stack[..., :6] = np.random.default_rng(1).normal(100.0, 10.0, stack[..., :6].shape)  # the disc on 4 slices of 10
    thin, one_mm = ((1.0, 1.0, thickness) for thickness in (0.002, 1.0))

    labels, confidence = predictor.predict(stack, spacing=thin)

    expected_labels, expected_confidence = predictor.predict(stack, spacing=one_mm)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(confidence, expected_confidence, atol=1e-6)
    disc = values[..., 9] == 300
    assert (labels[..., 9][disc] == 300).mean() > 0.9


def test_the_prior_of_micrometre_slices_read_in_millimetres_fades_over_as_many_slices_as_on_1_mm_ones(trained):
    """The prior's 6 mm decay on a microscope's 2 µm slices spanned 3,000 slices: the propagation was mixed into
    the whole stack at nearly full share, where on 1 mm slices it fades within a few slices of a painted one."""
    trainer, image, _ = trained
    predictor = trainer.predictor()
    prior = trainer.prior(0)
    assert predictor.prior_decay_mm == 6.0 and prior is not None
    thin, one_mm = ((1.0, 1.0, thickness) for thickness in (0.002, 1.0))

    labels, confidence = predictor.predict(image, spacing=thin, prior=prior)

    expected_labels, expected_confidence = predictor.predict(image, spacing=one_mm, prior=prior)
    np.testing.assert_array_equal(labels, expected_labels)
    np.testing.assert_allclose(confidence, expected_confidence, atol=1e-6)

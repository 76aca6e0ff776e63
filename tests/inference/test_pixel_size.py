"""Slices of another voxel size are seen at the training pixel size, and labelled on their own grid."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from napari_action.data.pixel_size import RESAMPLE_TOLERANCE, slice_scale
from napari_action.inference.loaded_model import load_model
from napari_action.inference.out_of_core import predict_to_writer
from napari_action.inference.predictor import Predictor
from napari_action.io.label_writers import MemoryLabelWriter
from napari_action.io.volume_source import open_volume_source
from napari_action.training.stream_schedule import StreamCursor
from napari_action.training.trainer import Trainer
from tests.helpers import engine
from tests.inference.test_out_of_core import RandomConvolution


def watched_predictor(pixel_mm) -> tuple[Predictor, list[tuple[int, int]]]:
    """A predictor over a real convolution whose every label depends on the pixels, and the slice sizes it is fed."""
    net = RandomConvolution(1)
    seen: list[tuple[int, int]] = []
    net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    return Predictor(net, [0, 1, 2], axis=2, device="cpu", amp=False, pixel_mm=pixel_mm), seen


def test_the_scale_enlarges_coarser_slices_and_leaves_near_ones_alone():
    assert slice_scale((2.0, 1.5, 3.0), (1.0, 1.0), axis=2) == (2.0, 1.5)
    assert slice_scale((3.0, 0.5, 0.5), (1.0, 1.0), axis=0) == (0.5, 0.5)  # finer slices shrink
    assert slice_scale((1.0 + RESAMPLE_TOLERANCE / 2, 1.0, 3.0), (1.0, 1.0), axis=2) is None
    assert slice_scale(None, (1.0, 1.0), axis=2) is None and slice_scale((2.0, 2.0, 3.0), None, axis=2) is None


def test_a_coarser_volume_is_predicted_at_the_training_pixel_size_on_its_own_grid():
    image, _ = engine.disc_volume(1, shape=(24, 20, 4))
    predictor, seen = watched_predictor(pixel_mm=(1.0, 1.0))
    labels, confidence = predictor.predict(image, spacing=(2.0, 2.0, 3.0))
    assert set(seen) == {(48, 48)}  # 48 x 40, padded to a multiple of 16
    assert labels.shape == confidence.shape == image.shape and np.unique(labels).size == 3
    assert confidence.max() <= 1.0 + 1e-6
    seen.clear()
    as_stored, _ = predictor.predict(image, spacing=(1.0 + RESAMPLE_TOLERANCE / 2, 1.0, 3.0))
    assert set(seen) == {(32, 32)}  # within the tolerance: the slices as they are
    assert not np.array_equal(as_stored, labels)  # what the network saw changed what it labels


def test_pixels_a_thousand_times_the_training_ones_are_refused_before_any_huge_resize():
    # A header in the wrong unit (or a model for other images) made prediction enlarge each slice a
    # thousand-fold and fail on an allocation of tens of GB ("DefaultCPUAllocator: can't allocate memory").
    image, _ = engine.disc_volume(1, shape=(24, 20, 4))
    predictor, seen = watched_predictor(pixel_mm=(0.5, 0.5))
    with pytest.raises(ValueError, match=r"24 × 20 slices .* 48000 × 40000 pixels. Check the voxel sizes"):
        predictor.predict(image, spacing=(1000.0, 1000.0, 3.0))
    assert seen == []
    predictor.predict(image, spacing=(5.0, 5.0, 3.0))  # ten-fold: a coarse scan, predicted as before
    assert set(seen) == {(240, 208)}


def test_a_model_that_does_not_know_its_pixel_size_sees_the_voxels_as_they_are():
    image, _ = engine.disc_volume(1, shape=(24, 20, 4))
    predictor, seen = watched_predictor(pixel_mm=None)
    predictor.predict(image, spacing=(2.0, 2.0, 3.0))
    assert set(seen) == {(32, 32)}


def test_read_slice_by_slice_the_coarser_volume_gets_the_same_labels(tmp_path):
    image, _ = engine.disc_volume(2, shape=(30, 27, 6))
    source = open_volume_source(engine.write_nifti(tmp_path / "coarse.nii", image, zooms=(1.6, 1.2, 3.0)))
    predictor, seen = watched_predictor(pixel_mm=(0.8, 0.8))
    expected, _ = predictor.predict(image, spacing=source.meta.zooms)
    writer = MemoryLabelWriter(source.path, source.meta, predictor.label_dtype, predictor.axis)
    predict_to_writer(predictor, source, writer, batch_size=4)
    np.testing.assert_array_equal(writer.labels, expected)
    assert set(seen) == {(64, 48)}  # 60 x 41 padded


def test_the_trainer_keeps_the_painted_pixel_size_and_predicts_other_volumes_at_it(tmp_path):
    fine, truth = engine.disc_volume(0)
    coarse, _ = engine.disc_volume(3)
    spacings = [(0.8, 0.8, 3.0), (1.6, 1.6, 3.0)]
    trainer = Trainer([fine, coarse], [engine.sparse(truth), None], engine.tiny_config(), spacings=spacings)
    assert trainer.pixel_mm == pytest.approx((0.8, 0.8))  # the painted volume's, not the mean of all
    predictor = trainer.predictor()
    assert predictor.scale_for(spacings[1]) == pytest.approx((2.0, 2.0)) and predictor.scale_for(spacings[0]) is None
    seen: list[tuple[int, int]] = []
    predictor.net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    cursor = StreamCursor([fine.shape[2], coarse.shape[2]], chunk=2)
    cursor.focus(1, 5)
    cursor.predict(predictor, trainer.images, None, spacings)
    assert seen == [(64, 64)]  # a streamed slice of the coarse volume, as Predict will see it
    loaded = load_model(trainer.save_checkpoint(tmp_path / "model.pt"), device="cpu")
    assert loaded.pixel_mm == pytest.approx((0.8, 0.8)) and loaded.predictor.pixel_mm == loaded.pixel_mm


@pytest.mark.parametrize("resize_crops", [False, True])
def test_the_trainer_resizes_training_crops_only_when_asked(resize_crops):
    fine, truth = engine.disc_volume(0)
    coarse, _ = engine.disc_volume(3)
    spacings = [(0.8, 0.8, 3.0), (1.6, 1.6, 3.0)]
    config = dataclasses.replace(engine.tiny_config(), resize_crops=resize_crops)
    trainer = Trainer([fine, coarse], [engine.sparse(truth), None], config, spacings=spacings)
    crop = config.crop_size
    # The coarse volume's whole slice is read from a window half the crop wide when resized.
    window = trainer.pool.crop_window(1, crop)
    assert window == ((crop // 2, crop // 2) if resize_crops else (crop, crop))
    assert trainer.pool.crop_window(0, crop) == (crop, crop)  # the painted volume, as stored


def test_the_fit_gate_sees_a_painted_slice_at_the_size_training_sees_it():
    from napari_action.training.stream_schedule import FitGate

    fine, fine_truth = engine.disc_volume(0)
    coarse, coarse_truth = engine.disc_volume(3)
    spacings = [(0.8, 0.8, 3.0), (1.6, 1.6, 3.0)]
    config = dataclasses.replace(engine.tiny_config(), resize_crops=True)
    painted = [engine.sparse(fine_truth), engine.sparse(coarse_truth)]
    trainer = Trainer([fine, coarse], painted, config, spacings=spacings)
    # Both painted: training's pixel size is their mean, and each volume's slices are resized to it.
    assert trainer.pixel_mm == pytest.approx((1.2, 1.2))
    scales = [trainer.pool.slice_scale(v) for v in (0, 1)]
    assert scales[0] == pytest.approx((2 / 3, 2 / 3)) and scales[1] == pytest.approx((4 / 3, 4 / 3))
    predictor, pool = trainer.predictor(), trainer.pool
    seen: list[tuple[int, int]] = []
    predictor.net.register_forward_pre_hook(lambda module, args: seen.append(tuple(args[0].shape[-2:])))
    gate = FitGate(threshold=0.5, slices_per_check=len(pool.labeled))
    gate.check(predictor, pool)
    coarse_slice = pool.image(*next((v, s) for v, s in pool.labeled if v == 1))
    enlarged = [round(n * 4 / 3) for n in coarse_slice.shape[-2:]]
    assert tuple(-(-n // 16) * 16 for n in enlarged) in seen  # padded to a multiple of 16
    # The probabilities come back at the slice's own size, as predict_slices gives them.
    probs = predictor.class_probabilities(coarse_slice, pool.pad_value(1), scales[1])
    assert probs.shape[-2:] == coarse_slice.shape[-2:]
    np.testing.assert_allclose(probs.sum(axis=0), 1.0, atol=1e-5)

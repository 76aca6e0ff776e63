"""Prediction read and written slice by slice: the same labels as the in-memory path, normalisation from a sample."""

from __future__ import annotations

from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch

from napari_action.cli.convert import convert_to_zarr
from napari_action.data.intensity import normalize_volume
from napari_action.inference.loaded_model import load_model
from napari_action.inference.out_of_core import intensity_statistics, predict_to_writer, sample_slices
from napari_action.inference.predictor import Predictor
from napari_action.io.label_writers import MemoryLabelWriter
from napari_action.io.nifti import load_volume
from napari_action.io.volume_source import ArraySlices, open_volume_source
from tests.helpers import engine


class RandomConvolution(torch.nn.Module):
    """A real network whose every voxel's class depends on its neighbours, its neighbouring slices and the padding.

    A trained tiny model predicts one class almost everywhere; this one's labels change with every
    input detail, so a streamed prediction that got the context, the padding or the normalisation
    wrong differs from the in-memory one.
    """

    def __init__(self, channels: int, classes: int = 3) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(channels, classes, kernel_size=5, padding=2)

    def forward(self, batch):
        return SimpleNamespace(logits=self.conv(batch))


def predictor_with_context(context: int) -> Predictor:
    net = RandomConvolution(2 * context + 1)
    # 6 mm of smoothing on 3 mm slices: the smoother holds a window across runs.
    return Predictor(net, [0, 1, 2], axis=2, context=context, device="cpu", smoothing_mm=6.0)


def streamed(predictor, source, batch_size):
    writer = MemoryLabelWriter(source.path, source.meta, predictor.label_dtype, predictor.axis)
    predict_to_writer(predictor, source, writer, batch_size=batch_size)
    return writer.labels


@pytest.mark.parametrize("kind", ["nii", "zarr", "memory"])
@pytest.mark.parametrize("context", [0, 2])
def test_streamed_labels_equal_the_in_memory_prediction(kind, context, tmp_path):
    predictor = predictor_with_context(context)
    image, _ = engine.disc_volume(4, shape=(30, 27, 10))  # padded to 32 x 32: the pad value counts
    image *= np.linspace(0.5, 1.5, 10, dtype=np.float32)  # slices differ: the context counts
    path = engine.write_nifti(tmp_path / "scan.nii", image)
    if kind == "zarr":
        path = convert_to_zarr(path, tmp_path / "scan.zarr", axis=2, chunk_slices=4)
    source = open_volume_source(path) if kind != "memory" else ArraySlices(*load_volume(path))
    expected, _ = predictor.predict(image, spacing=source.meta.zooms)
    assert np.unique(expected).size == 3
    # 3 slices per run: the 2.5D context and the smoothing window cross run boundaries.
    np.testing.assert_array_equal(streamed(predictor, source, batch_size=3), expected)


def test_a_trained_model_streams_the_same_labels_as_in_memory(model_file, tmp_path):
    predictor = load_model(model_file, device="cpu").predictor
    image, _ = engine.disc_volume(4)
    source = open_volume_source(engine.write_nifti(tmp_path / "scan.nii", image))
    expected, _ = predictor.predict(image, spacing=source.meta.zooms)
    np.testing.assert_array_equal(streamed(predictor, source, batch_size=4), expected)


def test_statistics_from_every_slice_are_the_training_normalisation():
    image, _ = engine.disc_volume(2)
    statistics = intensity_statistics(ArraySlices(image, _meta(image)), axis=0)
    assert statistics.exact
    exact = normalize_volume(image)
    np.testing.assert_array_equal(statistics.apply(image), exact)
    assert statistics.pad == float(exact.min())


def test_sampled_statistics_are_close_to_the_exact_ones_on_a_real_volume(nibabel_data, tmp_path):
    # nibabel's example EPI volume (128 x 96 x 24, int16): about every 10th slice, as for a 512 x 512 x 600 volume.
    path = tmp_path / "epi.nii"
    nib.save(nib.load(nibabel_data / "example4d.nii.gz").slicer[..., 0], path)
    volume, _ = load_volume(path)
    exact = normalize_volume(volume)
    for axis, slices in ((0, 13), (1, 10), (2, 3)):
        plane = volume.size // volume.shape[axis]
        statistics = intensity_statistics(open_volume_source(path), axis, budget=plane * slices)
        assert not statistics.exact
        difference = np.abs(np.moveaxis(statistics.apply(np.moveaxis(volume, axis, 0)), 0, axis) - exact)
        # In shares of the normalised intensity range: a standard deviation is a unit that depends on
        # which voxels it is measured over (the foreground's is a third of the whole volume's here). The
        # foreground is fewer voxels than the whole, so 10 slices of 96 estimate its moments less well:
        # 2.1 % of the range on average where the whole volume's were within 0.7 %.
        spread = float(exact.max() - exact.min())
        assert difference.mean() < 0.03 * spread, (axis, difference.mean() / spread)
        assert difference.max() < 0.05 * spread, (axis, difference.max() / spread)  # where the 99.5th percentile moved


def test_the_sample_spreads_over_the_volume():
    assert sample_slices(600, 512 * 512).tolist() == list(range(5, 600, 10))
    assert sample_slices(24, 100).tolist() == list(range(24))


def _meta(volume):
    from napari_action.io.volume_meta import VolumeMeta

    return VolumeMeta.from_affine(np.eye(4), volume.shape)

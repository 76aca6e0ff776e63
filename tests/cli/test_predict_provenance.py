"""``napari-action predict`` names itself and the model in every mask's NIfTI header (``descrip``)."""

from __future__ import annotations

import nibabel as nib

from napari_action import __version__
from napari_action.cli.main import main
from napari_action.io.checkpoint import load_checkpoint, weights_fingerprint
from tests.helpers.engine import cli_predict_args, disc_volume, write_nifti


def test_every_nifti_mask_names_the_version_and_the_model_that_predicted_it(model_file, tmp_path):
    image, _ = disc_volume(5)
    scan = write_nifti(tmp_path / "scan.nii.gz", image)
    expected = f"napari-action {__version__}, model {weights_fingerprint(load_checkpoint(model_file))[:12]}"
    runs = {
        "gz": [],  # gathered in memory, compressed at the end
        "nii": ["--output-format", "nii"],  # written slice by slice into a mapped file
        "kept": ["--largest-components", "1"],  # post-processed whole, then written
    }
    for folder, extra in runs.items():
        assert main([*cli_predict_args(model_file, scan, tmp_path / folder), *extra]) == 0
        (mask,) = (tmp_path / folder).glob("scan_action.nii*")
        assert nib.load(mask).header["descrip"].item().decode() == expected, folder

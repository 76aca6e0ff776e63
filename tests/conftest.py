"""Shared pytest set-up and the fixtures used by more than one test module.

Qt renders offscreen; OpenGL comes from the Xvfb display that pytest-xvfb
starts (napari's canvas needs a GL context even when the window is hidden).
Plain helpers (tiny configurations, synthetic volumes, GUI actions) live in
:mod:`tests.helpers`.
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import nibabel as nib  # noqa: E402  (the Qt platform must be chosen before anything imports Qt)
import numpy as np  # noqa: E402
import pytest  # noqa: E402

from tests.helpers import engine  # noqa: E402
from tests.helpers.data import colin27_folder, nibabel_data_dir  # noqa: E402


# -- environment ------------------------------------------------------------------------------
@pytest.fixture(autouse=True, scope="session")
def _autosave_in_temporary_folder(tmp_path_factory):
    """Widgets autosave into a temporary folder, never into the user's home."""
    folder = tmp_path_factory.mktemp("autosave")
    previous = os.environ.get("NAPARI_ACTION_AUTOSAVE_DIR")
    os.environ["NAPARI_ACTION_AUTOSAVE_DIR"] = str(folder)
    yield folder
    if previous is None:
        os.environ.pop("NAPARI_ACTION_AUTOSAVE_DIR", None)
    else:
        os.environ["NAPARI_ACTION_AUTOSAVE_DIR"] = previous


@pytest.fixture(autouse=True)
def settings_dir(tmp_path_factory, monkeypatch):
    """Each test remembers training options in a folder of its own, never in the user's config folder.

    Per test, not per run: a choice one test makes in the form must not become the next test's default.
    """
    folder = tmp_path_factory.mktemp("settings")
    monkeypatch.setenv("NAPARI_ACTION_SETTINGS_DIR", str(folder))
    return folder


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Torch computes on one CPU thread in the test process: the suite shares two cores with other jobs.

    (GUI workers set their own count in their own thread.)
    """
    import torch

    torch.set_num_threads(1)


@pytest.fixture
def torch_seed():
    """Seed torch's global generator (tests that draw random tensors with ``torch.randn``)."""
    import torch

    torch.manual_seed(0)


# -- real data --------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def colin27_dir():
    """Folder with Colin27 ``ch2.nii.gz`` and ``aal.nii.gz`` (installed or fetched; else skip)."""
    return colin27_folder()


@pytest.fixture(scope="session")
def nibabel_data():
    """Folder of the NIfTI test images shipped with nibabel."""
    return nibabel_data_dir()


@pytest.fixture(scope="module")
def colin_crop(colin27_dir, tmp_path_factory):
    """40x40x16 voxels of Colin27 around the basal ganglia, saved with the sliced (real) affine."""
    path = tmp_path_factory.mktemp("colin") / "colin_crop.nii.gz"
    nib.save(nib.load(colin27_dir / "ch2.nii.gz").slicer[70:110, 100:140, 70:86], path)
    return path


@pytest.fixture(scope="module")
def oblique(nibabel_data, tmp_path_factory):
    """nibabel's example4d, first volume: 128x96x24, 2x2x2.2 mm, rotated (non-diagonal) affine."""
    path = tmp_path_factory.mktemp("oblique") / "oblique.nii.gz"
    nib.save(nib.load(nibabel_data / "example4d.nii.gz").slicer[..., 0], path)
    return path


# -- synthetic data and models ----------------------------------------------------------------
@pytest.fixture
def nifti_files(tmp_path):
    """Two disc volumes, painted labels and the truth of the first, as NIfTI files in ``tmp_path``."""
    image, truth = engine.disc_volume(0)
    other, _ = engine.disc_volume(1)
    return {
        "image": engine.write_nifti(tmp_path / "scan.nii.gz", image),
        "other": engine.write_nifti(tmp_path / "other.nii.gz", other),
        "labels": engine.write_nifti(tmp_path / "painted.nii.gz", engine.sparse(truth)),
        "truth": engine.write_nifti(tmp_path / "truth.nii.gz", truth),
        "dir": tmp_path,
    }


@pytest.fixture(scope="module")
def supervised_trainer():
    """A trainer after two supervised steps on a disc volume (slicing axis 2, classes 0, 1, 2 named)."""
    from napari_action.training.trainer import Trainer

    image, truth = engine.disc_volume(0)
    config = engine.tiny_config(method="supervised", steps_stage3=2, num_threads=1)
    trainer = Trainer([image], [engine.sparse(truth)], config, class_names=engine.DISC_CLASS_NAMES)
    trainer.train()
    return trainer


@pytest.fixture(scope="module")
def model_file(supervised_trainer, tmp_path_factory):
    """The checkpoint of :func:`supervised_trainer`, saved to a file."""
    return supervised_trainer.save_checkpoint(tmp_path_factory.mktemp("model") / "model.pt")


# -- napari -----------------------------------------------------------------------------------
@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A napari viewer; no worker thread may outlive the test (the tests also wait themselves)."""
    from qtpy.QtCore import QThreadPool

    viewer = make_napari_viewer()
    yield viewer
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=30_000)


@pytest.fixture
def scene(viewer):
    """A viewer with an image, labels painted on slices 2 and 5, and the docked widget (tiny budget).

    Returns ``(viewer, widget, labels, truth)``.
    """
    from tests.helpers import gui

    image, truth = gui.disc_volume()
    viewer.add_image(image, name="vol", **gui.GRID)
    labels = viewer.add_labels(np.zeros(gui.SHAPE, np.uint8), name="vol labels", **gui.GRID)
    gui.paint(labels, truth)
    widget = gui.dock(viewer)
    return viewer, widget, labels, truth

"""Shared pytest set-up.

Qt renders offscreen; OpenGL comes from the Xvfb display that pytest-xvfb
starts (napari's canvas needs a GL context even when the window is hidden).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402  (the Qt platform must be chosen before anything imports Qt)

from tests.helpers.data import colin27_folder, nibabel_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def colin27_dir():
    """Folder with Colin27 ``ch2.nii.gz`` and ``aal.nii.gz`` (installed or fetched; else skip)."""
    return colin27_folder()


@pytest.fixture(scope="session")
def nibabel_data():
    """Folder of the NIfTI test images shipped with nibabel."""
    return nibabel_data_dir()


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


@pytest.fixture
def viewer(make_napari_viewer, qtbot):
    """A napari viewer; no worker thread may outlive the test (the tests also wait themselves)."""
    from qtpy.QtCore import QThreadPool

    viewer = make_napari_viewer()
    yield viewer
    qtbot.waitUntil(lambda: QThreadPool.globalInstance().activeThreadCount() == 0, timeout=30_000)

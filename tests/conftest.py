"""Shared pytest set-up.

Qt renders offscreen; OpenGL comes from the Xvfb display that pytest-xvfb
starts (napari's canvas needs a GL context even when the window is hidden).
"""

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import pytest  # noqa: E402  (the Qt platform must be chosen before anything imports Qt)

from ._data import colin27_folder, nibabel_data_dir  # noqa: E402


@pytest.fixture(scope="session")
def colin27_dir():
    """Folder with Colin27 ``ch2.nii.gz`` and ``aal.nii.gz`` (installed or fetched; else skip)."""
    return colin27_folder()


@pytest.fixture(scope="session")
def nibabel_data():
    """Folder of the NIfTI test images shipped with nibabel."""
    return nibabel_data_dir()

"""After a crash: the panel names the latest autosave, and Open session… starts where the autosaves are."""

from __future__ import annotations

import numpy as np

from napari_action._napari.files.panel import AUTOSAVE_ENV
from napari_action._napari.files.recovery import new_autosave_path, session_dialog_folder
from napari_action.io.save_lock import lock_path
from napari_action.io.session_store import Session, SessionVolume, save_session
from tests.helpers.gui import disc_volume, dock, wait_idle


def _store(path) -> None:
    painted = np.zeros((4, 8, 8), np.uint8)
    save_session(path, Session(volumes=[SessionVolume(name="vol", shape=painted.shape, painted=painted)]))


def test_the_latest_autosave_of_an_earlier_window_is_named_and_open_session_starts_in_its_folder(
    viewer, qtbot, tmp_path, monkeypatch
):
    # Autosaves sat in a hidden folder the open dialog does not show, and nothing said one existed.
    autosaves = tmp_path / "autosave"
    monkeypatch.setenv(AUTOSAVE_ENV, str(autosaves))
    _store(autosaves / "20261207-0900.action.zarr")
    _store(autosaves / "20261130-1200.action.zarr")  # saved last: the latest, whatever its name says
    (autosaves / "notes.txt").write_text("not a session")
    panel = dock(viewer).files_panel
    assert "The latest autosave is 20261130-1200.action.zarr, from today " in panel.status_label.text()
    assert panel.status_label.text().startswith("Not autosaved yet.")
    assert session_dialog_folder(panel.session_folder, autosaves) == autosaves

    viewer.add_image(disc_volume()[0], name="vol")
    panel.save_session(tmp_path / "work" / "mine.action.zarr")
    wait_idle(qtbot, panel.widget)
    assert session_dialog_folder(panel.session_folder, autosaves) == tmp_path / "work"


def test_without_an_autosave_nothing_is_hinted_and_the_dialog_starts_where_napari_runs(viewer, tmp_path, monkeypatch):
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path / "never made"))
    panel = dock(viewer).files_panel
    assert panel.status_label.text() == "Not autosaved yet."
    assert session_dialog_folder(panel.session_folder, tmp_path / "never made") == tmp_path.cwd()


def test_a_second_window_starting_to_autosave_in_the_same_second_takes_a_name_of_its_own(tmp_path):
    # Both took <time>.action.zarr and replaced each other's autosave every minute.
    first = new_autosave_path(tmp_path, "20261207-081500")
    assert first == tmp_path / "20261207-081500.action.zarr"
    _store(first)
    second = new_autosave_path(tmp_path, "20261207-081500")
    assert second == tmp_path / "20261207-081500-2.action.zarr"
    lock_path(second).touch()  # a third window is saving there right now
    assert new_autosave_path(tmp_path, "20261207-081500") == tmp_path / "20261207-081500-3.action.zarr"

"""After a crash: the panel names the latest autosave, and Open session… starts where the autosaves are."""

from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np

from napari_action._napari.files import panel as files_panel
from napari_action._napari.files.recovery import (
    AUTOSAVE_ENV,
    new_autosave_path,
    prune_autosaves,
    session_dialog_folder,
)
from napari_action.io import session_store
from napari_action.io.save_lock import lock_path
from napari_action.io.session_store import Session, SessionVolume, load_session, save_session
from tests.helpers.gui import disc_volume, dock, edit_slice, wait_idle


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


def test_two_windows_autosaving_in_the_same_second_keep_a_store_each(make_napari_viewer, qtbot, tmp_path, monkeypatch):
    # Both chose <time>.action.zarr before either had written it, and each replaced the other's autosave.
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path))
    one_second = SimpleNamespace(time=time.time, strftime=lambda *_: "20261207-081500")  # the panel's clock
    monkeypatch.setattr(files_panel, "time", one_second)
    widgets = []
    for number in range(2):
        viewer = make_napari_viewer()
        widgets.append(dock(viewer))
        image, truth = disc_volume(number)
        viewer.add_image(image, name=f"vol {number}")
        viewer.add_labels(truth, name=f"vol {number} labels")
    # Each window chooses its store before the other's worker has written a file of it (as timers firing
    # in one turn of the event loop, or two napari processes, do).
    paths = [widget.files_panel.autosave_target() for widget in widgets]
    assert all(widget.files_panel.autosave() for widget in widgets)
    for widget in widgets:
        wait_idle(qtbot, widget)
    assert paths[0] != paths[1]
    assert [[volume.name for volume in load_session(path).volumes] for path in paths] == [["vol 0"], ["vol 1"]]


def _stores_saved_days_ago(folder, days: list[float], monkeypatch) -> list:
    """A session store in ``folder`` saved ``days[i]`` days ago for each ``i``, in that order."""
    now, paths = time.time(), []
    for number, age in enumerate(days):
        monkeypatch.setattr(session_store.time, "time", lambda age=age: now - age * 86400)
        paths.append(folder / f"old-{number:02d}.action.zarr")
        _store(paths[-1])
        monkeypatch.undo()
    return paths


def test_autosaves_older_than_a_month_beyond_the_latest_ten_are_deleted_and_nothing_else(tmp_path, monkeypatch):
    # Every window autosaves to a store of its own, each holding its images: the hidden folder only grew.
    current, recent = _stores_saved_days_ago(tmp_path, [0.5, 2], monkeypatch)
    old = _stores_saved_days_ago(tmp_path / "x", [40 + day for day in range(14)], monkeypatch)
    old = [path.rename(tmp_path / path.name.replace("old", "older")) for path in old]
    lock_path(old[-1]).touch()  # the oldest is being written by another window right now
    (tmp_path / "mine.action.zarr").mkdir()  # no session time to date it by: not ours to delete
    # Kept: this window's own, then the 10 latest (2 days, 40 to 48 days), then the locked one.
    assert prune_autosaves(tmp_path, current=current) == old[9:13]
    kept = [current, recent, *old[:9], old[13], tmp_path / "mine.action.zarr"]
    assert all(path.exists() for path in kept) and not any(path.exists() for path in old[9:13])
    assert prune_autosaves(tmp_path, current=current) == []  # nothing more until they age


def test_an_autosave_prunes_the_autosave_folder_and_never_a_folder_of_the_users(viewer, qtbot, tmp_path, monkeypatch):
    autosaves = tmp_path / "autosave"
    monkeypatch.setenv(AUTOSAVE_ENV, str(autosaves))
    autosaves.mkdir()
    old = _stores_saved_days_ago(autosaves, [40 + day for day in range(11)], monkeypatch)
    monkeypatch.setenv(AUTOSAVE_ENV, str(autosaves))  # undone with the clock above
    widget = dock(viewer)
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    viewer.add_labels(truth, name="vol labels")  # something worth keeping
    assert widget.files_panel.autosave()
    wait_idle(qtbot, widget)
    assert not old[-1].exists() and all(path.exists() for path in old[:-1])  # 10 kept beside this window's
    # Beside a session the user saved, autosaves go to its folder: nothing there is ever pruned.
    mine = _stores_saved_days_ago(tmp_path / "work", [40 + day for day in range(12)], monkeypatch)
    monkeypatch.setenv(AUTOSAVE_ENV, str(autosaves))
    widget.files_panel.save_session(tmp_path / "work" / "mine.action.zarr")
    wait_idle(qtbot, widget)
    assert widget.files_panel.autosave()
    wait_idle(qtbot, widget)
    assert all(path.exists() for path in mine)


def test_a_failed_autosave_removes_the_folder_it_claimed_and_nothing_else(viewer, qtbot, tmp_path, monkeypatch):
    # The folder claimed for the first autosave stayed, empty, when the write failed: no prune ever removed it (it
    # says no time) and Open session… listed it beside the autosaves, one more each time it happened.
    monkeypatch.setenv(AUTOSAVE_ENV, str(tmp_path))
    widget = dock(viewer)
    image, truth = disc_volume()
    viewer.add_image(image, name="vol")
    labels = viewer.add_labels(truth, name="vol labels")
    panel = widget.files_panel
    claimed = panel.autosave_target()
    assert claimed.is_dir()
    lock_path(claimed).mkdir()  # the save's lock file cannot be made there, as on a full disk or a refused write
    assert panel.autosave()
    wait_idle(qtbot, widget)
    assert not claimed.exists() and lock_path(claimed).is_dir()  # what it claimed went; what it did not make stayed
    assert panel.status_label.text().startswith("Autosave failed: ")
    assert panel.status_label.text().endswith("Your work is still in the layers; the next autosave tries again.")

    lock_path(claimed).rmdir()
    assert panel.autosave()  # under a name claimed again
    wait_idle(qtbot, widget)
    saved = panel.autosave_path
    assert [volume.name for volume in load_session(saved).volumes] == ["vol"]
    lock_path(saved).mkdir()
    before = labels.data.copy()
    edit_slice(labels, 3, 2)  # something new to save
    assert panel.autosave()
    wait_idle(qtbot, widget)
    assert panel.status_label.text().startswith("Autosave failed: ")
    assert panel.autosave_path == saved and np.array_equal(load_session(saved).volumes[0].painted, before)

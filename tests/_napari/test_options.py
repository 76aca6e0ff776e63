"""GUI tests of the training options: config <-> form, sessions, and choices remembered between napari sessions.

Every test docks the real widget in a real (hidden) napari viewer. The autouse ``settings_dir``
fixture (tests/conftest.py) gives each test its own remembered-options folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from napari.utils.notifications import notification_manager

from napari_action._napari.options import VIEWER_AXIS, OptionsForm
from napari_action._napari.remembered import (
    FILE_NAME,
    SETTINGS_ENV,
    DamagedSettingsError,
    read_options,
    write_options,
)
from napari_action.config import TrainConfig
from napari_action.io.session_store import load_session
from napari_action.runtime import cpu_has_native_bfloat16
from tests.helpers.gui import TIMEOUT, dock, messages_since, wait_idle

LEGACY_SESSION = Path(__file__).resolve().parents[1] / "fixtures" / "v0_1_0" / "session.action.zarr"

#: A value other than the default for every option (the budget's own steps would be 30000).
CHOSEN = {
    "budget": "paper",
    "axis": 2,
    "method": "mean-teacher",
    "prior_source": "interpolation",
    "unpainted_prior": "registration" if TrainConfig().unpainted_prior == "none" else "none",
    "structure_ends": "cut" if TrainConfig().structure_ends != "cut" else "network",
    "steps_stage3": 1234,
    "device": "cpu",
    "num_threads": 1,
    "cpu_bfloat16": False,
}


def choose(form, values: dict) -> None:
    """Set options one widget at a time, as clicks do (the budget first: it resets the steps)."""
    for name in sorted(values, key=lambda name: name != "budget"):
        form[name].value = values[name]


def test_every_option_is_chosen_here_and_differs_from_its_default(viewer):
    form = dock(viewer).options
    # An option added to the form without a test value fails here.
    assert set(form.option_names) == set(CHOSEN)
    defaults = form.asdict()
    differing = {name for name in CHOSEN if CHOSEN[name] != defaults[name]}
    # Only a one-core machine has no other thread count to choose.
    assert differing == set(CHOSEN) - ({"num_threads"} if form.num_threads.max == 1 else set())


@pytest.mark.parametrize("axis", [None, 0, 2])
def test_config_to_form_to_config_keeps_every_option(viewer, axis):
    form = dock(viewer).options
    fields = {name: value for name, value in CHOSEN.items() if name != "budget"}
    stored = TrainConfig.preset(CHOSEN["budget"], **{**fields, "axis": axis})
    assert form.show_config(stored.to_dict()) == []
    assert form.asdict() == {**CHOSEN, "axis": axis}
    again = form.config(viewer_axis=1)
    for name in form.option_names:
        assert getattr(again, name) == getattr(stored, name), name
    # The budget's other sizes come with it, not only its name.
    assert again.crop_size == TrainConfig.preset("paper").crop_size


def test_a_session_config_of_an_earlier_release_shows_its_renamed_settings(viewer):
    # Sessions of early December recorded the hard bound at the propagated extent and amp = None; the form
    # showed the remembered structure ends and CPU precision instead of what the session was trained with.
    form = dock(viewer).options
    form.structure_ends.value, form.cpu_bfloat16.value = "taper", False
    stored = TrainConfig.preset("cpu").to_dict()
    del stored["structure_ends"], stored["cpu_bfloat16"]
    assert form.show_config({**stored, "predict_within_propagated_extent": False, "amp": None}) == []
    assert (form.structure_ends.value, form.cpu_bfloat16.value) == ("network", None)


def test_form_to_config_to_form_keeps_every_option_and_resolves_the_viewer_axis(viewer):
    form = dock(viewer).options
    choose(form, CHOSEN)
    assert form.asdict() == CHOSEN
    config = form.config(viewer_axis=0, seed=7)  # overrides win
    other = dock(viewer).options
    assert other.show_config(config.to_dict()) == []
    assert other.asdict() == CHOSEN and config.seed == 7
    form.axis.value = VIEWER_AXIS  # the viewer's axis at the moment of asking
    assert form.config(viewer_axis=1).axis == 1 and form.axis_choice(viewer_axis=2) == 2


def test_a_budget_resets_the_steps_to_its_own_schedule(viewer):
    form = dock(viewer).options
    form.steps_stage3.value = 55
    form.budget.value = "paper"
    assert form.steps_stage3.value == TrainConfig.preset("paper").steps_stage3
    # Given together, the steps win whatever order they come in.
    assert form.update({"steps_stage3": 66, "budget": "cpu"}) == []
    assert form.asdict()["steps_stage3"] == 66 and form.budget.value == "cpu"


def test_the_device_line_names_the_cpu_precision_each_choice_resolves_to(viewer):
    form = dock(viewer).options
    form.device.value = "cpu"
    assert form.device_label.value == f"will use: CPU, {'bfloat16' if cpu_has_native_bfloat16() else 'float32'}"
    form.cpu_bfloat16.value = False
    assert form.device_label.value == "will use: CPU, float32"
    form.cpu_bfloat16.value = True
    assert form.device_label.value == "will use: CPU, bfloat16"
    assert form.config(viewer_axis=0).cpu_bfloat16 is True


def test_values_the_form_cannot_show_are_skipped_and_named(viewer):
    form = dock(viewer).options
    before = form.asdict()
    skipped = form.update(
        {"device": "tpu", "axis": True, "steps_stage3": "many", "num_threads": 10_000, "method": "supervised", "new": 1}
    )
    assert len(skipped) == 3
    assert "device 'tpu': not available here" in skipped[0]
    assert "slicing axis True" in skipped[1]  # JSON's true is not axis 1
    assert "stage iii steps 'many': not a whole number" in skipped[2]
    assert form.asdict() == {**before, "method": "supervised", "num_threads": form.num_threads.max}


def test_an_opened_session_restores_every_option_over_the_remembered_ones(
    scene, make_napari_viewer, qtbot, tmp_path, monkeypatch
):
    first, widget, _, _ = scene
    widget.config_overrides = {}  # the form alone decides what the session records
    choose(widget.options, CHOSEN)
    store = tmp_path / "work.action.zarr"
    widget.files_panel.save_session(store)
    wait_idle(qtbot, widget)
    assert {name: load_session(store).config[name] for name in CHOSEN} == CHOSEN

    # Another napari, elsewhere, remembers other choices.
    monkeypatch.setenv(SETTINGS_ENV, str(tmp_path / "other settings"))
    write_options(tmp_path / "other settings" / FILE_NAME, {"method": "supervised", "num_threads": 2})
    second = make_napari_viewer()
    reopened = dock(second)
    assert reopened.options.method.value == "supervised"
    before = len(notification_manager.records)
    reopened.files_panel.open_session(store)
    wait_idle(qtbot, reopened)
    assert reopened.options.asdict() == CHOSEN
    assert not messages_since(before, "warning")
    assert "vol labels" in second.layers
    # Shown, not remembered: the next new viewer there starts from that user's own choices.
    second.close()
    assert read_options(tmp_path / "other settings" / FILE_NAME) == {"method": "supervised", "num_threads": 2}


def test_a_session_of_release_0_1_opens_with_the_options_it_recorded(viewer, qtbot, tmp_path, settings_dir):
    # A copy: the widget autosaves next to an opened session, which must never be the fixture.
    store = shutil.copytree(LEGACY_SESSION, tmp_path / "old.action.zarr")
    write_options(settings_dir / FILE_NAME, {"prior_source": "interpolation", "num_threads": 1, "axis": 1})
    widget = dock(viewer)
    widget.files_panel.open_session(store)
    wait_idle(qtbot, widget)
    assert widget.predict_button.isEnabled()  # its model is back
    # 0.1 recorded budget, method, steps, device and axis; it knew no label source, no prior for unpainted
    # images, no structure ends, no thread count and no CPU precision: those keep their remembered or default values.
    assert widget.options.asdict() == {
        "budget": "cpu",
        "axis": None,
        "method": "action",
        "prior_source": "interpolation",
        "unpainted_prior": "none",
        "structure_ends": "auto",
        "steps_stage3": 1,
        "device": "cpu",
        "num_threads": 1,
        "cpu_bfloat16": None,
    }


def test_choices_are_remembered_for_the_next_napari_session(make_napari_viewer, qtbot, settings_dir):
    path = settings_dir / FILE_NAME
    first = make_napari_viewer()
    widget = dock(first)
    assert not path.exists()  # nothing chosen yet, nothing written
    choose(widget.options, CHOSEN)
    qtbot.waitUntil(lambda: path.exists() and read_options(path) == CHOSEN, timeout=TIMEOUT)
    first.close()

    second = make_napari_viewer()
    assert dock(second).options.asdict() == CHOSEN
    assert not list(settings_dir.glob("*.part"))  # written atomically: no temporary file left


def test_options_never_changed_follow_the_defaults_of_a_newer_release(viewer, settings_dir):
    # The file kept every option: a user of a release whose default was "taper" kept "taper" for good.
    today = OptionsForm().asdict()
    then = dict(today, structure_ends="taper", steps_stage3=600)  # an older release's defaults
    chosen = dict(then, method="supervised", steps_stage3=300)  # what its user chose
    write_options(settings_dir / FILE_NAME, chosen, then)
    options = dock(viewer).options.asdict()
    assert options["structure_ends"] == today["structure_ends"] != "taper"
    assert options["method"] == "supervised" and options["steps_stage3"] == 300


def test_a_file_written_before_the_defaults_were_kept_gives_every_option(viewer, settings_dir):
    write_options(settings_dir / FILE_NAME, {"structure_ends": "taper", "method": "supervised"})
    options = dock(viewer).options.asdict()
    assert options["structure_ends"] == "taper" and options["method"] == "supervised"


def test_the_last_change_is_kept_when_napari_closes_at_once(make_napari_viewer, settings_dir):
    viewer = make_napari_viewer()
    widget = dock(viewer)
    widget.options.method.value = "supervised"
    viewer.close()  # before the pause that would have written it
    assert read_options(settings_dir / FILE_NAME)["method"] == "supervised"


@pytest.mark.parametrize(
    "content",
    [b'{"format": "napari-action-options", "version": 1, "options": {"method": "sup', b"\xff\xfe\x00garbage"],
    ids=["truncated", "not text"],
)
def test_a_damaged_file_is_ignored_with_a_warning_and_replaced_by_the_next_choice(viewer, qtbot, settings_dir, content):
    path = settings_dir / FILE_NAME
    path.write_bytes(content)
    before = len(notification_manager.records)
    widget = dock(viewer)
    [warning] = messages_since(before, "warning")
    assert str(path) in warning and "remembered training options were ignored" in warning
    assert widget.options.asdict() == OptionsForm().asdict()  # the defaults
    widget.options.method.value = "supervised"
    qtbot.waitUntil(lambda: b"supervised" in path.read_bytes(), timeout=TIMEOUT)
    assert read_options(path)["method"] == "supervised"


def test_remembered_values_this_machine_cannot_use_are_skipped_with_a_warning(viewer, settings_dir):
    write_options(settings_dir / FILE_NAME, {"device": "tpu", "num_threads": 10_000, "method": "supervised"})
    before = len(notification_manager.records)
    form = dock(viewer).options
    [warning] = messages_since(before, "warning")
    assert warning.startswith("ACTION: remembered training option device 'tpu': not available here")
    assert form.method.value == "supervised" and form.device.value == "auto"
    assert form.num_threads.value == form.num_threads.max  # a thread count from a bigger machine, capped


def test_a_folder_that_cannot_hold_the_file_costs_only_the_remembering(viewer, qtbot, tmp_path, monkeypatch, caplog):
    blocker = tmp_path / "a file"
    blocker.write_text("")
    monkeypatch.setenv(SETTINGS_ENV, str(blocker / "settings"))  # a folder inside a file
    before = len(notification_manager.records)
    widget = dock(viewer)
    [warning] = messages_since(before, "warning")
    assert "cannot be read" in warning and "ignored" in warning
    widget.options.method.value = "supervised"
    qtbot.waitUntil(lambda: "could not remember the training options" in caplog.text, timeout=TIMEOUT)
    assert widget.options.method.value == "supervised" and blocker.read_text() == ""


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("[1, 2]", "is not a napari-action options file"),
        ('{"format": "something else", "version": 1, "options": {}}', "is not a napari-action options file"),
        ('{"format": "napari-action-options", "version": 1, "options": []}', "is not a napari-action options file"),
        ('{"format": "napari-action-options", "version": 9, "options": {}}', "written by a newer napari-action"),
        ("{", "cannot be read"),
    ],
)
def test_files_that_are_not_remembered_options_are_refused_in_words(tmp_path, content, reason):
    path = tmp_path / FILE_NAME
    path.write_text(content)
    with pytest.raises(DamagedSettingsError, match=reason):
        read_options(path)


def test_no_file_means_nothing_remembered_and_writing_creates_its_folder(tmp_path):
    path = tmp_path / "new" / "folder" / FILE_NAME
    assert read_options(path) == {}
    write_options(path, {"axis": None, "steps_stage3": 5})
    assert read_options(path) == {"axis": None, "steps_stage3": 5}
    assert [p.name for p in path.parent.iterdir()] == [FILE_NAME]


def test_every_row_of_the_form_says_what_it_does_on_hover(viewer):
    """The method and device choices had no tooltip: "mean-teacher" and "auto" went unexplained."""
    form = dock(viewer).options
    rows = [widget for widget in form if widget.name != "device_label"]  # the line that describes the device
    assert [widget.name for widget in rows if not widget.tooltip] == []

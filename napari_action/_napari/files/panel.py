"""The "Model, export & session" panel of the ACTION dock widget.

Buttons: *Load model…* (a checkpoint replaces the trained model, so "Predict
all opened volumes" works without training and the next Train continues from
it), *Predict selected* (the selected image layers only), *Export refined
masks…* (one NIfTI per prediction layer, with the source geometry), *Save
session…* and *Open session…* (a crash-safe zarr store of everything made in
the viewer), plus autosave: every :attr:`FilesPanel.autosave_interval_s`
seconds while there is something to keep, and whenever training stops.

Slow work (reading checkpoints and sessions, hashing source files, writing
stores and NIfTI files) runs in napari thread workers; only the copies of the
layers are taken on the GUI thread, so the user can keep painting while a save
runs. Worker errors become napari notifications.

No save replaces the user's files unasked: export asks before replacing masks,
*Save session…* asks before replacing a session (the save dialog asks about
files only, and a session is a folder), and the core refuses to replace a file
or folder that is not a session. A save that fails (folder not writable, disk
full) leaves the previous file as it was and its notification says what to do.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QFileDialog, QGridLayout, QGroupBox, QLabel, QMessageBox, QPushButton

from napari_action._napari.files.export import Overwrite, plan_export, resolve_overwrite, write_export
from napari_action._napari.files.jobs import PanelJobs
from napari_action._napari.files.provenance import provenance_record
from napari_action._napari.files.recovery import (
    autosave_after_opening,
    autosave_sibling,
    default_autosave_dir,
    new_autosave_path,
    prune_autosaves,
    recovery_hint,
    release_claim,
    session_dialog_folder,
)
from napari_action._napari.files.snapshot import (
    apply_session,
    has_content,
    read_session,
    take_snapshot,
    write_snapshot,
)
from napari_action._napari.layers import image_layers, is_prediction_layer
from napari_action._napari.run_state import RunState
from napari_action._napari.threads import new_worker
from napari_action._napari.view_plane import geometry_in_training_order, viewer_slicing_axis
from napari_action.inference.loaded_model import LoadedModel, load_model
from napari_action.io.errors import describe_error
from napari_action.io.geometry import geometry_warnings
from napari_action.io.session_store import SESSION_SUFFIX, HashCache, is_session_store

logger = logging.getLogger(__name__)

#: Export's tooltip, and what it says while a prediction job writes into the prediction layers (Export disabled).
EXPORT_TIP = "One NIfTI file per '<image> ACTION' layer, with the image's geometry."
WAITING_FOR_PREDICT = (
    "Predict is writing into the '<image> ACTION' layers: Export is back once it has finished (or Stop ended it)."
)


def session_path(chosen: str | Path) -> Path:
    """The store for a name chosen in the save dialog: ``work`` becomes ``work.action.zarr``."""
    chosen = str(chosen)
    return Path(chosen if chosen.endswith(".zarr") else chosen + SESSION_SUFFIX)


class FilesPanel(QGroupBox):
    """Load a model, export masks, save and open sessions, autosave.

    Parameters
    ----------
    widget : ActionWidget
        The dock widget whose viewer, training state and form this panel uses.

    Attributes
    ----------
    autosave_path : pathlib.Path or None
        Where the next autosave goes: fixed at the first autosave (a time-stamped
        store in :func:`default_autosave_dir`), or next to the session last
        saved or opened.
    """

    def __init__(self, widget):
        super().__init__("Model, export && session")  # "&&": a literal "&", not a shortcut
        self.widget = widget
        self.viewer = widget.viewer
        self.autosave_path: Path | None = None
        self._claimed: Path | None = None  # the store's folder autosave_target made, empty until a save succeeds
        self.session_folder: Path | None = None  # of the session last saved or opened: where Open session… starts
        self.last_autosave: float | None = None
        self._opening: Path | None = None
        self._hashes = HashCache()
        self._jobs = PanelJobs(self._job_done)
        self._autosave_again = False
        # The jobs object is no QObject, so it still hears this when the panel's C++ side dies.
        self.destroyed.connect(self._jobs.close)
        self._autosaved_run = None
        self._build()
        self.timer = QTimer(self)
        self.timer.timeout.connect(self.autosave)
        self.autosave_interval_s = 60.0
        self.timer.start()
        widget.state_changed.connect(self._on_state_changed)
        for event in (
            self.viewer.layers.events.inserted,
            self.viewer.layers.events.removed,
            self.viewer.layers.selection.events.changed,
        ):
            event.connect(self._refresh)

    def _build(self) -> None:
        self.load_button = QPushButton("Load model…")
        self.predict_selected_button = QPushButton("Predict selected")
        self.predict_selected_button.setToolTip("Predict the selected image layers only.")
        self.export_button = QPushButton("Export refined masks…")
        self.export_button.setToolTip(EXPORT_TIP)
        self.save_session_button = QPushButton("Save session…")
        self.open_session_button = QPushButton("Open session…")
        self.status_label = QLabel(
            " ".join(filter(None, ["Not autosaved yet.", recovery_hint(default_autosave_dir())]))
        )
        self.status_label.setWordWrap(True)
        grid = QGridLayout(self)
        grid.addWidget(self.load_button, 0, 0)
        grid.addWidget(self.predict_selected_button, 0, 1)
        grid.addWidget(self.export_button, 1, 0, 1, 2)
        grid.addWidget(self.save_session_button, 2, 0)
        grid.addWidget(self.open_session_button, 2, 1)
        grid.addWidget(self.status_label, 3, 0, 1, 2)
        self.load_button.clicked.connect(self._on_load_clicked)
        self.predict_selected_button.clicked.connect(self.predict_selected)
        self.export_button.clicked.connect(self._on_export_clicked)
        self.save_session_button.clicked.connect(self._on_save_clicked)
        self.open_session_button.clicked.connect(self._on_open_clicked)

    # -- state ---------------------------------------------------------------------------
    @property
    def autosave_interval_s(self) -> float:
        """Seconds between two autosaves (tests make it short)."""
        return self.timer.interval() / 1000.0

    @autosave_interval_s.setter
    def autosave_interval_s(self, seconds: float) -> None:
        self.timer.setInterval(max(1, int(seconds * 1000)))

    @property
    def is_busy(self) -> bool:
        """A load, export, save, open or autosave is running."""
        return bool(self._jobs.running)

    def _refresh(self, *_) -> None:
        state, running = self.widget.training_state, set(self._jobs.running)
        loading = bool(running & {"load", "open"})
        self.load_button.setEnabled(not state.busy and not loading)
        self.open_session_button.setEnabled(not state.busy and not loading)
        self.predict_selected_button.setEnabled(self.widget.predict_button.isEnabled() and bool(self._selected()))
        has_predictions = any(is_prediction_layer(layer) for layer in self.viewer.layers)
        # A job writing the layers: an export now would mix its new masks with the last prediction's.
        self.export_button.setEnabled(has_predictions and "export" not in running and not state.predicting)
        self.export_button.setToolTip(WAITING_FOR_PREDICT if state.predicting else EXPORT_TIP)
        self.save_session_button.setEnabled("save" not in running)

    def _job_done(self, name: str) -> None:
        self._refresh()
        if name == "autosave" and self._autosave_again:  # asked for while the last one ran
            self._autosave_again = False
            self.autosave()

    def _on_state_changed(self) -> None:
        self._refresh()
        run, waiting = self.widget.run, self.widget.training_state.job_running
        # Once per run, after the prediction that ends it (or the user's job that waited for it) has landed:
        # the labels, model and layers it ended with.
        if run is not None and run.state is RunState.FINISHED and run is not self._autosaved_run and not waiting:
            self._autosaved_run = run
            self.autosave()

    def _start(
        self,
        name: str,
        func: Callable,
        *args,
        on_returned: Callable,
        on_error: Callable | None = None,
        notify: bool = True,
    ) -> None:
        """Run ``func(*args)`` in a napari worker; its errors become notifications if ``notify``."""
        worker = new_worker(func, *args, notify_errors=notify)
        self._jobs.add(name, worker, on_returned, on_error)
        self._refresh()
        worker.start()

    # -- model -----------------------------------------------------------------------------
    def _on_load_clicked(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Load ACTION model", "", "ACTION model (*.pt);;All files (*)")
        if path:
            self.load_model(path)

    def load_model(self, path: str | Path) -> bool:
        """Read a checkpoint in a worker; False if the widget is busy (a notification says so)."""
        if self.widget.training_state.busy or "load" in self._jobs.running:
            show_error("ACTION: wait until training or prediction has finished before loading a model.")
            return False
        self.status_label.setText(f"Loading {Path(path).name}…")
        self._start("load", load_model, str(path), on_returned=self._on_model_loaded, on_error=self._on_load_failed)
        return True

    def _on_load_failed(self, exc: Exception) -> None:
        self.status_label.setText(f"Model not loaded: {describe_error(exc)}")

    def _on_model_loaded(self, model: LoadedModel) -> None:
        self.widget.training_state.use_model(model, model.checkpoint())
        self.widget.refresh()  # enables "Predict all opened volumes" and "Save model…"
        classes = ", ".join(model.class_names.get(int(v), str(v)) for v in model.class_values)
        self.status_label.setText(f"Model {Path(model.source).name}: classes {classes}; slicing axis {model.axis}.")
        show_info(f"ACTION: model loaded from {model.source}; Train continues from it.")

    # -- prediction ---------------------------------------------------------------------------
    def _selected(self) -> list[str]:
        selection = self.viewer.layers.selection
        return [layer.name for layer in image_layers(self.viewer) if layer in selection]

    def predict_selected(self) -> None:
        """Predict the selected image layers with the current model."""
        self.widget.predict_images(self._selected())

    def references(self) -> list:
        """Geometry of the volumes the current model was trained on, in the voxel order it saw them (empty if
        unknown, or no model)."""
        model = self.widget.training_state.trainer
        return [] if model is None else list(model.references)

    def warn_geometry(self, names=None) -> list[str]:
        """Warn about images sliced at another spacing or orientation than the training volumes."""
        model = self.widget.training_state.trainer
        if model is None:
            return []
        # As prediction reads them: a scan stored in another voxel order is read in the training one.
        targets = [
            (image.name, geometry_in_training_order(model, image))
            for image in image_layers(self.viewer)
            if names is None or image.name in names
        ]
        messages = geometry_warnings(self.references(), targets, int(model.axis), pixel_mm=model.pixel_mm)
        for message in messages:
            show_warning(f"ACTION: {message}")
        return messages

    # -- export -------------------------------------------------------------------------------
    def _on_export_clicked(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Export refined masks to folder")
        if folder:
            self.export_masks(folder, overwrite=self._ask_overwrite)

    def _ask_overwrite(self, existing: list[Path]) -> bool:
        names = "\n".join(path.name for path in existing[:10]) + ("\n…" if len(existing) > 10 else "")
        return self._confirm("Replace files?", f"{len(existing)} file(s) already exist:\n{names}\n\nReplace them?")

    def _confirm(self, title: str, text: str) -> bool:
        """A Yes/No question, No by default; True if the user chose Yes."""
        answer = QMessageBox.question(
            self,
            title,
            text,
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        return answer == QMessageBox.StandardButton.Yes

    def export_masks(self, folder: str | Path, overwrite: Overwrite = False) -> bool:
        """Write every prediction layer to ``folder`` as ``<image name>_action.nii.gz``.

        Parameters
        ----------
        folder : str or Path
            An existing folder.
        overwrite : bool or callable
            Replace existing files; a callable gets the list of existing files
            and returns whether to replace them (the GUI asks the user). Files
            not replaced are left untouched and reported.

        Returns
        -------
        bool
            False when there was nothing to export, an export is running, or a prediction job writes the layers.
        """
        if self.widget.training_state.predicting:  # the button is disabled then; a script's call is refused
            show_warning(
                "ACTION: not exported: Predict is writing new predictions into the '<image> ACTION' layers, so some "
                "masks would be the new ones and some the last ones. Export once it has finished, or press Stop to "
                "end it."
            )
            return False
        describe = partial(provenance_record, self.viewer, self.widget.training_state, hashes=self._hashes)
        items = plan_export(self.viewer, folder, describe)
        if not items or "export" in self._jobs.running:
            show_warning(
                "ACTION: no '<image> ACTION' layer to export yet."
                if not items
                else "ACTION: an export is already running."
            )
            return False
        kept, skipped, replace = resolve_overwrite(items, overwrite)
        self._start("export", write_export, kept, skipped, replace, on_returned=self._on_exported)
        return True

    def _on_exported(self, result) -> None:
        lines = [f"ACTION: exported {len(result.written)} file(s):", *(str(p) for p in result.written)]
        if result.skipped:
            lines += [f"kept {len(result.skipped)} existing file(s) unchanged:", *(str(p) for p in result.skipped)]
        show_info("\n".join(lines))
        self.status_label.setText(f"Exported {len(result.written)} mask(s).")

    # -- sessions ------------------------------------------------------------------------------
    def snapshot(self):
        """Copy what a session stores (GUI thread; see :func:`.snapshot.take_snapshot`)."""
        widget = self.widget
        try:
            config = widget.options.config(viewer_slicing_axis(self.viewer), **widget.config_overrides)
        except ValueError as error:  # odd overrides (set by scripts): the session has no config, and the log says why
            logger.warning("ACTION: the session is saved without its training options: %s", error)
            config = None
        picked = widget.picker.selected_labels()
        return take_snapshot(self.viewer, widget.training_state, picked, config, self.references())

    def _on_save_clicked(self) -> None:
        chosen, _ = QFileDialog.getSaveFileName(
            self, "Save ACTION session", f"session{SESSION_SUFFIX}", f"ACTION session (*{SESSION_SUFFIX})"
        )
        if chosen and self._may_replace_session(session_path(chosen)):
            self.save_session(session_path(chosen))

    def _may_replace_session(self, target: Path) -> bool:
        """Ask before a save replaces an existing session.

        The save dialog asks about existing files only; a session is a folder, and
        its name often gets the suffix only after the dialog closed. Anything else
        that exists under that name is refused by ``save_session`` with its own message.
        """
        if not is_session_store(target):
            return True
        return self._confirm(
            "Replace session?", f"The session {target.name} already exists in {target.parent}.\n\nReplace it?"
        )

    def save_session(self, path: str | Path) -> bool:
        """Write a session store to ``path`` in a worker; later autosaves go next to it."""
        if "save" in self._jobs.running:
            show_warning("ACTION: a session is being saved already.")
            return False
        snapshot = self.snapshot()
        if snapshot.left_out:
            show_warning(
                "ACTION: not in the session (no image of their shape, a second Labels layer on one image, or the "
                f"prediction of a closed image, which Export refined masks… writes): {', '.join(snapshot.left_out)}"
            )
        self._start("save", write_snapshot, str(path), snapshot, self._hashes, on_returned=self._on_session_saved)
        return True

    def _on_session_saved(self, path) -> None:
        self.autosave_path, self.session_folder = autosave_sibling(path), Path(path).parent
        self.status_label.setText(f"Session saved {time.strftime('%H:%M:%S')}.")
        show_info(f"ACTION: session saved to {path}")

    def _on_open_clicked(self) -> None:
        start = session_dialog_folder(self.session_folder, default_autosave_dir())
        path = QFileDialog.getExistingDirectory(self, f"Open ACTION session (a *{SESSION_SUFFIX} folder)", str(start))
        if path:
            self.open_session(path)

    def open_session(self, path: str | Path) -> bool:
        """Read a session store in a worker, then add its layers and model to the viewer."""
        if self.widget.training_state.busy or {"open", "load"} & set(self._jobs.running):
            show_error("ACTION: wait until training or prediction has finished before opening a session.")
            return False
        self.status_label.setText(f"Opening {Path(path).name}…")
        self._opening = Path(path)
        self._start("open", read_session, str(path), on_returned=self._on_session_read, on_error=self._on_open_failed)
        return True

    def _on_open_failed(self, exc: Exception) -> None:
        self.status_label.setText(f"Session not opened: {describe_error(exc)}")

    def _on_session_read(self, restored) -> None:
        apply_session(self.viewer, self.widget.training_state, restored, self.widget.picker)
        # Every training option the session recorded; they replace the remembered ones.
        skipped = self.widget.options.show_config(restored.session.config)
        self.widget.refresh()  # a restored model enables "Predict all" and "Save model…"
        for message in [*restored.warnings, *(f"the session's training option {s}" for s in skipped)]:
            show_warning(f"ACTION: {message}")
        self.autosave_path, newer_autosave = autosave_after_opening(self._opening, restored.session.saved_at)
        self.session_folder = self._opening.parent
        if newer_autosave is not None:
            show_warning(f"ACTION: {newer_autosave}")
        self.status_label.setText(f"Session opened: {len(restored.session.volumes)} volume(s).")
        show_info(f"ACTION: session {self._opening} opened.")

    # -- autosave ----------------------------------------------------------------------------
    def autosave_target(self) -> Path:
        """Where autosaves go (fixed at the first autosave of this panel)."""
        if self.autosave_path is None:
            self.autosave_path = new_autosave_path(default_autosave_dir(), time.strftime("%Y%m%d-%H%M%S"))
            # A folder there now is one it made (it returns a path it could not create only where mkdir failed).
            self._claimed = self.autosave_path if self.autosave_path.is_dir() else None
        return self.autosave_path

    def autosave(self) -> bool:
        """Save the session to :meth:`autosave_target` in a worker, if there is anything to keep.

        One asked for while the previous one runs follows it (so the state at
        the end of a run is saved). Failures show in the status line only (a
        notification every minute would bury the user).
        """
        if "autosave" in self._jobs.running:
            self._autosave_again = True
            return False
        if not has_content(self.viewer, self.widget.training_state):
            return False
        snapshot = self.snapshot()
        self._start(
            "autosave",
            partial(write_snapshot, unless_unchanged=True),
            str(self.autosave_target()),
            snapshot,
            self._hashes,
            on_returned=self._on_autosaved,
            on_error=self._on_autosave_failed,
            notify=False,
        )
        return True

    def autosave_before_closing(self) -> Path | None:
        """The viewer is closing: autosave now, on this thread (a worker would die with the window, or the
        process), what changed since the last autosave; the store, or None with nothing to keep or a failed save
        (logged: closing goes on)."""
        if not has_content(self.viewer, self.widget.training_state):
            return None
        snapshot = self.snapshot()
        if not snapshot.session.volumes:  # the layers went first (a script's viewer.close()): keep the last autosave
            return None
        try:  # a running autosave of the same store finishes first (the save's lock)
            path = write_snapshot(str(self.autosave_target()), snapshot, self._hashes, unless_unchanged=True)
        except Exception as error:  # noqa: BLE001 (whatever failed, the window must close)
            logger.error("the autosave on closing failed: %s", describe_error(error))
            self._release_claim()
            return None
        self.last_autosave, self._claimed = time.time(), None
        return path

    def _on_autosaved(self, path) -> None:
        self.last_autosave, self._claimed = time.time(), None
        self.status_label.setText(f"Autosaved {time.strftime('%H:%M:%S')}")
        self.status_label.setToolTip(str(path))
        folder = default_autosave_dir()  # never a folder of the user's own, where a session was saved or opened
        if Path(path).parent == folder and "prune" not in self._jobs.running:
            self._start("prune", prune_autosaves, folder, Path(path), on_returned=lambda removed: None, notify=False)

    def _on_autosave_failed(self, exc: Exception) -> None:
        logger.error("autosave failed: %s", exc)
        self._release_claim()
        self.status_label.setText(
            f"Autosave failed: {describe_error(exc)} Your work is still in the layers; the next autosave tries again."
        )

    def _release_claim(self) -> None:
        """A save into the folder :meth:`autosave_target` claimed failed: it goes; the next autosave claims again."""
        claimed, self._claimed = self._claimed, None
        if claimed is not None and release_claim(claimed) and self.autosave_path == claimed:
            self.autosave_path = None

"""The "ACTION: Train from sparse labels" dock widget.

Wiring only: the layer picker (:mod:`.picker`) says what to train on, the options (:mod:`.options`)
how, a :class:`~napari_action.training.trainer.Trainer` is built from snapshots of those layers,
and a :class:`~.workers.TrainingRun` runs it in a napari thread worker. Yielded
progress updates the status line, the napari progress bar and the loss plot;
streamed slice predictions are written (throttled) into one editable
"<image> ACTION" Labels layer per image, around the voxels the user corrected
there (:mod:`.prediction_writer`). The user's painted Labels layers are only ever read.

Imports: this module, and the adapter modules it imports, load without torch
(``tests/test_import_boundary.py`` checks it), so that napari's plugin menu
stays quick to load; torch alone takes seconds. The torch-backed core
modules (trainer, predictor, checkpoint, runtime) are imported inside the
functions that use them, which run once a widget is made or a model is built.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from functools import partial
from typing import TYPE_CHECKING, Any

from napari.utils.notifications import show_error, show_info, show_warning
from qtpy.QtCore import Qt, Signal
from qtpy.QtWidgets import (
    QFileDialog,
    QFrame,
    QGridLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_action._napari.closing import ClosingWatch
from napari_action._napari.files.panel import FilesPanel
from napari_action._napari.live_updates import LiveUpdates
from napari_action._napari.options import OptionsForm
from napari_action._napari.picker import LayerPicker
from napari_action._napari.plot import LossPlot
from napari_action._napari.prediction_job import PredictionJob
from napari_action._napari.prediction_writer import PredictionWriter
from napari_action._napari.refine.accepted import TrainingLabels, merge_accepted
from napari_action._napari.refine.panel import RefinePanel
from napari_action._napari.renames import ImageRenames
from napari_action._napari.replaced_data import ReplacedImageData
from napari_action._napari.run_state import RunState
from napari_action._napari.status import status_text
from napari_action._napari.status_line import StatusLine
from napari_action._napari.threads import new_worker
from napari_action._napari.training_plan import TrainingPlan, removed_layer_warning
from napari_action._napari.training_state import TrainingState, build_trainer
from napari_action._napari.view_plane import PAINTED as PAINTED_PLANE
from napari_action._napari.view_plane import axis_for_choice, layer_volume_meta, show_slices_along, viewer_slicing_axis
from napari_action._napari.workers import RunCallbacks, TrainingRun
from napari_action.inference.loaded_model import save_model
from napari_action.inference.model_protocol import TrainableModel
from napari_action.io.errors import describe_error
from napari_action.progress import SlicePrediction, TrainProgress

if TYPE_CHECKING:
    import napari

logger = logging.getLogger(__name__)


class ActionWidget(QWidget):
    """Train ACTION on a few painted slices and stream predictions into napari.

    Parameters
    ----------
    viewer : napari.viewer.Viewer
        The viewer whose layers are used (npe2 injects it).

    Attributes
    ----------
    config_overrides : dict
        Extra :class:`~napari_action.config.TrainConfig` fields applied on top
        of the form (scripts and tests use it for tiny budgets).
    training_state : TrainingState
        Trainer, runs, jobs, edit trackers and accepted slices of this widget.
    options : OptionsForm
        The training options (magicgui), remembered between napari sessions.
    writer : PredictionWriter
        Writes streamed slices and whole-volume predictions into the prediction layers.
    files_panel : FilesPanel
        "Model, export & session": load model, export masks, sessions, autosave.
    refine_panel : RefinePanel
        "Refine": accept corrections, training set, next slices to annotate, Update once.
    """

    #: Emitted whenever the buttons are refreshed: a run or job started, paused or ended.
    state_changed = Signal()

    def __init__(self, viewer: napari.viewer.Viewer, parent: QWidget | None = None):
        super().__init__(parent)
        self.viewer = viewer
        self.config_overrides: dict[str, Any] = {}
        self.stream_throttle_ms = 250
        self.training_state = TrainingState()
        self.writer = PredictionWriter(viewer, self.training_state)
        # What the status line says once the prediction made when training ended has finished.
        self._after_prediction: str | None = None
        self._build()
        self.live = LiveUpdates(viewer, self.training_state, self.training_labels)
        followers = [self.training_state.image_renamed, self.picker.image_renamed, self.refine_panel.image_renamed]
        self.renames = ImageRenames(viewer, followers, on_closed=[self.training_state.image_closed])
        self.replaced_data = ReplacedImageData(viewer, self.training_state)  # Predict leaves an image given new data
        viewer.layers.events.removed.connect(self._on_layer_removed)
        self.closing = ClosingWatch(self)  # the panel closed: its training stops; the widget gone: abandoned
        self.refresh()

    # -- layout ------------------------------------------------------------------
    def _build(self) -> None:
        self.picker = LayerPicker(self.viewer)
        self.options = OptionsForm()
        # The choices of the last napari session; an opened session's options replace them later.
        for problem in self.options.remember_in():
            show_warning(f"ACTION: {problem}")
        self.train_button = QPushButton("Train")
        self.pause_button = QPushButton("Pause")
        self.stop_button = QPushButton("Stop")
        self.predict_button = QPushButton("Predict all opened volumes")
        self.save_button = QPushButton("Save model…")
        self.status_label = QLabel("Paint a few slices in a Labels layer, then press Train.")
        self.status_label.setWordWrap(True)
        self.plot = LossPlot()
        self.status = StatusLine(self.status_label, self.plot, self.options.device_label)
        buttons = QGridLayout()
        buttons.addWidget(self.train_button, 0, 0)
        buttons.addWidget(self.pause_button, 0, 1)
        buttons.addWidget(self.stop_button, 0, 2)
        buttons.addWidget(self.predict_button, 1, 0, 1, 2)
        buttons.addWidget(self.save_button, 1, 2)
        layout = QVBoxLayout(self._scrolling_content())
        layout.addWidget(self.picker)
        layout.addWidget(self.options.native)
        layout.addLayout(buttons)
        layout.addWidget(self.status_label)
        layout.addWidget(self.plot)
        self.files_panel = FilesPanel(self)
        layout.addWidget(self.files_panel)
        self.refine_panel = RefinePanel(self)
        layout.addWidget(self.refine_panel)
        layout.addStretch()
        self._fit_width_to_content()
        self.train_button.clicked.connect(self.start_training)
        self.pause_button.clicked.connect(self.toggle_pause)
        self.stop_button.clicked.connect(self.stop_training)
        self.predict_button.clicked.connect(self.predict_all)
        self.save_button.clicked.connect(self._on_save_clicked)
        # "activated", not "changed": choosing the same plane again re-applies it after napari's transpose button.
        self.options.view.native.textActivated.connect(self.show_slices)

    def _scrolling_content(self) -> QWidget:
        """The panel's content widget, inside a scroll area so small screens reach every button."""
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        self.scroll_area = QScrollArea()
        self.scroll_area.setWidgetResizable(True)
        self.scroll_area.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll_area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        content = QWidget()
        self.scroll_area.setWidget(content)
        outer.addWidget(self.scroll_area)
        return content

    def showEvent(self, event) -> None:  # noqa: N802 (Qt override)
        # Tables and labels know their real minimum width only once shown.
        self._fit_width_to_content()
        super().showEvent(event)

    def _fit_width_to_content(self) -> None:
        """Scroll vertically only: the dock is made wide enough for the whole content."""
        bar = self.scroll_area.verticalScrollBar().sizeHint().width()
        self.scroll_area.setMinimumWidth(self.scroll_area.widget().minimumSizeHint().width() + bar)

    def refresh(self) -> None:
        """Enable the buttons that make sense now (idle, training, paused, stopping or a job running).

        Panels call it after changing the model themselves (a loaded model or a restored
        session); it also emits :attr:`state_changed`, which the panels follow.
        """
        run, training = self.run, self.training_state
        state = run.state if run is not None else RunState.IDLE
        job = training.job_running
        paused = state is RunState.PAUSED
        active = state.is_training
        self.pause_button.setText({RunState.PAUSING: "Pausing…", RunState.PAUSED: "Resume"}.get(state, "Pause"))
        self.train_button.setEnabled(not training.busy)
        self.pause_button.setEnabled(active and not job)
        self.stop_button.setEnabled((active and not job) or training.predicting)  # Stop cancels a prediction
        model_ready = training.model_ready and not job and (paused or not active)
        self.predict_button.setEnabled(model_ready and state is not RunState.STOPPING)
        self.save_button.setEnabled(model_ready and state is not RunState.STOPPING)
        self.state_changed.emit()

    # -- viewing plane ---------------------------------------------------------------
    def show_slices(self, choice: str) -> int | None:
        """Slide through ``choice`` (see :data:`.view_plane.CHOICES`); return the data axis, None if unchanged."""
        self.picker.refresh()
        images = self.picker.selected_images()
        labels = [layer for layer, _ in self.picker.selected_labels()]
        try:
            axis = axis_for_choice(self.viewer, choice, images, labels)
        except ValueError as exc:
            show_warning(f"ACTION: {exc}")
            return None
        if axis is not None:
            show_slices_along(self.viewer, axis)
            shown = "the plane of the painted slices" if choice == PAINTED_PLANE else f"{choice} slices"
            self.status.say(f"Showing {shown}: the slider moves along axis {axis}.")
        return axis

    # -- training ------------------------------------------------------------------
    @property
    def run(self) -> TrainingRun | None:
        """The current (or last) training run."""
        return self.training_state.run

    def start_training(self) -> bool:
        """Check the inputs and start training in a worker (which builds the trainer).

        Returns
        -------
        bool
            False when the inputs were rejected (an error notification says why).
        """
        if self.training_state.busy:
            return False
        self.picker.refresh()
        try:
            plan = TrainingPlan.from_picker(self.picker)
            factory, config, axis_decision = self._trainer_factory(plan)
        except ValueError as exc:
            show_error(f"ACTION: {exc}")
            self.status.say(f"Not started: {exc}")
            return False
        self.training_state.begin(plan, axis_decision)
        return self.start_run(build=factory, total_steps=config.total_steps, status="Preparing the volumes…")

    def start_run(
        self,
        model: TrainableModel | None = None,
        *,
        build: Callable[[], TrainableModel] | None = None,
        total_steps: int,
        status: str,
        on_finished: Callable[[TrainingRun], None] | None = None,
    ) -> bool:
        """Start a run on the current plan with the widget's callbacks; False if busy or without a plan.

        The one run set-up of Train and "Update once", so that the status line, loss plot,
        streamed predictions, Pause / Stop and live label updates work alike in both. Give
        ``model`` (a trainer that trains on from its weights) or ``build`` (makes a new trainer
        in the worker, which becomes the model; its prior is shown first).
        ``total_steps`` sizes the progress bar; ``status`` is the status line until the first
        progress; ``on_finished(run)`` comes after the widget's own end-of-run handling, also
        when the run failed or was stopped, but not when that handling already predicts the
        trained images ("predict when training ends"): a second prediction would run beside it.
        """
        plan = self.training_state.plan
        if self.training_state.busy or plan is None:
            return False
        run = TrainingRun(
            model,
            build=build,
            callbacks=RunCallbacks(
                # Only a new trainer replaces the model; a further round keeps it.
                ready=self._on_run_ready if build is not None else None,
                progress=self._on_progress,
                predictions=self._write_predictions,
                state=self._on_run_state,
                error=self._on_run_error,
                finished=partial(self._on_run_finished, on_finished),
            ),
            total_steps=total_steps,
            throttle_ms=self.stream_throttle_ms,
        )
        self.training_state.run = run
        # Live label updates: strokes reach the running trainer; _on_run_finished disconnects them.
        self.live.follow_painting(plan)
        self.plot.clear()
        self.status.say(status)
        run.start()
        self.refresh()
        return True

    def _trainer_factory(self, plan: TrainingPlan):
        """Snapshot the inputs, decide the slicing axis; the returned function builds the trainer in the worker."""
        viewer_axis = viewer_slicing_axis(self.viewer)
        config = self.options.config(viewer_axis, **self.config_overrides)
        volumes = plan.image_volumes()  # zarr or dask layers stay lazy
        # Voxel sizes and world positions: the trainer carries labels onto unpainted images in millimetres.
        affines = [layer_volume_meta(image).affine for image in plan.images]
        # The accepted slices join the painted labels (those accepted along another axis than chosen are dropped).
        training = self.training_labels(plan, axis=config.axis)
        # Decided once, here, on the paint as training sees it (each scan in one voxel order).
        geometry = (affines, [volume.shape for volume in volumes])
        init = self.training_state.training_init(
            training.labels, chosen=config.axis, accepted=training.axis, viewer_axis=viewer_axis, geometry=geometry
        )
        if init.reason is not None:
            show_warning(f"ACTION: {init.reason}")
        config = config.replace(axis=init.axis_decision.axis)
        factory = partial(
            build_trainer,
            volumes,
            training.labels,
            config,
            plan.class_names(),
            init=init.checkpoint,
            labeled_slices=training.labeled_slices,
            affines=affines,
            names=[image.name for image in plan.images],
        )
        return factory, config, init.axis_decision

    def training_labels(self, plan: TrainingPlan, axis: int | None) -> TrainingLabels:
        """Snapshots of the painted labels with the accepted slices over them; warns about dropped slices."""
        training = merge_accepted(self.training_state, plan, axis=axis)
        for message in training.warnings:
            show_warning(f"ACTION: {message}")
        return training

    def _on_run_ready(self, trainer: TrainableModel) -> None:
        self.training_state.trainer = trainer
        self.status.trainer_ready(trainer, self.training_state.axis_decision)
        for message in trainer.advice:
            show_warning(f"ACTION: {message}")

    def toggle_pause(self) -> None:
        """Pause training after the current step, or resume it."""
        if self.run is not None:
            self.run.toggle_pause()

    def stop_training(self) -> None:
        """Stop a prediction after its current slices, else training after the current step (the model is kept)."""
        if not self.training_state.cancel_prediction() and self.run is not None:
            self.run.stop()

    # -- run callbacks (GUI thread) -------------------------------------------------------
    def _on_progress(self, progress: TrainProgress) -> None:
        self.training_state.first_step_taken()
        if progress.notice:
            show_warning(f"ACTION: {progress.notice}")
        self.status.progress(progress)

    def _write_predictions(self, batch: list[SlicePrediction]) -> list[SlicePrediction]:
        """Write streamed slices; return those deferred (the user is mid-stroke, or their layer is not made yet)."""
        written = self.writer.write_batch(batch)
        self.refine_panel.slices_streamed(batch)
        if written.compared and self.run is not None and self.run.last_progress is not None:
            self.plot.add_agreement(self.run.last_progress.step, 1.0 - written.changed / written.compared)
        return written.deferred

    def _on_run_state(self, state: RunState) -> None:
        if state is RunState.STOPPING:
            self.status.stopping(self.run)
        if state is RunState.PAUSED:
            self.training_state.run_pending_job()  # a prediction or save waited for the pause
        if state is not RunState.FINISHED:  # _on_run_finished follows at once, starts any job, then refreshes
            self.refresh()

    def _on_run_error(self, exc: Exception) -> None:
        # napari's worker already shows the error as a notification.
        self.status.say(f"Training failed: {describe_error(exc)}")

    def _on_run_finished(self, then: Callable[[TrainingRun], None] | None = None) -> None:
        self.live.stop_following(self.training_state.plan)
        run = self.run
        previous_back = self.training_state.give_previous_back()
        if run is not None:
            self.status.run_ended(run, previous_back)
        self.training_state.run_pending_job()
        predicting = self._predicts_when_done(run)
        if predicting:
            self._predict_trained_images(run.last_progress)
        self.refresh()
        if then is not None and run is not None and not predicting:
            then(run)

    def _predicts_when_done(self, run: TrainingRun | None) -> bool:
        """A run that reached its last step with the network fitting the painted slices (the gate that
        lets it replace the preview while streaming), the option on and no job of the user's waiting."""
        if run is None or run.error is not None or run.last_progress is None:
            return False
        progress = run.last_progress
        completed = progress.step >= progress.total_steps and progress.streaming
        return completed and self.options.predict_when_done.value and self.training_state.job is None

    def _predict_trained_images(self, progress: TrainProgress) -> None:
        # The streamed layer keeps the preview where it reaches (mid-run the network is often worse
        # there); the finished network is the one to show everywhere, as Predict would.
        plan = self.training_state.plan
        names = [image.name for image in plan.images if image.name in self.viewer.layers] if plan else []
        if not names:
            return
        shown = dataclasses.replace(progress, preview_kept=False)
        self._after_prediction = f"Done. {status_text(shown)} · the layers show the final network on every slice"
        self.predict_images(names)

    # -- live label updates ---------------------------------------------------------------------
    def labels_changed(self, *, immediately: bool = False) -> None:
        """Send the training labels (painted plus accepted slices) to the running training, if any.

        Strokes in the painted layers are sent on their own; panels call this when they change
        the training labels otherwise (an accepted slice accepted or corrected). Throttled, as a
        stroke comes as many events; ``immediately`` sends now, for the very next step.
        """
        self.live.labels_changed(immediately=immediately)

    # -- layers going away --------------------------------------------------------------------
    def _on_layer_removed(self, event) -> None:
        layer = event.value
        self.training_state.forget_layer(layer)
        plan, run = self.training_state.plan, self.run
        if plan is not None and run is not None and run.state.is_training and plan.uses(layer):
            show_warning(removed_layer_warning(layer.name))
            run.stop()

    # -- prediction and saving -------------------------------------------------------------------
    def predict_all(self) -> None:
        """Predict every opened 3D image with the current model (pauses training meanwhile)."""
        self.predict_images(None)

    def predict_images(self, names=None) -> None:
        """Predict the opened 3D images called ``names`` (None: all of them)."""
        if not self.training_state.model_ready:
            show_error(f"ACTION: {self.training_state.no_model_reason()}")
            return
        self.files_panel.warn_geometry(names)  # other spacing or orientation than the training volumes
        self.training_state.when_idle(partial(self._start_prediction, names))
        self.refresh()

    def _start_prediction(self, names=None) -> None:
        items = self.training_state.prediction_items(self.viewer, names)
        self.status.say(f"Predicting {len(items)} volume(s)…")
        model, update, finished = self.training_state.trainer, self._on_prediction_update, self._on_job_finished
        self.training_state.job = PredictionJob(model, items, on_update=update, on_finished=finished)
        self.training_state.job.start()

    def _on_prediction_update(self, image_name: str, update, record) -> None:
        self.status.predicting(self.training_state.job, image_name)
        if not update.done or image_name not in self.viewer.layers:
            return
        self.writer.write_volume(image_name, update, self.training_state.job.made_by)
        self.refine_panel.volume_predicted(image_name, update, record)

    def _on_job_finished(self, *_) -> None:
        job, self.training_state.job = self.training_state.job, None
        if self.training_state.resume_after_job and self.run is not None and self.run.state is RunState.PAUSED:
            self.run.resume()
        self.training_state.resume_after_job = False
        after, self._after_prediction = self._after_prediction, None
        self.status.job_ended(getattr(job, "outcome", None), self.run, otherwise=after or "Ready.")
        self.refresh()

    def _on_save_clicked(self) -> None:
        path, _ = QFileDialog.getSaveFileName(self, "Save ACTION model", "action_model.pt", "ACTION model (*.pt)")
        if path:
            self.save_model(path)

    def save_model(self, path: str) -> None:
        """Write the current model (weights, config, classes, axis) to ``path`` in a worker."""
        if not self.training_state.model_ready:
            show_error(f"ACTION: {self.training_state.no_model_reason()}")
            return
        self.training_state.when_idle(partial(self._start_save, path))
        self.refresh()

    def _start_save(self, path: str) -> None:
        self.training_state.name_classes()  # a class named after Train started is saved with its name
        # The training volumes' geometry goes into the file, so that predicting with it later
        # (here or on the command line) warns about volumes sliced otherwise.
        job = new_worker(
            save_model,
            self.training_state.trainer,
            path,
            self.files_panel.references(),
            connect={"returned": self._on_saved, "finished": self._on_job_finished},
        )
        self.training_state.job = job
        job.start()

    def _on_saved(self, path) -> None:
        show_info(f"ACTION: model saved to {path}")

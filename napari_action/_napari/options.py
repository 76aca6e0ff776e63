"""How the ACTION widget trains: the training options, declared once as magicgui widgets.

Each option is one typed magicgui widget named after the
:class:`~napari_action.config.TrainConfig` field it sets (``budget``, ``axis``,
``method``, ``prior_source``, ``unpainted_prior``, ``structure_ends``, ``steps_stage3``, ``device``,
``num_threads``), so
every way the options travel reads and writes the same names:

* form -> TrainConfig: :meth:`OptionsForm.config` (Train, a saved session);
* stored TrainConfig -> form: :meth:`OptionsForm.show_config` (a session opened);
* form <-> remembered file: :meth:`OptionsForm.asdict` and :meth:`OptionsForm.update`
  (:mod:`.remembered`, the choices kept between napari sessions).

Three rows are part of the form but not options (``gui_only``, so ``asdict`` leaves
them out): "view slices" acts on the viewer at once, the device line says
what the device choice resolves to, and "predict when training ends" says whether the
widget then predicts the trained images.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, Label, SpinBox
from magicgui.widgets.bases import CategoricalWidget, RangedWidget
from qtpy.QtCore import QTimer
from qtpy.QtWidgets import QSizePolicy

from napari_action._napari.remembered import DamagedSettingsError, RememberedOptions
from napari_action._napari.threads import available_cores, training_threads
from napari_action._napari.view_plane import CHOICES as VIEW_CHOICES
from napari_action.config import (
    BUDGETS,
    METHODS,
    PRIOR_SOURCES,
    STRUCTURE_ENDS,
    UNPAINTED_PRIORS,
    TrainConfig,
)
from napari_action.config_checks import upgraded_settings

logger = logging.getLogger(__name__)

#: The "slicing axis" choice that follows the viewer; every other choice is a TrainConfig.axis value.
VIEWER_AXIS = "viewer"
AXIS_CHOICES = (
    ("auto (inferred)", None),
    ("viewer slicing axis", VIEWER_AXIS),
    ("axis 0", 0),
    ("axis 1", 1),
    ("axis 2", 2),
)
#: Quiet time after the last change before the remembered file is written (each write syncs the disk).
REMEMBER_DELAY_MS = 500
#: The "CPU precision" choices, as ``TrainConfig.cpu_bfloat16`` values.
CPU_PRECISIONS = (("auto", None), ("float32", False), ("bfloat16", True))


def _declare_widgets() -> list:
    """The form's rows, top to bottom: every option once, with its type, range and help."""
    # torch-backed: imported when a form is made, not with this module (see the widget module's docstring).
    from napari_action.runtime import available_devices

    devices = available_devices()
    budget = "paper" if "cuda" in devices else "cpu"
    return [
        ComboBox(
            name="view",
            label="view slices",
            choices=VIEW_CHOICES,
            gui_only=True,
            tooltip="Which slices the viewer shows: an anatomical plane (from the image's NIfTI header), "
            "or the plane of the slices painted so far. napari opens NIfTI files on array axis 0.",
        ),
        ComboBox(
            name="axis",
            label="slicing axis",
            choices=AXIS_CHOICES,
            tooltip="Slicing axis: inferred from the painted labels (the axis along which few slices are "
            "painted; ties go to the axis the viewer slices), the viewer's, or a fixed one.",
        ),
        ComboBox(
            name="budget",
            label="budget",
            choices=BUDGETS,
            value=budget,
            tooltip="cpu: small model, minutes on a laptop. paper: the method's GPU sizes.",
        ),
        ComboBox(
            name="method",
            label="method",
            choices=METHODS,
            tooltip="action: ACTION, learning from your labeled slices and from every unpainted slice. supervised: "
            "the same network from the labeled slices alone (the choice for a complete mask). mean-teacher: a "
            "semi-supervised baseline (Mean Teacher: the unpainted slices through a consistency loss).",
        ),
        ComboBox(
            name="prior_source",
            label="labels between slices",
            choices=PRIOR_SOURCES,
            tooltip="What your painted slices say about the others, shown at once and used in training. "
            "propagation: your labels carried along the image from slice to slice, also beyond the "
            "painted range. interpolation: the shapes morphed between painted slices, ignoring the "
            "image (for masks whose structures have no contrast in the image).",
        ),
        ComboBox(
            name="unpainted_prior",
            label="unpainted images",
            choices=UNPAINTED_PRIORS,
            value=TrainConfig().unpainted_prior,
            tooltip="Images nobody painted. none: unlabeled data only. registration: the painted images' "
            "propagated labels registered onto them (affine, in millimetres), shown at once, used in "
            "training and, at a quarter of their confidence, mixed into their prediction; it wins where "
            "the images show one anatomy through different scans and loses where anatomies differ "
            "(independent hearts).",
        ),
        ComboBox(
            name="structure_ends",
            label="structure ends",
            choices=STRUCTURE_ENDS,
            value=TrainConfig().structure_ends,
            tooltip="Where a predicted structure ends, past the last slice your labels are carried to "
            "(on unpainted images: your images' carried labels registered onto them). auto: cut where your "
            "painted images' slices are 3 or more times thicker than their pixels, taper otherwise. taper: kept while "
            "it narrows, ended where it grows again. cut: ended there (for structures about as long as "
            "they are wide, such as the heart). network: as the network predicts it (for structures that "
            "reach far beyond their painted outline, such as vertebrae on sagittal slices).",
        ),
        SpinBox(
            name="steps_stage3",
            label="stage iii steps",
            min=1,
            max=1_000_000,
            value=TrainConfig.preset(budget).steps_stage3,
            tooltip="Steps of the semi-supervised stage iii (after the cpu budget's supervised start, or the paper "
            f"budget's two warm-ups). {_sentence(TrainConfig.preset('cpu').cohort_lengthening_text())}. The network "
            "then learns from many images, each seen less often.",
        ),
        ComboBox(
            name="device",
            label="device",
            choices=devices,
            tooltip="Where training and prediction run. auto: a CUDA GPU, else Apple MPS, else the CPU; "
            "the line below says which.",
        ),
        # A blank label (magicgui shows the name for an empty one): the text lines up with the choices.
        Label(name="device_label", label=" ", gui_only=True),
        SpinBox(
            name="num_threads",
            label="CPU threads",
            min=1,
            max=available_cores(),
            value=training_threads(),
            tooltip="torch's CPU threads for training and prediction. Default: every core (training runs at "
            "lower priority, so the viewer stays responsive). Two trainings on the same cores slow "
            "each other down several-fold.",
        ),
        ComboBox(
            name="cpu_bfloat16",
            label="CPU precision",
            choices=CPU_PRECISIONS,
            value=TrainConfig().cpu_bfloat16,
            tooltip="The arithmetic of training and prediction on a CPU. auto: bfloat16 where the CPU computes "
            "it natively (AVX512-BF16, AMX; about 30 % less time for the same accuracy within 0.01 in our "
            "benchmarks), float32 elsewhere. GPUs train in float32 whatever is chosen here.",
        ),
        CheckBox(
            name="predict_when_done",
            label="predict when training ends",
            value=True,
            gui_only=True,
            tooltip="When training runs to its last step, predict every trained image with the final network, "
            "so that its layer shows the network on every slice (while training, the preview of your labels "
            "stays on the slices it reaches). Your edits in the prediction layers are kept. Not after Stop.",
        ),
    ]


class OptionsForm(Container):
    """The training options (a magicgui container); ``form.budget.value`` and so on for each option.

    ``asdict()`` gives the options by name (not the gui-only rows); ``update()`` sets
    them back and skips, with a reason, what this form cannot show.
    """

    def __init__(self):
        super().__init__(labels=True)
        # Added once the container is made, not passed to it: only then does magicgui line up the labels.
        self.extend(_declare_widgets())
        self.margins = (0, 0, 0, 0)
        line = self.device_label.native
        line.setWordWrap(True)
        # magicgui's labels keep their text's width; this one takes the row, its text starting under the choices.
        line.setSizePolicy(QSizePolicy.Policy.Expanding, line.sizePolicy().verticalPolicy())
        self.budget.changed.connect(self._on_budget_changed)
        self.device.changed.connect(self._describe_device)
        self.cpu_bfloat16.changed.connect(self._describe_device)
        self._describe_device()
        self._remember_timer: QTimer | None = None
        self._defaults: dict[str, Any] | None = None  # the options as this version offers them (remember_in)
        self._showing_stored = False  # a session's options are shown, not made the user's remembered choices

    @property
    def option_names(self) -> tuple[str, ...]:
        """The options' names, which are TrainConfig field names."""
        return tuple(self.asdict())

    def _on_budget_changed(self, budget: str) -> None:
        # Each budget has its own schedule: a step count chosen for the other one rarely fits.
        self.steps_stage3.value = TrainConfig.preset(budget).steps_stage3

    def _describe_device(self, *_) -> None:
        self.device_label.value = f"will use: {describe_device(self.device.value, self.cpu_bfloat16.value)}"

    # -- reading -------------------------------------------------------------------------
    def axis_choice(self, viewer_axis: int) -> int | None:
        """The chosen slicing axis; None = infer from the labels."""
        return viewer_axis if self.axis.value == VIEWER_AXIS else self.axis.value

    def config(self, viewer_axis: int, **overrides: Any) -> TrainConfig:
        """The TrainConfig of these options; ``overrides`` win (tests and scripts pass tiny budgets).

        ``viewer_axis`` is the axis the viewer slices along, for the "viewer slicing axis" choice.
        """
        fields = {name: value for name, value in self.asdict().items() if name != "budget"}
        fields["axis"] = self.axis_choice(viewer_axis)
        fields.update(overrides)
        return TrainConfig.preset(self.budget.value, **fields)

    # -- writing -------------------------------------------------------------------------
    def update(self, mapping: Mapping | Iterable[tuple[str, Any]] = (), **kwargs: Any) -> list[str]:
        """Set the options given by name; return, in words, the values that were skipped.

        Names that are not options are ignored (a file from a newer version may hold more).
        A value the form cannot show (a device this machine lacks, a damaged entry) is
        skipped and that option keeps its value; a whole number outside a spin box's range
        is brought into it (a thread count from a machine with more cores).
        """
        given = dict(mapping, **kwargs)
        # The budget first: choosing it resets the steps to its preset, which given steps then override.
        names = sorted((name for name in given if name in self.option_names), key=lambda name: name != "budget")
        accepted, skipped = {}, []
        for name in names:
            try:
                accepted[name] = _fitted(self[name], given[name])
            except ValueError as reason:
                skipped.append(f"{self[name].label} {given[name]!r}: {reason}")
        super().update(accepted)
        return skipped

    def show_config(self, config: Mapping[str, Any] | TrainConfig | None) -> list[str]:
        """Show the options of a stored TrainConfig (a session's dict); return what was skipped.

        They are not remembered: the next new viewer starts from the user's own last choices.

        Fields the config lacks (it was stored by an older version) leave their option as
        it is, and so does an unset thread count (a loaded model records none, as threads
        belong to the machine, not the model).
        """
        stored = config.to_dict() if isinstance(config, TrainConfig) else upgraded_settings(config or {})
        options = {name: stored[name] for name in self.option_names if name in stored}
        if options.get("num_threads") is None:
            options.pop("num_threads", None)
        self._showing_stored = True
        try:
            return self.update(options)
        finally:
            self._showing_stored = False

    # -- remembered between napari sessions -------------------------------------------------------
    def remember_in(self, remembered: RememberedOptions | None = None) -> list[str]:
        """Show the options ``remembered`` holds, then keep it up to date with every change.

        ``remembered`` defaults to the user's file (:func:`.remembered.settings_path`).
        Returns the problems to tell the user: a damaged file (ignored) or values skipped.
        """
        remembered = RememberedOptions() if remembered is None else remembered
        self._defaults = self.asdict()  # what this version offers: the options the user did not choose follow it
        try:
            skipped = self.update(remembered.recall())
        except DamagedSettingsError as error:
            return [f"{error}; the remembered training options were ignored."]
        finally:
            self._keep_up_to_date(remembered)
        return [f"remembered training option {problem}" for problem in skipped]

    def _keep_up_to_date(self, remembered: RememberedOptions) -> None:
        timer = self._remember_timer = QTimer(self.native)
        timer.setSingleShot(True)
        timer.setInterval(REMEMBER_DELAY_MS)
        timer.timeout.connect(remembered.flush)
        self.changed.connect(lambda *_: self._hold(remembered))
        # A plain object's method: still reached while the form's Qt side is being destroyed.
        self.native.destroyed.connect(remembered.flush)

    def _hold(self, remembered: RememberedOptions) -> None:
        if self._showing_stored:  # opening a colleague's or an old session must not change the next new project
            return
        remembered.hold(self.asdict(), self._defaults)
        if self._remember_timer is not None:
            self._remember_timer.start()  # restarted by each change: written once the user pauses


def _fitted(widget, value: Any) -> Any:
    """``value`` as ``widget`` can show it.

    Raises
    ------
    ValueError
        With the reason, when the widget cannot show it.
    """
    if isinstance(widget, CategoricalWidget):
        # By type too: JSON's true would otherwise pass as axis 1, and 0.0 as axis 0.
        if not any(type(value) is type(choice) and value == choice for choice in widget.choices):
            raise ValueError(f"not available here (choices: {', '.join(map(repr, widget.choices))})")
        return value
    if isinstance(widget, RangedWidget):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError("not a whole number")
        return min(max(value, widget.min), widget.max)
    return value


def describe_device(choice: str, cpu_bfloat16: bool | None = None) -> str:
    """What ``choice`` resolves to, e.g. "CUDA: NVIDIA H100" or "CPU, bfloat16"; why not, if it cannot be used.

    On a CPU it names the precision ``cpu_bfloat16`` resolves to there (None: bfloat16 where the CPU
    computes it natively); the threads have their own field.
    """
    from napari_action.runtime import device_label, resolve_amp, resolve_device  # torch-backed: see _declare_widgets

    try:
        device = resolve_device(choice)
    except ValueError as exc:
        return str(exc)
    if device.type != "cpu":
        return device_label(device)
    return "CPU, bfloat16" if resolve_amp(device, amp=False, cpu_bfloat16=cpu_bfloat16) else "CPU, float32"


def _sentence(text: str) -> str:
    """``text`` with a capital first letter (``str.capitalize`` would lower every other one)."""
    return text[:1].upper() + text[1:]

"""Typed configuration for ACTION training: one dataclass tree, two presets.

Every knob of the method lives here (see ``docs/method.md``), so that the CLI,
the napari widget and the benchmarks all build the same object instead of
passing loose keyword arguments around.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from napari_action.config_checks import check_setting_names, check_setting_types, upgraded_settings

Method = Literal["action", "supervised", "mean-teacher"]
Budget = Literal["cpu", "paper"]
AnnotationMode = Literal["slice", "scribble"]

METHODS: tuple[str, ...] = ("action", "supervised", "mean-teacher")
BUDGETS: tuple[str, ...] = ("cpu", "paper")
#: A cohort's stage iii runs at most this many times ``steps_stage3`` (:meth:`TrainConfig.cohort_stage3_steps`;
#: docs/benchmarks.md, "A cohort needs more steps").
MAX_COHORT_STEPS_FACTOR = 2.0
#: The step counts of a round's stages, in the order they run.
SCHEDULE_STEPS: tuple[str, ...] = ("steps_supervised_start", "steps_stage1", "steps_stage2", "steps_stage3")
PRIORS: tuple[str, ...] = ("none", "vote", "target")
#: Where the prior comes from: the labels propagated along the image, or shapes interpolated between slices.
PRIOR_SOURCES: tuple[str, ...] = ("propagation", "interpolation")
#: Where streamed predictions may replace the preview while training runs (``TrainConfig.stream_over_preview``).
STREAM_OVER_PREVIEW: tuple[str, ...] = ("unreached", "everywhere")
#: The prior of volumes nobody painted: the painted volumes' prior registered onto them, or none.
UNPAINTED_PRIORS: tuple[str, ...] = ("registration", "none")
#: How prediction ends a structure beyond the slices the propagation carries it to (``TrainConfig.structure_ends``):
#: "auto" is decided by the trainer from the painted volumes' slice thickness, the others are rules.
STRUCTURE_ENDS: tuple[str, ...] = ("auto", "taper", "cut", "network")
#: Which voxels a volume's intensities are z-scored by (``TrainConfig.intensity_reference``): its foreground (above
#: its Otsu threshold) within the field of view, a fill value outside it (CT's -3024) read as the darkest imaged
#: intensity ("foreground_in_view"); its foreground with the fill counted ("foreground", models saved before); or
#: every voxel ("whole", earlier still). Models keep the one they were trained with.
INTENSITY_REFERENCES: tuple[str, ...] = ("foreground_in_view", "foreground", "whole")
#: The rules themselves, what a predictor applies.
ENDING_RULES: tuple[str, ...] = ("taper", "cut", "network")


def check_intensity_reference(reference: str, name: str = "intensity_reference") -> None:
    """Raise ``ValueError`` unless ``reference`` is one of :data:`INTENSITY_REFERENCES`.

    Checked where a configuration is validated and where a predictor or a normalisation gets one directly;
    ``name`` is what the caller calls the setting in the message.
    """
    if reference not in INTENSITY_REFERENCES:
        raise ValueError(f"{name} must be one of {INTENSITY_REFERENCES}, got {reference!r}.")


class _Settings:
    """Base of the configuration dataclasses: a keyword that names no setting (a typo) is refused with the
    settings closest to it, where the dataclass's own ``__init__`` says only "unexpected keyword argument"."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Any:
        check_setting_names(cls, kwargs)
        return super().__new__(cls)


@dataclass
class ModelConfig(_Settings):
    """Network sizes.

    Parameters
    ----------
    base_width : int
        Width of the first U-Net level; levels double up to ``16 * base_width``.
    dropout : tuple of float
        Encoder dropout per level (the reference code's values); decoder has none.
    global_dim : int
        Output size of the global latent head (D in the paper).
    rep_dim : int
        Size of the per-pixel representation used by anatomical contrast.
    context : int
        2.5D context: the slice plus ``context`` neighbours on each side become
        input channels. 0 is the paper's plain 2D model.
    rep_stride : int
        Output stride of the dense representation used by anatomical contrast.
        The reference computes it at full resolution; like ReCo we compute it
        at 1/4 resolution, which makes the 496-channel 3x3 convolution 16x
        cheaper while the sampler still sees thousands of pixels per image.
    """

    base_width: int = 16
    dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)
    global_dim: int = 512
    rep_dim: int = 512
    context: int = 0
    rep_stride: int = 4

    @property
    def in_channels(self) -> int:
        return 1 + 2 * self.context


@dataclass
class LossConfig(_Settings):
    """Loss weights, temperatures and sampler sizes (docs/method.md, "Losses" and "Where we deliberately differ")."""

    use_global: bool = True
    use_local: bool = True
    use_unsup: bool = True
    use_anco: bool = True
    ema_momentum: float = 0.99
    queue_size: int = 36
    tau_teacher: float = 0.01
    tau_student: float = 0.1
    unsup_threshold: float = 0.97
    anco_weight: float = 0.01
    # Dice over the classes present in the batch target. The reference averages
    # over all classes, which drives a class towards 0 wherever a crop misses
    # it: on Colin27 that cost 3.5 points at k = 3 and collapsed training when
    # background-only slices were labeled (docs/benchmarks.md). CE still
    # penalises false positives of absent classes.
    dice_present_classes_only: bool = True
    anco_tau: float = 0.5
    anco_queries: int = 256
    anco_negatives: int = 512
    anco_hard_threshold: float = 0.97
    anco_unlabeled_threshold: float = 0.7
    # The interpolation between painted slices as a prior for the unlabeled
    # slices between them: "vote" mixes it into the teacher's probabilities
    # (weight exp(-d / prior_decay) at d slices from a labeled slice) before
    # pseudo-labels are taken; "target" makes it the pseudo-label there;
    # "none" is the paper. prior_share of the unlabeled crops come from those
    # slices. Colin27, 3 painted slices: 0.664 -> 0.689 (docs/benchmarks.md).
    prior: str = "vote"
    prior_decay: float = 4.0
    prior_share: float = 0.5
    # A share of the labeled crops taken from slices the prior covers, its
    # classes as targets where its confidence reaches prior_labeled_confidence
    # (ignored elsewhere): the propagated slices taught like painted ones.
    # Colin27 k = 3, seed 1: 0.638 -> 0.727, the collapse of the pallidum and
    # amygdala gone (docs/benchmarks.md).
    prior_labeled_share: float = 0.5
    prior_labeled_confidence: float = 0.8
    # ACTION++ adaptive temperature schedule on the anatomical-contrast tau.
    temperature_schedule: bool = False
    tau_min: float = 0.1
    tau_max: float = 1.0
    schedule_cycles: int = 1


@dataclass
class TrainConfig(_Settings):
    """Everything a training run needs besides the data.

    Build it with :meth:`preset` rather than by hand so that the budget's
    sizes stay consistent; override single fields with keyword arguments.
    """

    method: Method = "action"
    budget: Budget = "cpu"
    device: str = "auto"
    seed: int = 1337
    crop_size: int = 128
    batch_labeled: int = 2
    batch_unlabeled: int = 2
    batch_labeled_stage3: int = 2
    batch_unlabeled_stage3: int = 2
    # ACTION only: plain supervised steps before stage i (0 = the paper's
    # schedule; the cpu preset replaces the two warm-ups with them, below).
    steps_supervised_start: int = 0
    steps_stage1: int = 100
    steps_stage2: int = 200
    steps_stage3: int = 900
    # A cohort: stage iii runs at least enough steps for every volume nobody painted to give this
    # many unlabeled crops, up to MAX_COHORT_STEPS_FACTOR times steps_stage3 (the trainer resolves it
    # and stores 0; 0 = off). The unlabeled crops are shared by all volumes: on 11 warped brains beside
    # the painted one twice the steps gained 0.022 on every seed (three times only 0.005 more), on 6 of
    # them 1,800 steps instead of 900 gained 0.059; beside one other brain nothing changed
    # (docs/benchmarks.md, "A cohort needs more steps", "How many steps a cohort needs").
    unpainted_crops_per_volume: int = 0
    # "sgd" is the paper's optimiser; "adamw" converges in far fewer steps,
    # which is what a few-minute CPU budget needs (measured: docs/benchmarks.md).
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    foreground_crop_prob: float = 0.5
    # At most this share of the other (random) crops comes from labeled slices
    # without any foreground, however many such slices the user marked.
    background_slice_share: float = 0.25
    # Geometric augmentation beyond small rotation and scale. The reference
    # flips and rotates by 90° half the time (ACDC); in a session the volumes
    # keep their orientation, and a flip swaps left and right structures. Off,
    # Colin27 k = 3 supervised rose from 0.32 to 0.49 (docs/benchmarks.md).
    flip_prob: float = 0.0
    rot90_prob: float = 0.0
    # Each crop is zoomed by a factor drawn from [1 - zoom_spread, 1 + zoom_spread]: structures of
    # another size than the painted ones (another subject's heart, another head) are met in training.
    zoom_spread: float = 0.1
    # Crops of a volume of another in-plane voxel size resized to the painted pixel size, as
    # prediction resizes its slices (data/crop_frame.py). Off: on 12 warped brains it gave +0.006
    # with one painted subject and -0.010 with two (3 seeds each; docs/benchmarks.md).
    resize_crops: bool = False
    # Scans from other scanners: Gaussian noise in every strong view (its largest standard deviation,
    # z-score units; 0 = none), and a strong view of the final stage's labeled crops. None = from the
    # data: on when some training volume is clearly noisier than the painted ones, with enough noise
    # to bring them to it (data/noise_level.py), else off. On 12 simulated scans of one brain the
    # unpainted ones rose from 0.375 to 0.489 (noise 0.3 and strong labeled views, 3 seeds); where
    # every volume is alike it is off, since there it cost the demo's hearts 0.03 on the mean of 3
    # seeds (docs/benchmarks.md, "Scanners differ").
    noise_sigma: float | None = None
    photometric_labeled: bool | None = None
    # Each volume is clipped to its 0.5-99.5 percentiles and z-scored by the moments of its foreground,
    # the voxels above its Otsu threshold ("foreground"), or of every voxel ("whole", as before: models
    # saved then are read with it). A skull-stripped brain opened beside a head scan: 0.004 -> 0.63 mean
    # Dice (whole -> foreground), the painted scan unchanged (docs/benchmarks.md, "A real second brain").
    # "foreground_in_view" sets aside a fill value outside the field of view (CT padding at -2048 or -3024
    # HU, far below air): counted, it set the clip range and Otsu's split, and one spine normalised with its
    # vertebrae 0.4 or 0.9 standard deviations above the mean by its padding value alone.
    intensity_reference: str = "foreground_in_view"
    annotation_mode: AnnotationMode = "slice"
    # Scribble mode: the painted value that means "background" (0 = unpainted there).
    background_value: int | None = None
    axis: int | None = None
    stream_every_steps: int = 25
    stream_every_seconds: float = 5.0
    stream_slices: int = 16
    # Whole-volume prediction: probabilities smoothed across slices (Gaussian
    # sigma in millimetres along the slicing axis; 0 = off) and, on the training
    # volumes, mixed with the prior from the labeled slices (its share
    # c * exp(-d / decay) at d mm from one, c its confidence; 0 = off; 6 mm
    # beat 1 mm by 0.01 on Colin27 k = 3 with the propagation). In mm, not slices: on 8 mm
    # slices a 1.5-slice sigma cost the phantom 0.02-0.06 Dice. docs/benchmarks.md.
    predict_smoothing_mm: float = 1.5
    predict_prior_decay_mm: float = 6.0
    # Where a structure ends, on the training volumes (prior_source "propagation"). A 2D network
    # judging slices one by one can run on past a structure's end into whatever looks alike (on
    # Colin27 with one painted slice, the pallidum on 30 slices above its end at five times its
    # size); the propagation stops each structure where its painted cross-section says it ends
    # (on a volume nobody painted: the painted volumes' propagation registered onto it, seconds
    # per volume when first predicted). Beyond those slices "taper" keeps the network's structure
    # while it narrows and ends it where it grows again; "cut" ends it there at once; "network"
    # leaves it to the network. Colin27, one painted slice: 0.41 (network) -> 0.52 (taper), 0.50
    # (cut); three: 0.743 -> 0.745, 0.747; vertebrae in sagittal slices (TPTBox, 3 seeds): taper
    # within 0.009 of the network in every run, cut up to 0.06 lower; the phantom's hearts, which
    # end abruptly: cut +0.03 to +0.07, taper +0.00 to +0.01 (docs/benchmarks.md, "Where each
    # structure ends"). "auto" (the default) chooses from the painted volumes: "cut" where their
    # slices are at least 3 times thicker than their pixels (a structure ends between two thick
    # slices, and one slice of run-on is millimetres of it), "taper" otherwise
    # (training.trainer_inputs.with_structure_ends).
    structure_ends: str = "auto"
    # The prior from the painted slices (the preview, the teacher's vote and the
    # prediction's fusion): "propagation" carries the labels along the image,
    # between painted slices and beyond them; "interpolation" morphs the shapes
    # between painted slices, ignoring the image (docs/method.md, "Using the third dimension").
    prior_source: str = "propagation"
    # Streamed predictions replace the preview (the prior) only once the
    # network's Dice on the labeled slices reaches this (0: stream at once).
    stream_min_fit: float = 0.7
    # Where streamed predictions may replace the preview while training runs: "unreached" only on
    # slices the preview does not reach (its labels stay where they are; Predict then shows the
    # network everywhere), "everywhere" on every slice. On Colin27 (k = 3, one seed, 1 thread) the
    # network alone fell to 0.67 mid-run against the preview's 0.725; kept off the reached slices
    # it never went below 0.719 (docs/benchmarks.md, "Which slices the network takes over"). There,
    # structures are ended beyond their extents as structure_ends says, "taper" over the areas
    # streamed so far: the widget's layer then stayed at the preview's 0.7320 where it had dipped to
    # 0.7233 (docs/benchmarks.md, "Streamed slices end a structure as Predict does").
    stream_over_preview: str = "unreached"
    # Volumes nobody painted: "registration" carries the painted volumes' prior onto them (an
    # affine registration by mutual information, seconds per volume), which then serves as their
    # preview, the teacher's vote, confident labeled slices and, at a quarter of its confidence, the
    # prediction's fusion; "none" leaves them unlabeled data only. Off by default: on 12 warped copies
    # of one brain it lifts the unpainted ones from 0.643 to 0.671 mean Dice (3 seeds), on 12
    # independent phantom hearts it drops them from 0.97 to 0.73, on a second brain from 0.645 to
    # 0.637 (one seed each; docs/benchmarks.md, "How much of the carried prior a prediction mixes in").
    unpainted_prior: str = "none"
    # Its confidence is the painted volume's prior's times this (below loss.prior_labeled_confidence,
    # it only votes with the teacher and never serves as labels; 0.5 was worse than 1 on the brains
    # and still below "none" on the hearts).
    unpainted_prior_confidence: float = 1.0
    # Mixed precision on CUDA (bfloat16 autocast; float16 with a loss scaler before Ampere); the
    # losses and the small heads stay float32. Off: on an H200 it was 7-12 % slower per step than
    # float32 (whose convolutions use TF32) and took more memory, for both presets
    # (docs/benchmarks.md, "On a GPU"); these 2D networks are launch-bound, and the casts add
    # kernels. Worth trying on cards without TF32.
    amp: bool = False
    # bfloat16 autocast on a CPU; None: where the CPU computes bfloat16 natively (AVX512-BF16,
    # AMX), float32 elsewhere (emulated there, and slower). Training 29-31 % shorter, Dice within
    # 0.01 of float32 both ways on four benchmarks (Colin27 -0.004, its cohort +0.010; docs/
    # benchmarks.md, "bfloat16 where the CPU has it"). Before the propagated labels and the
    # supervised start it cost the phantom's never-painted hearts 0.04-0.07.
    cpu_bfloat16: bool | None = None
    num_threads: int | None = None
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)

    @classmethod
    def preset(cls, budget: str = "cpu", **overrides: Any) -> TrainConfig:
        """Return the ``cpu`` or ``paper`` budget, with ``overrides`` applied.

        ``cpu`` gives a useful model on 2 CPU cores within minutes; ``paper``
        is the method's GPU setting with a shortened warm-up.
        """
        if budget == "cpu":
            base = cls(
                budget="cpu",
                # AdamW at 1e-3: on Colin27 (k=3, 600 supervised steps) it reached
                # mean Dice 0.29 where the paper's SGD at 0.01 reached 0.05.
                optimizer="adamw",
                lr=1e-3,
                # 300 supervised steps in place of the distillation warm-ups (100 + 200): after
                # the warm-ups the network drew no structure for 400-500 steps, so a small class
                # could still be missing at the end. Colin27 k = 3 0.745 -> 0.748 (6 runs), the
                # Colin27 cohort 0.603 -> 0.670, 12 % less time (docs/benchmarks.md, "Why a class vanished").
                steps_supervised_start=300,
                steps_stage1=0,
                steps_stage2=0,
                # A streamed update of 16 slices cost 11-18 % of CPU training time.
                stream_slices=8,
                unpainted_crops_per_volume=600,
                # Anatomical contrast on every 8th pixel of a 128 crop (16 x 16; the paper preset
                # 1/4): at 1/4 its 3 x 3 convolution on 496 channels cost more than the U-Net's
                # forward pass; at 1/8 the same Dice on Colin27 (docs/benchmarks.md, "Engine").
                model=ModelConfig(rep_dim=128, rep_stride=8),
                loss=LossConfig(anco_queries=64, anco_negatives=128),
            )
        elif budget == "paper":
            base = cls(
                budget="paper",
                crop_size=256,
                batch_labeled=3,
                batch_unlabeled=3,
                batch_labeled_stage3=4,
                batch_unlabeled_stage3=4,
                steps_stage1=2000,
                steps_stage2=2000,
                steps_stage3=30000,
                stream_every_steps=200,
                stream_every_seconds=2.0,
            )
        else:
            raise ValueError(f"Unknown budget {budget!r}; choose one of {BUDGETS}.")
        return base.replace(**overrides)

    def replace(self, **changes: Any) -> TrainConfig:
        """Copy with ``changes``; nested ``model``/``loss`` accept dicts.

        Raises
        ------
        TypeError
            A name that is no setting (a typo), with the settings of that name's kind closest to it.
        ValueError
            A value :meth:`validate` refuses.
        """
        for name in ("model", "loss"):
            if isinstance(changes.get(name), dict):
                check_setting_names(type(getattr(self, name)), changes[name], prefix=f"{name}.")
                changes[name] = dataclasses.replace(getattr(self, name), **changes[name])
        new = dataclasses.replace(self, **changes)
        new.validate()
        return new

    def cohort_stage3_steps(self, unpainted: int) -> int:
        """Stage-iii steps beside ``unpainted`` volumes nobody painted: enough for each to give
        ``unpainted_crops_per_volume`` unlabeled crops, at least ``steps_stage3`` and at most
        :data:`MAX_COHORT_STEPS_FACTOR` times it (the supervised baseline learns nothing from them)."""
        if self.method == "supervised" or self.unpainted_crops_per_volume <= 0:
            return self.steps_stage3
        wanted = math.ceil(unpainted * self.unpainted_crops_per_volume / self.batch_unlabeled_stage3)
        return min(max(self.steps_stage3, wanted), round(MAX_COHORT_STEPS_FACTOR * self.steps_stage3))

    def fewest_unpainted_lengthening(self) -> int | None:
        """The fewest volumes nobody painted that make :meth:`cohort_stage3_steps` lengthen stage iii
        (None: none do), for the help texts."""
        if self.cohort_stage3_steps(10**6) == self.steps_stage3:
            return None
        return self.steps_stage3 * self.batch_unlabeled_stage3 // self.unpainted_crops_per_volume + 1

    def cohort_lengthening_text(self, images: str = "images") -> str:
        """How :meth:`cohort_stage3_steps` lengthens stage iii, in words for the help texts (``images``: what
        the volumes are called there). Its point of onset moves with the steps: stated for this config's."""
        return (
            f"the cpu budget lengthens it so that each of the {images} with no painted slice gives "
            f"{self.unpainted_crops_per_volume} unlabeled crops ({self.batch_unlabeled_stage3} a step), up to "
            f"{MAX_COHORT_STEPS_FACTOR:g}-fold: at {self.steps_stage3} steps from "
            f"{self.fewest_unpainted_lengthening()} such {images} on, at fewer steps from fewer"
        )

    @property
    def total_steps(self) -> int:
        """Steps in one full run of the schedule for this method."""
        if self.method == "action":
            stage1 = self.steps_stage1 if self.loss.use_global else 0
            stage2 = self.steps_stage2 if (self.loss.use_global or self.loss.use_local) else 0
            return self.steps_supervised_start + stage1 + stage2 + self.steps_stage3
        return self.steps_stage3

    def validate(self) -> None:
        """Raise ``ValueError`` with a readable message on inconsistent settings."""
        for settings, prefix in ((self, ""), (self.model, "model."), (self.loss, "loss.")):
            check_setting_types(settings, prefix)
        if self.method not in METHODS:
            raise ValueError(f"Unknown method {self.method!r}; choose one of {METHODS}.")
        if self.budget not in BUDGETS:
            raise ValueError(f"Unknown budget {self.budget!r}; choose one of {BUDGETS}.")
        if self.unpainted_crops_per_volume < 0:
            raise ValueError(f"unpainted_crops_per_volume must be >= 0, got {self.unpainted_crops_per_volume}.")
        if self.annotation_mode not in ("slice", "scribble"):
            raise ValueError("annotation_mode must be 'slice' or 'scribble'.")
        if self.annotation_mode == "scribble" and self.background_value is None:
            raise ValueError("Scribble mode needs background_value: the label value you paint background with.")
        if self.optimizer not in ("sgd", "adamw"):
            raise ValueError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}.")
        if self.crop_size % 16 or self.crop_size < 16:
            raise ValueError(f"crop_size must be a positive multiple of 16 (32, 64, 128, ...), got {self.crop_size}.")
        for name in SCHEDULE_STEPS:
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0.")
        for name in ("batch_labeled", "batch_unlabeled", "batch_labeled_stage3", "batch_unlabeled_stage3"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1.")
        for name in (
            "foreground_crop_prob",
            "background_slice_share",
            "flip_prob",
            "rot90_prob",
            "stream_min_fit",
        ):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}.")
        for name in ("prior_share", "prior_labeled_share", "prior_labeled_confidence"):
            if not 0.0 <= getattr(self.loss, name) <= 1.0:
                raise ValueError(f"loss.{name} must be in [0, 1], got {getattr(self.loss, name)}.")
        if not 0.0 <= self.loss.ema_momentum < 1.0:
            raise ValueError("loss.ema_momentum must be in [0, 1).")
        if self.prior_source not in PRIOR_SOURCES:
            raise ValueError(f"prior_source must be one of {PRIOR_SOURCES}, got {self.prior_source!r}.")
        if self.stream_over_preview not in STREAM_OVER_PREVIEW:
            raise ValueError(
                f"stream_over_preview must be one of {STREAM_OVER_PREVIEW}, got {self.stream_over_preview!r}."
            )
        if not 0.0 <= self.zoom_spread < 1.0:
            raise ValueError(f"zoom_spread must be in [0, 1), got {self.zoom_spread}.")
        if not 0.0 <= self.unpainted_prior_confidence <= 1.0:
            raise ValueError(f"unpainted_prior_confidence must be in [0, 1], got {self.unpainted_prior_confidence}.")
        check_intensity_reference(self.intensity_reference)
        if self.structure_ends not in STRUCTURE_ENDS:
            raise ValueError(f"structure_ends must be one of {STRUCTURE_ENDS}, got {self.structure_ends!r}.")
        if self.unpainted_prior not in UNPAINTED_PRIORS:
            raise ValueError(f"unpainted_prior must be one of {UNPAINTED_PRIORS}, got {self.unpainted_prior!r}.")
        if self.loss.prior not in PRIORS:
            raise ValueError(f"loss.prior must be one of {PRIORS}, got {self.loss.prior!r}.")
        if self.noise_sigma is not None and self.noise_sigma < 0.0:
            raise ValueError(f"noise_sigma must be >= 0, got {self.noise_sigma}.")
        if self.model.context < 0:
            raise ValueError("model.context must be >= 0.")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (stored in checkpoints and sessions)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``.

        Settings earlier versions saved under another name or meaning are read as today's
        (:func:`upgraded_settings`).
        """
        data = upgraded_settings(data)
        model = ModelConfig(**_known(ModelConfig, data.pop("model", {})))
        if isinstance(model.dropout, list):
            model.dropout = tuple(model.dropout)
        loss = LossConfig(**_known(LossConfig, data.pop("loss", {})))
        config = cls(**_known(cls, data), model=model, loss=loss)
        config.validate()
        return config


def _known(kind: type, data: dict[str, Any]) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(f"Unknown {kind.__name__} fields: {sorted(unknown)}")
    return data

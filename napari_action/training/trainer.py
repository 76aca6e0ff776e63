"""The ACTION trainer: a generator of progress that front ends only adapt.

``Trainer.iter_train()`` runs the stage schedule and yields one
:class:`~napari_action.progress.TrainProgress` per optimiser step, so a caller
can stop, pause or hand over new labels between any two steps:

>>> trainer = Trainer([image], [sparse_labels], TrainConfig.preset("cpu"))  # doctest: +SKIP
>>> for progress in trainer.iter_train():                                   # doctest: +SKIP
...     print(progress.stage, progress.step, progress.losses)

The generator accepts ``send(AnnotationUpdate(...))`` (new or corrected
labels, applied before the next step without restarting) and
``send(FocusRequest(...))`` (stream this slice next).

Started by ``torchrun`` with several processes, the trainer trains one model
on all of them (:mod:`napari_action.training.distributed`); every process
must then make the same calls: the same schedule, and any stop request or
label update at the same step on every rank.
"""

from __future__ import annotations

import logging
import math
import weakref
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from napari_action.config import TrainConfig
from napari_action.data.priors import SlicePrior
from napari_action.data.slice_pool import SlicePool
from napari_action.data.structure_extents import StructureExtents
from napari_action.data.unpainted_extents import UnpaintedExtents
from napari_action.inference.predictor import Predictor
from napari_action.io.checkpoint import Checkpoint, save_checkpoint
from napari_action.networks.teacher import EmbeddingQueue, StudentTeacher, local_queue
from napari_action.progress import AnnotationUpdate, FocusRequest, PredictionUpdate, SlicePrediction, TrainProgress
from napari_action.runtime import (
    autocast,
    configure_threads,
    device_label,
    is_out_of_memory,
    needs_grad_scaler,
    resolve_amp,
    resolve_device,
    seed_everything,
)
from napari_action.training import distributed, stages
from napari_action.training.argument_checks import check_class_names, check_init
from napari_action.training.checkpoint_weights import checkpoint_from_nets, nets_from_checkpoint
from napari_action.training.label_advice import label_advice
from napari_action.training.preview import iter_prior_preview, streamed_slices, teacher_predictor
from napari_action.training.rate_clock import RateClock
from napari_action.training.safeguards import WeightSnapshot
from napari_action.training.schedule import Stage, build_schedule, make_optimizer, poly_learning_rate
from napari_action.training.step_recovery import diverged_error, smaller_batches
from napari_action.training.stream_schedule import FitGate, StreamCursor
from napari_action.training.trainer_inputs import (
    WholeVolumes,
    check_config,
    decided_from_data,
    normalized_images,
    prepared_volumes,
    updated_annotation,
    with_checkpoint_settings,
)
from napari_action.training.volume_prediction import (
    checked_volume_index,
    predict_training_volume,
    training_volume_extents,
)
from napari_action.training.volume_turns import VolumeTurns

logger = logging.getLogger(__name__)


class Trainer:
    """Train ACTION (or a baseline) on sparsely painted volumes.

    Parameters
    ----------
    volumes : sequence of np.ndarray, VolumeSource or array-like
        Raw 3D images, any numeric dtype; never modified nor copied whole
        (they are read while training runs: do not change them meanwhile).
        Arrays in memory are normalised crop by crop with statistics from
        every voxel. Images read lazily (a
        :class:`~napari_action.io.volume_source.VolumeSource`, a zarr or dask
        array) are read a slice at a time, with statistics from a sample of
        whole slices (exact up to 16 Mi voxels), so they need not fit in memory.
        A torch tensor is read as the numpy array it holds (copied to the CPU first).
    labels : sequence of np.ndarray, PaintedSlices or None
        ``labels[k]`` holds the painted slices of ``volumes[k]`` (0 = not
        painted): a whole label array, or only the painted slices of a file
        too large to read whole (:mod:`napari_action.data.painted_slices`).
        Volumes without labels (``None`` or beyond the end of the sequence)
        are unlabeled data.
    config : TrainConfig, optional
        Defaults to ``TrainConfig.preset("cpu")``.
    labeled_slices : mapping of int to iterable of int, optional
        Extra slices per volume that count as labeled although nothing is
        painted on them (slices that truly hold only background).
    class_names : mapping of int to str, optional
        Names of label values, kept in checkpoints. With ``init``, the checkpoint's names stay
        for the values this mapping does not name.
    init : str, Path or Checkpoint, optional
        Start from these weights (continue from your own model). Its network sizes
        (``config.model``) and intensity normalisation replace ``config``'s, which
        the weights would not fit; the rest of ``config`` applies.
    spacings : sequence of (float, float, float), optional
        Voxel size in mm of each volume per array axis (default 1 mm; prediction smooths across slices in mm).
    affines : sequence of 4 x 4 arrays, optional
        Each volume's voxel → world affine (a NIfTI affine, millimetres). A volume stored in another
        voxel order than the first painted one (LPS beside RAS) is read in that order, and all that is
        handed out for it comes back in its own (:attr:`turns`). Volumes nobody painted can get the
        painted volumes' prior registered onto them (``config.unpainted_prior``). Default: each
        volume's spacings, no rotation; without ``spacings``, voxel sizes come from the affines.
    names : sequence of str, optional
        One per volume: what the user calls it (a layer or file name), for the notes of :attr:`advice`;
        default "volume 1", "volume 2", ...

    Raises
    ------
    ValueError
        On anything wrong with the input, with a message saying what to do.
    TypeError
        An argument of the wrong kind: one array for a list of them (``Trainer(image, labels)``), a ``config``
        not a :class:`TrainConfig`, ``class_names`` not a mapping, ``init`` neither a path nor a Checkpoint.
    """

    def __init__(
        self,
        volumes: Sequence[np.ndarray],
        labels: Sequence[np.ndarray | None] = (),
        config: TrainConfig | None = None,
        *,
        labeled_slices: Mapping[int, Sequence[int]] | None = None,
        class_names: Mapping[int, str] | None = None,
        init: str | Path | Checkpoint | None = None,
        spacings: Sequence[Sequence[float]] | None = None,
        affines: Sequence[np.ndarray] | None = None,
        names: Sequence[str] | None = None,
    ):
        self.config = TrainConfig.preset("cpu") if config is None else check_config(config)
        self.config.validate()
        configure_threads(self.config.num_threads)
        checkpoint = check_init(init)
        self.config = with_checkpoint_settings(self.config, checkpoint)
        prepared = prepared_volumes(volumes, labels, self.config, checkpoint, labeled_slices, spacings, affines, names)
        self.annotation, self._axis_advice, names = prepared.annotation, prepared.axis_advice, prepared.names
        self.spacings, world, self.turns = prepared.spacings, prepared.world, prepared.turns
        self.references = VolumeTurns.references(world, self.annotation.painted_volumes)  # what a saved model records
        self.images = normalized_images(prepared.volumes, self.axis, self.config.intensity_reference, names)
        # A model continued from a checkpoint keeps its names for the values the painted labels do not name.
        self.class_names = {**(checkpoint.class_names if checkpoint else {}), **check_class_names(class_names)}
        self.config, notes = decided_from_data(self.config, self.images, self.spacings, self.annotation, names, world)
        self._data_notes = [*notes, *prepared.turned_notes]
        carry_affines = world if self.config.unpainted_prior != "none" else None
        self.pool = SlicePool(
            self.images,
            self.annotation,
            context=self.config.model.context,
            prior=True,  # kept whatever loss.prior says: it is also the preview and the prediction's fusion
            prior_source=self.config.prior_source,
            spacings=self.spacings,
            affines=carry_affines,
            carried_confidence=self.config.unpainted_prior_confidence,
            resize_crops=self.config.resize_crops,
        )
        self._unpainted_extents = UnpaintedExtents(self.images, world)
        self.distributed = distributed.context_from_environment()
        self.device = distributed.device_for_rank(resolve_device(self.config.device), self.distributed)
        self.amp = resolve_amp(self.device, self.config.amp, self.config.cpu_bfloat16)
        distributed.join(self.distributed, self.device)
        seed_everything(self.config.seed)
        self.step = 0
        self.rounds = 0  # completed schedules; a loaded checkpoint counts as one
        self.nets = StudentTeacher(self.config.model.in_channels, self.annotation.num_classes, self.config.model)
        if checkpoint is not None:
            self.nets = nets_from_checkpoint(checkpoint, self.annotation.num_classes, self.config.model)
            self.rounds = 1  # already warmed up: continue with stage-iii rounds
        self._place_nets()
        distributed.broadcast_module(self.nets, self.distributed)
        # The student's call of every step; wrapped for DistributedDataParallel under torchrun.
        self._passes = distributed.StudentPassCache(self.distributed, self.device)
        self.global_queue = EmbeddingQueue(self.config.loss.queue_size, self.config.model.global_dim).to(self.device)
        self.local_queue = local_queue(self.config.loss.queue_size, self.annotation.num_classes).to(self.device)
        self.rng, self.generator = distributed.rank_generators(self.config.seed, self.distributed, self.device)
        self._scaler = torch.amp.GradScaler("cuda", enabled=needs_grad_scaler(self.device, self.amp))
        self._stop_requested = False
        self._run: Callable[[], Generator | None] = lambda: None  # the last iter_train's, while it is alive
        # The weights a diverging loss falls back to, and a message for the next progress.
        self._snapshot = WeightSnapshot()
        self._snapshot.take(self.nets, 0)
        self._notice: str | None = None
        self._stream = StreamCursor([v.shape[self.axis] for v in self.images], self.config.stream_slices)
        self._gate = FitGate(self.config.stream_min_fit)

    # -- public properties -------------------------------------------------
    @property
    def axis(self) -> int:
        return self.annotation.axis

    @property
    def class_values(self) -> np.ndarray:
        return self.annotation.class_values

    @property
    def advice(self) -> list[str]:
        """What the user should know about these labels before trusting the result (front ends show it)."""
        notes = (self._axis_advice, *label_advice(self.annotation, self.class_names, self.spacings), *self._data_notes)
        return [advice for advice in notes if advice]

    @property
    def volumes(self) -> Sequence[np.ndarray]:
        """The normalised training volumes; each is computed whole (4 bytes per voxel) when indexed.

        Training itself never needs them whole: it reads crops through :attr:`images`.
        """
        return WholeVolumes(self.images, self.turns.to_stored)

    @property
    def device_label(self) -> str:
        return device_label(self.device, self.amp)

    # -- training ------------------------------------------------------------
    def iter_train(self, steps: int | None = None) -> Generator[TrainProgress, object, None]:
        """Run the schedule, yielding after every step.

        The first call runs the whole schedule of ``config.method``; later calls ("Retrain", "Update once") run one
        more round of the last stage from the current weights. ``steps``: the last stage's length in either
        (default: configured; ValueError below 0). The warm-up is done once the last stage has begun, however the
        call ends (its last step, :meth:`request_stop`, a ``break`` out of the loop over it, an error); a first call
        that ends before then runs the whole schedule again next time, from the current weights. A run left
        suspended (kept in a variable after a ``break``) ends when the next one starts, as if it had ended there
        (else it counted its warm-up when collected, and cleared another run's stop). :meth:`stage_steps` tells what
        the next call runs.
        """
        if (kept := self._run()) is not None:
            kept.close()
        run = self._iter_train(steps)
        self._run = weakref.ref(run)  # one dropped by a loop's break is collected, and so ended, at once
        return run

    def _iter_train(self, steps: int | None) -> Generator[TrainProgress, object, None]:
        schedule = build_schedule(self.config, self.rounds, steps)
        total = sum(stage.steps for stage in schedule)
        clock = RateClock(total)
        last_begun = False
        try:
            for stage in schedule:
                # A stop requested before the first step (or between stages) counts too.
                if self._stop_requested:
                    return
                last_begun = stage is schedule[-1]
                yield from self._run_stage(stage, clock)
        finally:
            if last_begun:
                self.rounds += 1
            # On every rank, not only where a streamed prediction happened to sync it (rank 0, timing).
            self._sync_supervised_teacher()
            self._stop_requested = False

    def _run_stage(self, stage: Stage, clock: RateClock) -> Generator[TrainProgress, object, None]:
        inputs = self._step_inputs(stage)
        optimizer = make_optimizer(self.nets.student, stage, self.config)
        index = 0
        while index < stage.steps:
            inputs.step_in_stage = index
            try:
                logs, lr = self._train_step(stage, inputs, optimizer, index)
            except Exception as error:
                # Several ranks cannot agree on halved batches mid-step, and DDP cannot resume a
                # step whose backward never ran: there the error ends this rank (and torchrun the rest).
                if not is_out_of_memory(error) or self.distributed.is_distributed:
                    raise
                optimizer.zero_grad(set_to_none=True)
                self.config, self._notice = smaller_batches(self.config, self.device, error)
                inputs.config = self.config
                continue  # the same step again, with smaller batches
            index += 1
            self.step += 1
            self._snapshot.maybe_take(self.nets, self.step)
            clock.tick()
            command = yield self._progress(stage, clock, logs, lr)
            if self._handle(command):
                inputs = self._step_inputs(stage)
                optimizer = make_optimizer(self.nets.student, stage, self.config)
            if self._stop_requested:
                logger.info("training stopped at step %d", self.step)
                return

    def round_steps(self, steps: int | None = None) -> int:
        """Steps the next :meth:`iter_train` call will run, warm-up stages included."""
        return sum(steps for _, steps in self.stage_steps(steps))

    def stage_steps(self, steps: int | None = None) -> list[tuple[str, int]]:
        """(stage name, steps) of every stage the next :meth:`iter_train` call will run."""
        return [(stage.name, stage.steps) for stage in build_schedule(self.config, self.rounds, steps)]

    def train(self, steps: int | None = None) -> list[TrainProgress]:
        """Run :meth:`iter_train` to the end; return the progress of every step."""
        return list(self.iter_train(steps))

    def request_stop(self) -> None:
        """Ask the running generator to return after the current step."""
        self._stop_requested = True

    def update_annotation(
        self,
        labels: Sequence[np.ndarray | None],
        labeled_slices: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        """Replace the labels (painted plus corrected slices) without restarting.

        A label value never seen before adds an output class: the weights of
        the existing classes are kept, the teacher is re-synced and the local
        queue, whose entries have one block per class, starts empty again. ValueError where the labels
        cannot train (as at the start); sent into a running :meth:`iter_train`, such labels are refused with
        a notice in the next progress, and training goes on with the labels it had.
        """
        shapes = [v.shape for v in self.images]
        annotation = updated_annotation(self.turns, labels, labeled_slices, shapes, self.config, self.annotation)
        added = annotation.num_classes - self.annotation.num_classes
        self.annotation = annotation
        self.pool.update_annotation(annotation)
        if added > 0:
            logger.info("new label value(s): adding %d output class(es)", added)
            self.nets.add_classes(added)
            self._place_nets()
            # The new classes' weights were drawn from each rank's own generator.
            distributed.broadcast_module(self.nets, self.distributed)
            self.local_queue = local_queue(self.config.loss.queue_size, self.annotation.num_classes).to(self.device)
            self._snapshot.take(self.nets, self.step)

    def _handle(self, command: object) -> bool:
        """Apply a message sent into the generator; True if the model changed shape."""
        if isinstance(command, AnnotationUpdate):
            before = self.annotation.num_classes
            try:
                self.update_annotation(command.labels, command.labeled_slices)
            except ValueError as refusal:  # one stroke too many (a fill through every slice) must not end the run
                self._notice = f"{refusal} Training keeps the labels it had until then."
                logger.warning(self._notice)
            return self.annotation.num_classes != before
        if isinstance(command, FocusRequest):
            focus = self.turns.focus(command, self.axis)  # sent in the volume's stored order
            self._stream.focus(focus.volume_index, focus.slice_index)
        elif command is not None:
            raise TypeError(f"iter_train() cannot handle {type(command).__name__}")
        return False

    def _step_inputs(self, stage: Stage) -> stages.StepInputs:
        if stage.compute is stages.action and self.rounds == 0:
            # Stage iii starts student and teacher from the student of the stage before (ii, or the supervised start).
            self.nets.sync_teacher()
        return stages.StepInputs(
            config=self.config,
            nets=self.nets,
            pool=self.pool,
            global_queue=self.global_queue,
            local_queue=self.local_queue,
            device=self.device,
            rng=self.rng,
            generator=self.generator,
            stage_steps=stage.steps,
            student_pass=self._passes.student_pass(self.nets.student),
            gather=self._gather_embeddings,
        )

    def _gather_embeddings(self, embeddings: torch.Tensor) -> torch.Tensor:
        return distributed.gather_rows(embeddings, self.distributed)

    def _train_step(
        self, stage: Stage, inputs: stages.StepInputs, optimizer: torch.optim.Optimizer, index: int
    ) -> tuple[dict[str, float], float]:
        lr = poly_learning_rate(self.config.lr, index, stage.steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        self.nets.train()
        with autocast(self.device, self.amp):
            loss, logs = stage.compute(inputs)
        logs["total"] = float(loss.detach())
        # Under torchrun: the mean over ranks, non-finite on all ranks if it is on one, so all stop together.
        logs = distributed.average_values(logs, self.distributed, self.device)
        if not math.isfinite(logs["total"]):
            raise diverged_error(self._snapshot, self.nets, loss=logs["total"], step=self.step, stage=stage.name)
        optimizer.zero_grad(set_to_none=True)
        # The scaler is a pass-through except with float16 autocast (pre-Ampere GPUs).
        self._scaler.scale(loss).backward()
        self._scaler.step(optimizer)
        self._scaler.update()
        distributed.average_buffers(self.nets.student, self.distributed)
        if self.config.method != "supervised":
            # ACTION's supervised start included: the teacher follows, so the
            # fit gate and streaming see the network learn.
            self.nets.ema_update(self.config.loss.ema_momentum)
        return logs, lr

    def _progress(self, stage: Stage, clock: RateClock, logs: dict[str, float], lr: float) -> TrainProgress:
        # Only rank 0 streams: prediction involves no collective, the other ranks just skip it.
        due = (self._stream, self._gate, self.predictor, self.pool, self.images, self.spacings, self.config)
        predictions = self.turns.slices_out(streamed_slices(*due, clock.done)) if self.distributed.is_main else ()
        return TrainProgress(
            stage=stage.name,
            step=clock.done,
            total_steps=clock.total,
            losses=logs,
            lr=lr,
            steps_per_second=clock.rate,
            eta_seconds=clock.eta,
            device=self.device_label,
            predictions=predictions,
            painted_fit=self._gate.fit,
            streaming=self._gate.open,
            preview_kept=self.config.stream_over_preview == "unreached" and bool(self.pool.priors),
            notice=self._take_notice(),
        )

    def _take_notice(self) -> str | None:
        notice, self._notice = self._notice, None
        return notice

    def _place_nets(self) -> None:
        # Channels-last weights let oneDNN (CPU) and cuDNN (GPU) pick faster
        # convolution kernels: a stage-iii step on 2 CPU cores took 14 % less.
        self.nets.to(self.device, memory_format=torch.channels_last)

    # -- prediction and persistence -----------------------------------------
    def predictor(self) -> Predictor:
        """A predictor over the EMA teacher (eval mode), sharing its weights."""
        self._sync_supervised_teacher()
        return teacher_predictor(
            self.nets.teacher, self.class_values, self.axis, self.config, self.device, self.pixel_mm
        )

    @property
    def pixel_mm(self) -> tuple[float, float] | None:
        """The painted slices' in-plane voxel size (mm), which prediction resizes other volumes' slices to."""
        return self.pool.pixel_mm

    def prior(self, volume_index: int) -> SlicePrior | None:
        """The prior from the labeled slices of a training volume (``config.prior_source``), if it has any; in the
        training voxel order (:attr:`turns`), as :meth:`structure_extents`."""
        return self.pool.priors.get(volume_index)

    def iter_preview(self) -> Iterator[tuple[SlicePrediction, ...]]:
        """The prior of every training volume, run by run as it is computed: what to show before the network.

        Label values, not class ids, each volume in its stored order; the confidence is the prior's. Whatever
        is computed here is kept for training (the propagation runs once).
        """
        for run in iter_prior_preview(self.pool.priors, self.class_values, self.axis):
            yield self.turns.slices_out(run)

    def structure_extents(self, volume_index: int) -> StructureExtents | None:
        """Where each structure starts and ends on a training volume (``config.structure_ends``): on a painted
        volume where its own propagation places it, on one nobody painted where the painted volumes'
        propagation lands once registered onto it; None when nothing bounds the structures there."""
        return training_volume_extents(
            self.config, volume_index, self.pool.priors, self.annotation, self._unpainted_extents
        )

    def predict_volume(self, volume: int | np.ndarray, **kwargs) -> Iterator[PredictionUpdate]:
        """Predict a training volume (by index: with its labeled slices as a prior, each structure within
        the slices it is known to reach) or any other 3D image."""
        if isinstance(volume, (int, np.integer)):
            index = checked_volume_index(volume, len(self.images))
            kwargs.setdefault("spacing", self.spacings[index])
            if "extents" not in kwargs:  # registers the volume the first time: not for a caller's own
                kwargs["extents"] = self.structure_extents(index)
            image, prior = self.images[index], self.prior(index)
            return predict_training_volume(self.predictor(), image, index, prior, self.turns, **kwargs)
        return self.predictor().iter_predict(volume, **kwargs)

    def checkpoint(self) -> Checkpoint:
        """The current state as a :class:`Checkpoint` (weights copied to CPU)."""
        self._sync_supervised_teacher()
        return checkpoint_from_nets(
            self.nets,
            self.config,
            class_values=self.class_values,
            axis=self.axis,
            class_names=self.class_names,
            step=self.step,
            pixel_mm=self.pixel_mm,
        )

    def save_checkpoint(self, path: str | Path) -> Path:
        """Write weights, config, classes and axis to ``path`` (atomically)."""
        return save_checkpoint(path, self.checkpoint())

    def _sync_supervised_teacher(self) -> None:
        # The supervised baseline has no teacher of its own: prediction and
        # checkpoints use the "teacher" slot, so it must hold the trained student.
        if self.config.method == "supervised":
            self.nets.sync_teacher()

"""``napari-action train``: a model from NIfTI images and their sparse labels.

Under ``torchrun --nproc-per-node N`` (and ``--nnodes`` for several machines)
the same command trains one model on N processes
(:mod:`napari_action.training.distributed`); only rank 0 prints the schedule
and the progress and writes ``--out``, so there is exactly one checkpoint,
loadable like any other.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from napari_action.checks import normalize_axis
from napari_action.cli.given_files import (
    folder_advice_for_label_map,
    folder_advice_for_train,
    refuse_repeated_images,
)
from napari_action.cli.options import (
    NAN_TO_ZERO_ADVICE,
    add_nan_to_zero_option,
    add_precision_option,
    add_schedule_options,
    add_seed_option,
    add_structure_ends_option,
    add_threads_option,
    config_from_args,
    int_list,
    load_image,
)
from napari_action.cli.progress_bar import TerminalProgress, describe_schedule, run_training
from napari_action.cli.unsaved_models import keep_interrupted, save_trained_model
from napari_action.config import BUDGETS, METHODS, PRIOR_SOURCES, UNPAINTED_PRIORS
from napari_action.data.intensity import SAMPLE_VOXELS
from napari_action.data.painted_slices import PaintedSlices, read_painted_slices, scan_paint
from napari_action.data.slicing_axis import decide_axis, has_paint
from napari_action.io.atomic import accepts_files, make_folder_for
from napari_action.io.geometry import describe_grid, same_voxel_grid
from napari_action.io.label_map import load_label_map, open_label_source
from napari_action.io.nifti import FolderGivenError, NonFiniteVoxelsError
from napari_action.io.volume_meta import VolumeMeta
from napari_action.io.volume_source import ZARR_SUFFIX, NiftiSlices, VolumeSource, open_volume_source
from napari_action.label_values import as_integer_labels, check_class_count
from napari_action.training.volume_turns import VolumeTurns, model_order, painted_indices

if TYPE_CHECKING:  # for annotations only: importing the trainer imports torch
    from napari_action.io.checkpoint import Checkpoint
    from napari_action.training.trainer import Trainer


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command and its options to ``commands``."""
    train = commands.add_parser("train", help="train a model from sparse labels")
    train.add_argument(
        "--image",
        action="append",
        required=True,
        type=Path,
        help="NIfTI image or zarr store; repeat for several. Images beyond the labels are unlabeled data. "
        "Large uncompressed .nii and zarr images are read slice by slice (they need not fit in memory).",
    )
    train.add_argument(
        "--labels",
        action="append",
        default=[],
        type=Path,
        help="sparse labels of the k-th --image (0 = not painted): a NIfTI file or a zarr store",
    )
    train.add_argument(
        "--class-names",
        type=Path,
        default=None,
        metavar="TABLE",
        help="a table naming the label values, kept in the model: 'value name R G B A' lines (3D Slicer, "
        "FreeSurfer; Export writes one beside each mask) or an ITK-SNAP label description file. Default: the "
        "table beside a --labels file under its name (painted.ctbl beside painted.nii.gz), if there is one",
    )
    train.add_argument("--axis", type=int, default=None, help="slicing axis (default: inferred)")
    train.add_argument(
        "--labeled-slices",
        type=int_list,
        default=None,
        help="extra slices of the first image that count as labeled (truly background)",
    )
    train.add_argument("--method", choices=METHODS, default="action")
    train.add_argument("--budget", choices=BUDGETS, default="cpu")
    train.add_argument(
        "--prior",
        choices=PRIOR_SOURCES,
        default="propagation",
        help="what the painted slices say about the others: propagation (labels carried along the image, "
        "default) or interpolation (shapes morphed between painted slices, image ignored)",
    )
    train.add_argument(
        "--unpainted-prior",
        choices=UNPAINTED_PRIORS,
        default="none",
        help="images without labels: none (unlabeled data only, default) or registration (the painted "
        "images' propagated labels registered onto them: for one anatomy seen through different scans)",
    )
    add_schedule_options(train)
    add_structure_ends_option(train)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    add_seed_option(train)
    add_threads_option(train)
    add_precision_option(train)
    add_nan_to_zero_option(train)
    train.add_argument(
        "--init",
        type=Path,
        default=None,
        metavar="MODEL",
        help="start from this model (a .pt of train --out or the widget's Save model…) and train on: its "
        "network sizes, normalisation and class names are kept, and the schedule is one more round of its last "
        "stage (more labels, corrections, new images)",
    )
    train.add_argument("--out", required=True, type=Path, help="checkpoint file to write (.pt)")
    train.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    train.set_defaults(run=run, interrupted="no model was written (--out is as it was)")


def run(args: argparse.Namespace) -> int:
    """Train on the given files and write the checkpoint; return the exit code."""
    # Imported when the command runs, so that `napari-action --help` does not wait
    # for torch (a second or more).
    from napari_action.training import distributed

    try:
        return _train(args)
    finally:
        distributed.leave()


def _train(args: argparse.Namespace) -> int:
    """What :func:`run` does, on every rank; the process group is left by the caller."""
    from napari_action.inference.loaded_model import save_model
    from napari_action.training import distributed
    from napari_action.training.trainer import Trainer

    if len(args.labels) > len(args.image):
        raise ValueError("More --labels than --image: the k-th --labels belongs to the k-th --image.")
    refuse_repeated_images(args.image, args.labels)
    _check_output(args.out, args.overwrite, [*args.image, *args.labels])
    class_names = _class_names(args.class_names, args.labels)  # a table's typo is told before any image is read
    init = _initial_model(args.init, args.axis)  # and a file that is no model, too
    try:
        loaded = [training_image(path, nan_to_zero=args.nan_to_zero) for path in args.image]
    except FolderGivenError as error:
        raise folder_advice_for_train(error) from None
    images = [volume for volume, _ in loaded]
    affines = [meta.affine for _, meta in loaded]
    try:
        painted = training_labels(args.labels, images, args.axis, args.labeled_slices, affines=affines, init=init)
    except FolderGivenError as error:
        raise folder_advice_for_label_map(error, "--labels") from None
    _check_pairs(args.image, loaded, args.labels, painted)
    labels = [array for array, _ in painted]
    if args.labeled_slices and not any(has_paint(array) for array in labels):
        # The core accepts slices marked as labeled alone; from the command line that is a model of background.
        raise ValueError(
            "Paint at least one structure: --labeled-slices marks slices as background, and no --labels file "
            "holds a painted voxel."
        )
    extra = {0: args.labeled_slices} if args.labeled_slices else None
    spacings = [meta.zooms[:3] for _, meta in loaded]
    try:
        trainer = Trainer(
            images,
            labels,
            config_from_args(args),
            labeled_slices=extra,
            class_names=class_names,
            init=init,
            spacings=spacings,
            affines=affines,
            names=[str(path) for path in args.image],  # the notes name the files as the user gave them
        )
    except NonFiniteVoxelsError as error:
        raise error.with_advice(NAN_TO_ZERO_ADVICE) from None
    # The trainer copied the labeled slices: whole label volumes would only take memory from here on.
    del painted, labels
    main = trainer.distributed.is_main
    if main:
        print(
            f"Training {trainer.config.method} on {_where(trainer)}: {len(images)} volume(s), "
            f"axis {trainer.axis}, classes {trainer.class_values.tolist()}, {describe_schedule(trainer)}",
            file=sys.stderr,
        )
        for message in trainer.advice:
            print(f"Note: {message}", file=sys.stderr)

    def save(target: Path, overwrite: bool) -> Path:
        # The training volumes' geometry in the order the network saw them goes with the model: `predict` reads
        # other scans in that order, and warns about unlike voxels.
        return save_model(trainer, target, trainer.references, overwrite=overwrite)

    first_step = trainer.step  # a continued model (--init) counts its steps on
    try:
        run_training(trainer, TerminalProgress() if main else None)
    except NonFiniteVoxelsError as error:
        # A large image is read slice by slice while training, so its NaN voxels can surface only now.
        raise error.with_advice(NAN_TO_ZERO_ADVICE) from None
    except KeyboardInterrupt:
        # Ctrl-C, or SIGTERM at a batch job's time limit: main() says what was kept.
        if main:
            args.interrupted = keep_interrupted(save, trainer.step, first_step, args)
        raise
    queues = {"global_queue": trainer.global_queue, "local_queue": trainer.local_queue}
    distributed.dump_rank_state({"nets": trainer.nets, **queues}, trainer.distributed)
    if main:
        print(f"Model written to {save_trained_model(save, args)}")
    # Every rank ends once the checkpoint is written (or rank 0 failed, and torchrun stops them).
    distributed.barrier(trainer.distributed)
    return 0


def training_image(path: Path, *, nan_to_zero: bool) -> tuple[np.ndarray | VolumeSource, VolumeMeta]:
    """One --image: read slice by slice while training when it is large and stored uncompressed.

    An uncompressed ``.nii`` or a zarr store of more than
    :data:`~napari_action.data.intensity.SAMPLE_VOXELS` voxels is opened lazily, so it need not
    fit in memory (its normalisation comes from a sample of whole slices). Smaller ones, and
    every ``.nii.gz`` (gzip cannot be read from the middle), are loaded whole, as before.

    Parameters
    ----------
    path : pathlib.Path
        A NIfTI file or a zarr store.
    nan_to_zero : bool
        Replace non-finite voxels by 0 instead of refusing the image.

    Returns
    -------
    tuple of (numpy.ndarray or VolumeSource) and VolumeMeta
        The image and its geometry.
    """
    if not path.name.lower().endswith((".nii", ZARR_SUFFIX)):
        return load_image(path, nan_to_zero=nan_to_zero)
    source = open_volume_source(path, nan_to_zero=nan_to_zero)
    if int(np.prod(source.shape)) > SAMPLE_VOXELS:
        return source, source.meta
    if isinstance(source, NiftiSlices):
        # Small: loaded whole exactly as before, so its numbers stay those of the in-memory path.
        return load_image(path, nan_to_zero=nan_to_zero)
    return source.read(0, 0, source.shape[0]), source.meta


def _where(trainer: Trainer) -> str:
    """``"CPU, 2 threads"``, or ``"4 processes (torchrun), each on CUDA: NVIDIA H100"``."""
    if not trainer.distributed.is_distributed:
        return trainer.device_label
    return f"{trainer.distributed.world_size} processes (torchrun), each on {trainer.device_label}"


def _check_output(out: Path, overwrite: bool, inputs: Sequence[Path] = ()) -> None:
    """Refuse, before minutes of training, an --out that exists, is one of the ``inputs`` (even with
    --overwrite: the checkpoint would replace the user's image or labels) or a folder that cannot be written."""
    if out.is_dir():
        raise IsADirectoryError(f"--out {out} is a folder; give a file name such as {out / 'model.pt'}.")
    for given in inputs:
        if out.exists() and given.exists() and os.path.samefile(out, given):
            raise FileExistsError(
                f"--out {out} is the input file {given}; the model would replace it. "
                "Choose another --out, such as model.pt."
            )
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or choose another --out.")
    make_folder_for(out)
    if not accepts_files(out.parent):
        raise PermissionError(
            f"cannot write {out}: the folder {out.parent} is not writable; choose another --out "
            "(or fix the folder's permissions)."
        )


def _initial_model(path: Path | None, axis: int | None) -> Checkpoint | None:
    """The --init model, read before any image (its errors name the file and say what to do); refused when it
    slices along another axis than --axis (the model's axis won, and the paint's advice said to choose --axis)."""
    if path is None:
        return None
    from napari_action.io.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(path)
    if axis is not None and normalize_axis(axis, 3) != checkpoint.axis:
        raise ValueError(
            f"--axis {axis}, but the --init model {path} slices along axis {checkpoint.axis}, and a model slices "
            f"along one axis only: drop --axis to continue it (with labels painted along axis {checkpoint.axis}), "
            f"or drop --init to train a new model along axis {axis}."
        )
    print(f"Continuing from {path} (trained {checkpoint.step} steps).", file=sys.stderr)
    return checkpoint


def _class_names(table: Path | None, labels: Sequence[Path]) -> dict[int, str]:
    """Label value -> name from ``--class-names``, else from the tables beside the --labels files (the first wins)."""
    from napari_action.io.label_table import read_label_table, table_beside

    tables = [table] if table is not None else [t for t in map(table_beside, labels) if t is not None]
    names: dict[int, str] = {}
    for path in tables:
        if not path.is_file():
            raise FileNotFoundError(f"--class-names {path}: no such file; give the path of a label table.")
        for entry in read_label_table(path):
            if entry.value != 0:
                names.setdefault(entry.value, entry.name)  # the first table naming a value wins
    if names:
        listed = ", ".join(f"{value} {name}" for value, name in sorted(names.items()))
        print(f"Class names from {', '.join(map(str, tables))}: {listed}", file=sys.stderr)
    return names


def _load_training_labels(path: Path) -> tuple[np.ndarray, VolumeMeta]:
    """One --labels file read whole (a NIfTI file or a zarr store), refused here (where the message can name the
    file) when it cannot be a label map."""
    labels, meta = load_label_map(path)
    try:
        labels = as_integer_labels(labels, f"{path}: labels", non_negative=True)
        check_class_count(labels, f"{path}: labels")
    except ValueError as error:
        # Negative, fractional or countless values: a scan, and the two options swapped, as often as not.
        raise ValueError(f"{error} --labels takes the label map and --image the scan: are they swapped?") from None
    return labels, meta


def training_labels(
    paths: Sequence[Path],
    images: Sequence[np.ndarray | VolumeSource],
    axis: int | None,
    labeled_slices: Sequence[int] | None = None,
    *,
    affines: Sequence[np.ndarray] | None = None,
    init: Checkpoint | None = None,
) -> list[tuple[np.ndarray | PaintedSlices, VolumeMeta]]:
    """The --labels files: whole, or only their painted slices when their image is read slice by slice.

    A label file beside a lazily read image is as large as that image in voxels, so when it is an
    uncompressed ``.nii`` or a zarr store it is scanned a few slices at a time and only its painted
    slices (along ``axis``, inferred from all the files' paint when None; --init's axis when continuing)
    are kept. ``axis`` lies in the voxel order training reads every image in (given the images'
    ``affines``: the first painted one's, --init's model's), so each file is read along the stored axis it
    is there (:class:`~napari_action.training.volume_turns.VolumeTurns`).

    Parameters
    ----------
    paths : sequence of pathlib.Path
        The --labels files; the k-th belongs to ``images[k]``.
    images : sequence of numpy.ndarray or VolumeSource
        The --image volumes as :func:`training_image` opened them.
    axis : int or None
        --axis.
    labeled_slices : sequence of int, optional
        --labeled-slices (slices of the first volume that count as labeled even if unpainted).
    """
    sources = [
        open_label_source(path) if _streamable(path) and not isinstance(image, np.ndarray) else None
        for path, image in zip(paths, images, strict=False)
    ]
    # First pass: what each file holds (a lazily read one is only scanned for where its paint is).
    found = [
        (scan_paint(source), source.meta) if source is not None else _load_training_labels(path)
        for path, source in zip(paths, sources, strict=True)
    ]
    if not any(source is not None for source in sources):
        return found
    paint = [labels for labels, _ in found]
    turns = _turns(paint, images, affines, init)
    if init is not None:
        axis = int(init.axis)
    elif axis is None:
        # As the trainer will, from the same paint; with none, the trainer says what to do.
        axis = decide_axis(turns.labels(paint)).axis if any(labels.any() for labels in paint) else 0
    for number, source in enumerate(sources):
        if source is not None:
            extra = labeled_slices if number == 0 and labeled_slices else ()
            stored_axis = turns.stored_axis(number, axis)
            found[number] = (read_painted_slices(source, stored_axis, found[number][0], extra), source.meta)
    return found


def _turns(
    paint: Sequence, images: Sequence, affines: Sequence[np.ndarray] | None, init: Checkpoint | None
) -> VolumeTurns:
    """How the trainer will turn each image (:meth:`~napari_action.training.volume_turns.VolumeTurns.decide`)."""
    shapes = [image.shape for image in images]
    world = affines if affines is not None else [np.eye(4)] * len(images)
    return VolumeTurns.decide(world, paint, painted_indices(paint), shapes, model_order(init))


def _streamable(path: Path) -> bool:
    """Whether a file can be read a few slices at a time (gzip cannot be read from the middle)."""
    return path.name.lower().endswith((".nii", ZARR_SUFFIX))


def _check_pairs(
    image_paths: Sequence[Path],
    images: Sequence[tuple[np.ndarray, VolumeMeta]],
    label_paths: Sequence[Path],
    labels: Sequence[tuple[np.ndarray, VolumeMeta]],
) -> None:
    """Each --labels must lie on the voxel grid of the --image in the same position (files named, counted from 1).

    Parameters
    ----------
    image_paths, label_paths : sequence of pathlib.Path
        The --image and --labels files, in the order given.
    images, labels : sequence of (numpy.ndarray, VolumeMeta)
        What was loaded from them.

    Raises
    ------
    ValueError
        If a label map has another shape than its image, or another voxel size, origin or orientation.
    """
    for number, (image_path, (image, image_meta), label_path, (label, label_meta)) in enumerate(
        zip(image_paths, images, label_paths, labels, strict=False), start=1
    ):
        if label.shape != image.shape:
            raise ValueError(
                f"{label_path} has shape {label.shape}, but {image_path} (--image number {number}) has shape "
                f"{image.shape}; the k-th --labels must be painted on the k-th --image."
            )
        if not same_voxel_grid(image_meta.affine, label_meta.affine):
            raise ValueError(_grid_mismatch_message(image_path, image_meta, label_path, label_meta, number))


def _grid_mismatch_message(
    image_path: Path, image_meta: VolumeMeta, label_path: Path, label_meta: VolumeMeta, number: int
) -> str:
    image_grid, label_grid = describe_grid(image_meta.affine), describe_grid(label_meta.affine)
    # Oblique axes can differ while the rounded description reads the same.
    rotated = " (the axes are rotated differently)" if image_grid == label_grid else ""
    return (
        f"{label_path} has the shape of {image_path} (--image number {number}) but not its voxel grid "
        f"(labels: {label_grid}; image: {image_grid}){rotated}. Labels must be painted on the image's own "
        "voxels: resample them onto the image's grid (nearest-neighbour), or re-save them with the image's header."
    )

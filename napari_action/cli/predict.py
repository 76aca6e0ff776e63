"""``napari-action predict``: segment one image or a whole cohort with a trained model.

Inputs are files, glob patterns or list files (:func:`~napari_action.inference.cohort.expand_images`).
Under ``torchrun`` each rank predicts its share of the files. A file that cannot be
predicted (not NIfTI, 4D, NaN voxels, corrupt) is reported and the next one goes
on; the summary at the end lists what was written and what failed. ``quality.csv`` beside
the masks rates every mask in ``--out-dir`` with a record of its prediction, this run's and earlier or
concurrent runs' (:mod:`napari_action.inference.quality`), worst first, and the worst few are printed.

Exit codes: 0 every file written (or skipped), 1 at least one file failed, 2 nothing
was tried (bad options, no checkpoint, a pattern that matches nothing, existing outputs).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from napari_action.cli.file_progress import FileProgress, counts_text, print_summary
from napari_action.cli.given_files import folder_advice_for_predict
from napari_action.cli.kept_records import keep_record, kept_record
from napari_action.cli.options import (
    NAN_TO_ZERO_ADVICE,
    add_nan_to_zero_option,
    add_threads_option,
    non_negative_int,
)
from napari_action.cli.quality_report import (
    refuse_to_replace_a_foreign_table,
    report_folder_quality,
    report_quality,
)
from napari_action.inference.cohort import FileOutcome, RankShare, expand_images, gather_outcomes
from napari_action.io.atomic import require_writable_folder
from napari_action.io.errors import describe_error
from napari_action.io.label_table import class_entries, label_table_text, table_path, write_label_table
from napari_action.io.label_writers import OUTPUT_FORMATS
from napari_action.io.nifti import NIFTI_EXTENSIONS, FolderGivenError, NonFiniteVoxelsError

if TYPE_CHECKING:  # annotations only: loading a model imports torch
    from napari_action.inference.loaded_model import LoadedModel
    from napari_action.inference.quality import PredictionStats
    from napari_action.io.reoriented import Reorientation
    from napari_action.io.volume_source import VolumeSource

#: Exit code when at least one file failed (the others were still predicted).
SOME_FILES_FAILED = 1
#: Why a mask that did not exist when the run began could not be written.
_WRITTEN_MEANWHILE = (
    "was written by another process while this one predicted it (two jobs writing the same --out-dir?); it is "
    "left as it is. Give each job its own images (RANK and WORLD_SIZE split one list between jobs), or pass "
    "--overwrite to replace it."
)
_INPUT_SUFFIXES = (*NIFTI_EXTENSIONS, ".zarr")
# Shown in the summary for at most this many existing outputs; the rest are counted.
_NAMES_SHOWN = 5

_IMAGE_HELP = (
    "image to segment: a NIfTI file (.nii is read slice by slice, .nii.gz whole), a zarr array (.zarr, "
    "slice by slice; see `napari-action convert`), or a glob pattern in quotes ('scans/*.nii.gz', '**' spans folders; "
    "expanded and sorted by napari-action); repeat for several"
)
_LIST_HELP = (
    "text file with one image path per line (blank lines and # comments skipped; relative paths are "
    "relative to the list file); repeat for several"
)
_EPILOG = """\
Exit codes: 0 all files written (or skipped), 1 some files failed (the others were written; the summary
names them), 2 nothing was tried (bad options, model or inputs).
With RANK and WORLD_SIZE set (torchrun sets them), rank r predicts files r, r+W, r+2W, ... of the list and
prefixes its lines with its rank. Under torchrun rank 0 prints the summary of all ranks and carries the exit
code (the other ranks exit 0); with the variables set by hand each rank prints and returns its own.
"""


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command and its options to ``commands``."""
    predict = commands.add_parser(
        "predict",
        help="segment images with a trained model",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("--image", action="append", default=[], metavar="PATH|PATTERN", help=_IMAGE_HELP)
    predict.add_argument("--image-list", action="append", default=[], type=Path, metavar="FILE", help=_LIST_HELP)
    predict.add_argument("--out-dir", required=True, type=Path)
    predict.add_argument(
        "--output-format",
        choices=list(OUTPUT_FORMATS),
        default="nii.gz",
        help="nii.gz (default; the label volume is held in memory, 1-2 bytes per voxel, and compressed at the "
        "end), nii or zarr (written slice by slice, for volumes larger than memory)",
    )
    predict.add_argument("--device", default="auto")
    predict.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    existing = predict.add_mutually_exclusive_group()
    existing.add_argument("--overwrite", action="store_true", help="replace existing output files")
    existing.add_argument(
        "--skip-existing",
        action="store_true",
        help="leave images whose output exists alone (to continue an interrupted cohort); their masks are rated "
        "from the records kept when they were written",
    )
    predict.add_argument(
        "--largest-components",
        type=non_negative_int,
        default=0,
        metavar="N",
        help="keep only the N largest 3D pieces of each label (2 for left+right structures; 0, the default, "
        "keeps them all)",
    )
    add_threads_option(predict)
    add_nan_to_zero_option(predict)
    predict.set_defaults(
        run=run, interrupted="the masks written so far are kept: run the same command with --skip-existing to go on"
    )


def output_path(out_dir: Path, image: Path, suffix: str = "_action", extension: str = ".nii.gz") -> Path:
    """``DIR/<image name>_action.nii.gz`` (or another ``extension``)."""
    name = image.name
    for ext in _INPUT_SUFFIXES:
        if name.lower().endswith(ext):
            name = name[: -len(ext)]
            break
    return out_dir / f"{name}{suffix}{extension}"


def run(args: argparse.Namespace) -> int:
    """Predict every image and write the labels into ``--out-dir``; return the exit code."""
    # Imported when the command runs, so that `napari-action --help` does not wait
    # for torch (a second or more) and scipy.
    from napari_action.inference.loaded_model import load_model
    from napari_action.runtime import configure_threads

    share = RankShare.from_environment()
    images = _images_of(args)
    extension = OUTPUT_FORMATS[args.output_format]
    targets = {image: output_path(args.out_dir, image, extension=extension) for image in images}
    targets = _without_own_outputs(targets, share)
    images = list(targets)
    _refuse_shared_outputs(targets)
    mine = share.take(images)
    # Ranks of a job array (RANK and WORLD_SIZE set by hand) start at different times: the masks an
    # earlier rank wrote are not this rank's outputs. Under torchrun every rank checks every output,
    # so that all of them stop together.
    _refuse_existing_outputs({image: targets[image] for image in (images if share.agent_store else mine)}, args)
    refuse_to_replace_a_foreign_table(args.out_dir, args.overwrite)
    configure_threads(args.threads)
    model = load_model(args.model, device=_rank_device(args.device, share))
    # Before the first image is predicted (a read-only folder failed every file at its end), and after the model
    # loaded: a missing model or GPU left an empty --out-dir behind.
    require_writable_folder(args.out_dir, instead="another --out-dir")
    started = time.perf_counter()
    outcomes = _predict_share(mine, targets, model, args, share)
    return _report(outcomes, share, time.perf_counter() - started, args.out_dir, model)


def _images_of(args: argparse.Namespace) -> list[Path]:
    if not args.image and not args.image_list:
        raise ValueError("no images given: name them with --image (files or patterns) or --image-list.")
    return expand_images(args.image, args.image_list)


def _without_own_outputs(targets: dict[Path, Path], share: RankShare) -> dict[Path, Path]:
    """Leave out images that are another image's output (a pattern over a folder that holds --out-dir)."""
    outputs = {os.path.abspath(target) for target in targets.values()}
    own = [image for image in targets if os.path.abspath(image) in outputs]
    if own:
        names = ", ".join(str(image) for image in own[:_NAMES_SHOWN])
        more = f" and {len(own) - _NAMES_SHOWN} more" if len(own) > _NAMES_SHOWN else ""
        print(f"{share.prefix}Note: left out {names}{more}: the output(s) of other images here.", file=sys.stderr)
    return {image: target for image, target in targets.items() if image not in own}


def _refuse_shared_outputs(targets: dict[Path, Path]) -> None:
    """Stop when two images would write the same output (same name in different folders; on macOS and
    Windows, names that differ only in case: their disks take ``Scan`` and ``scan`` for one file)."""
    case_blind = sys.platform in ("darwin", "win32")
    by_target: dict[str, list[Path]] = {}
    for image, target in targets.items():
        by_target.setdefault(str(target).casefold() if case_blind else str(target), []).append(image)
    clashes = [
        f"{', '.join(map(str, images))} -> {targets[images[0]]}" for images in by_target.values() if len(images) > 1
    ]
    if clashes:
        raise ValueError(
            f"several images would write the same output: {'; '.join(clashes)}. Rename them, or predict "
            "each folder into its own --out-dir."
        )


def _refuse_existing_outputs(targets: dict[Path, Path], args: argparse.Namespace) -> None:
    """Stop before any work when outputs exist and neither ``--overwrite`` nor ``--skip-existing`` was given."""
    if args.overwrite or args.skip_existing:
        return
    existing = [target for target in targets.values() if target.exists()]
    if existing:
        names = ", ".join(str(target) for target in existing[:_NAMES_SHOWN])
        more = f" and {len(existing) - _NAMES_SHOWN} more" if len(existing) > _NAMES_SHOWN else ""
        raise FileExistsError(
            f"{names}{more} already exist(s); pass --overwrite to replace, --skip-existing to keep them "
            "and predict the rest, or choose another --out-dir."
        )


def _rank_device(device: str, share: RankShare) -> str:
    """Under torchrun each rank of a machine takes its own GPU (``LOCAL_RANK``), as training does."""
    import torch

    local_rank = os.environ.get("LOCAL_RANK")
    if not share.distributed or local_rank is None or device not in ("auto", "cuda"):
        return device
    if not torch.cuda.is_available():
        return device
    return f"cuda:{int(local_rank) % torch.cuda.device_count()}"


def _predict_share(
    images: Sequence[Path],
    targets: dict[Path, Path],
    model: LoadedModel,
    args: argparse.Namespace,
    share: RankShare,
) -> list[FileOutcome]:
    """Predict ``images`` one after the other; a failure is recorded and the next file goes on."""
    progress = FileProgress(len(images), prefix=share.prefix)
    outcomes = []
    for number, image in enumerate(images, start=1):
        progress.start(number, image)
        started = time.perf_counter()
        status, message, quality = _handle_file(image, targets[image], model, args, progress)
        seconds = time.perf_counter() - started
        outcome = FileOutcome(str(image), str(targets[image]), status, seconds, message, share.rank, quality)
        progress.finish(outcome)
        outcomes.append(outcome)
    return outcomes


def _handle_file(
    image: Path, target: Path, model: LoadedModel, args: argparse.Namespace, progress: FileProgress
) -> tuple[str, str, dict | None]:
    """Skip, predict or fail one file: its status, for a failure the message, for a written file its quality record."""
    if args.skip_existing and target.exists():
        # Rated again with the rest, if its record still fits (the mask as written, by this model).
        return "skipped", "", kept_record(target, model.fingerprint)
    try:
        quality = _predict_file(image, target, model, args, progress)
    except FileExistsError:  # none when the run began: the writer's own words ask for ``overwrite=True``
        return "failed", f"{image}: {target} {_WRITTEN_MEANWHILE}", None
    except Exception as error:  # one bad file never stops the rest; the summary names it
        return "failed", _describe(error, image), None
    record = quality.to_dict()
    try:
        keep_record(target, record, image=str(image), model=model.fingerprint)
    except OSError as error:  # the mask is written; only a later --skip-existing run loses its score
        progress.note(f"Warning: the quality record of {target} was not kept: {describe_error(error)}")
    _write_class_table(target, model, args.overwrite, progress)
    return "written", "", record


def _write_class_table(target: Path, model: LoadedModel, overwrite: bool, progress: FileProgress) -> None:
    """The model's class names beside the mask (``<mask>.ctbl``, as Export writes), when it names any.

    3D Slicer and FreeSurfer read the table; napari-action's reader gives the mask its names back.
    """
    entries = class_entries(model.class_values, model.class_names)
    if not entries:
        return
    table = table_path(target)
    try:
        write_label_table(table, entries, source=target.name, overwrite=overwrite)
    except FileExistsError:
        if table.read_bytes() != label_table_text(entries, target.name).encode("utf-8"):  # not this run's own
            progress.note(f"Kept the existing {table} (--overwrite replaces it with this model's class names).")
    except OSError as error:  # the mask is written; only its names are missing
        progress.note(f"Warning: the class names of {target} were not written: {describe_error(error)}")


def _predict_file(
    path: Path, target: Path, model: LoadedModel, args: argparse.Namespace, progress: FileProgress
) -> PredictionStats:
    """Segment one image slice by slice, write its labels to ``target`` and return its quality record.

    Uncompressed NIfTI and zarr inputs are read a run of slices at a time; the labels go
    to the output slice by slice (``.nii.gz`` outputs and ``--largest-components`` gather
    the label volume in memory first, 1-2 bytes per voxel).
    """
    from napari_action.inference.out_of_core import predict_to_writer
    from napari_action.inference.postprocess import keep_largest_components
    from napari_action.inference.quality import QualityAccumulator
    from napari_action.io.geometry import VoxelGeometry, geometry_warnings, voxel_volume_ml
    from napari_action.io.label_writers import MemoryLabelWriter, open_label_writer, write_label_volume
    from napari_action.io.provenance import mask_descrip
    from napari_action.io.reoriented import ReorientedSource
    from napari_action.io.volume_source import open_volume_source

    predictor, axis = model.predictor, model.axis
    try:
        stored = open_volume_source(path, nan_to_zero=args.nan_to_zero)
        turn = _training_order(model, stored, path, progress)
        source = stored if turn is None else ReorientedSource(stored, turn)
        # The same check as the widget's: voxels unlike the training volumes' degrade predictions.
        geometry = [(path.name, VoxelGeometry.from_matrix(source.meta.affine))]
        for message in geometry_warnings(model.references, geometry, axis, pixel_mm=model.pixel_mm):
            progress.note(f"Warning: {message}")
        # A reoriented volume's labels go back to the stored order whole, as kept components need them whole.
        gather = bool(args.largest_components) or turn is not None
        # The header names the tool and the model (any NIfTI viewer shows it), as quality.csv does.
        written = {"overwrite": args.overwrite, "descrip": mask_descrip(model.fingerprint)}
        if gather:
            writer = MemoryLabelWriter(target, source.meta, predictor.label_dtype, axis, **written)
        else:
            writer = open_label_writer(target, source.meta, predictor.label_dtype, axis, **written)
        quality = QualityAccumulator(predictor.class_values, axis, voxel_volume_ml(source.meta.affine))
        try:
            predict_to_writer(predictor, source, writer, tta=args.tta, on_progress=progress.slices, quality=quality)
            if not gather:
                writer.commit()
                return quality.finish()
            labels, stats = writer.labels, quality.finish()
            if args.largest_components:
                labels = keep_largest_components(labels, args.largest_components)
                stats = stats.recounted(labels)  # the volumes of the mask written
            if turn is not None:
                labels, stats = turn.to_stored(labels).copy(), stats.in_stored_order(turn, source.shape)
            stored_axis = axis if turn is None else turn.stored_axes[axis]
            write_label_volume(target, labels, stored.meta, stored_axis, **written)
            return stats
        except BaseException:
            writer.discard()
            raise
    except NonFiniteVoxelsError as error:
        raise error.with_advice(NAN_TO_ZERO_ADVICE) from None
    except FolderGivenError as error:
        raise folder_advice_for_predict(error) from None


def _training_order(
    model: LoadedModel, source: VolumeSource, path: Path, progress: FileProgress
) -> Reorientation | None:
    """How to read ``source`` in the training volumes' voxel order, when it is stored in another (said once)."""
    from napari_action.io.geometry import VoxelGeometry
    from napari_action.io.reoriented import Reorientation

    if not model.references:
        return None
    stored = VoxelGeometry.from_matrix(source.meta.affine)
    turn = Reorientation.between(model.references[0], stored)
    if turn is not None:
        progress.note(
            f"Note: {path.name} is stored {stored.voxel_order()}, the training volumes "
            f"{model.references[0].voxel_order()}: predicted in their voxel order, written in its own."
        )
    return turn


def _describe(error: BaseException, image: Path) -> str:
    """The error in plain words, naming the file (our VolumeErrors do already; others get its name)."""
    text = describe_error(error)
    if str(image) in text:
        return text
    if isinstance(error, ValueError | OSError):
        return f"{image}: {text}"
    return f"{image}: {type(error).__name__}: {text}"  # an unexpected error: its kind helps a bug report


def _report(outcomes: list[FileOutcome], share: RankShare, seconds: float, out_dir: Path, model: LoadedModel) -> int:
    """Print the summary this rank is responsible for, write its quality table; return the exit code."""
    everything = gather_outcomes(outcomes, share)
    if everything is None and share.agent_store:
        # torchrun: rank 0 reports every rank's files and carries the exit code; a rank that
        # exited non-zero here would make torchrun stop the ranks still predicting.
        print(f"{share.prefix}done ({counts_text(outcomes)}); rank 0 prints the summary.")
        return 0
    mine = everything if everything is not None else outcomes
    scope = f"{share.world_size} ranks" if everything is not None and share.distributed else None
    print_summary(mine, seconds, prefix=share.prefix, scope=scope)
    if everything is not None:
        report_folder_quality(
            mine, out_dir, model.class_values, model.class_names, model=model.fingerprint, prefix=share.prefix
        )
    else:  # ranks that could not gather write one table each, rather than over each other
        table = out_dir / f"quality-rank{share.rank}.csv"
        report_quality(mine, table, model.class_values, model.class_names, prefix=share.prefix)
    return SOME_FILES_FAILED if any(o.status == "failed" for o in mine) else 0

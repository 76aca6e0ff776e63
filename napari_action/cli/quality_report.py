"""The quality table of ``napari-action predict``: ``quality.csv`` beside the masks, the worst few printed.

The records come with the files' outcomes (:attr:`~napari_action.inference.cohort.FileOutcome.quality`),
so under ``torchrun`` rank 0 rates the whole cohort at once, every volume against the same median.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TextIO

from napari_action.cli.kept_records import recorded_masks
from napari_action.inference.cohort import FileOutcome
from napari_action.inference.quality import (
    QUALITY_CSV,
    PredictionStats,
    VolumeQuality,
    class_label,
    is_quality_table,
    quality_table,
    rate_cohort,
    write_quality_csv,
)
from napari_action.io.errors import describe_error
from napari_action.io.save_lock import saving_alone

#: How many of the lowest-scoring files are printed.
WORST_SHOWN = 3


def report_folder_quality(
    outcomes: Sequence[FileOutcome],
    out_dir: Path,
    class_values: Sequence[int],
    class_names: Mapping[int, str],
    *,
    model: str | None = None,
    prefix: str = "",
) -> list[VolumeQuality]:
    """``quality.csv`` of the whole ``out_dir``: this run's files and the masks other runs predicted there.

    The tasks of a job array predicting their own scans into one folder each rewrote the table with their
    own files, so that the last to finish left one row, and every other task's output said "every file in
    quality.csv". Each run now rates its files together with every other mask in the folder that has a
    record of its prediction by the same model (``model``, its fingerprint; status ``kept``), and the runs
    take turns (:func:`~napari_action.io.save_lock.saving_alone`): the last table written holds every mask.
    Masks another model predicted there are not rated with these (one network's doubt is not another's,
    and their volumes would move the medians): a line says how many, and how to rate them.
    """
    path = out_dir / QUALITY_CSV
    with contextlib.ExitStack() as turn:
        with contextlib.suppress(OSError):  # a folder that takes no lock file (a full disk): written unlocked
            turn.enter_context(saving_alone(path))
        others, foreign = masks_of_other_runs(out_dir, outcomes, class_values, model)
        rated = report_quality([*outcomes, *others], path, class_values, class_names, prefix=prefix)
    if foreign:
        print(
            f"{prefix}Not in {path.name}: {foreign} other mask{'s' if foreign > 1 else ''} in {out_dir} predicted by "
            "another model (or an older release); predict them again with --overwrite to rate them with these.",
            file=sys.stdout,
        )
    return rated


def refuse_to_replace_a_foreign_table(out_dir: Path, overwrite: bool) -> None:
    """Stop before any work when ``out_dir`` holds a ``quality.csv`` that napari-action did not write.

    Each run rewrites the table of the folder (:func:`report_folder_quality`); a table of the user's own by
    that name (a QC sheet in a results folder) was replaced without a word.
    """
    path = out_dir / QUALITY_CSV
    if overwrite or not path.is_file() or is_quality_table(path):
        return
    raise FileExistsError(
        f"{path} is not a quality table of napari-action, and predict writes its table of the masks there; move "
        "it away, pass --overwrite to replace it, or choose another --out-dir."
    )


def masks_of_other_runs(
    out_dir: Path, outcomes: Sequence[FileOutcome], class_values: Sequence[int], model: str | None
) -> tuple[list[FileOutcome], int]:
    """The masks in ``out_dir`` that none of ``outcomes`` names, with the record of ``model`` (its fingerprint),
    and how many masks of other models (of this model's classes) there are besides.

    They come as skipped files with their record, which :func:`report_quality` rates as ``kept``; a record
    of a model of other classes cannot share the table's class columns and is left out without a word.
    """
    named = {os.path.abspath(outcome.target) for outcome in outcomes}
    classes = [int(value) for value in class_values]
    same_classes = [
        (image, mask, record, by)
        for image, mask, record, by in recorded_masks(out_dir)
        if os.path.abspath(mask) not in named and list(record.get("class_values", ())) == classes
    ]
    mine = [
        FileOutcome(image, str(mask), "skipped", quality=record)
        for image, mask, record, by in same_classes
        if by == model
    ]
    return mine, len(same_classes) - len(mine)


def report_quality(
    outcomes: Sequence[FileOutcome],
    path: Path,
    class_values: Sequence[int],
    class_names: Mapping[int, str],
    *,
    prefix: str = "",
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> list[VolumeQuality]:
    """Rate the written files, write the table to ``path`` and print the worst few; the rated files, worst first.

    Parameters
    ----------
    outcomes : sequence of FileOutcome
        Every file of the run: written ones are rated, and skipped ones with the record kept when they
        were written (:mod:`napari_action.cli.kept_records`); failed and other skipped ones are listed.
    path : pathlib.Path
        The CSV file to write (atomically).
    class_values : sequence of int
        The model's label values, background first.
    class_names : mapping of int to str
        The model's class names.
    prefix : str
        Put before every printed line (the rank of a shared run).
    out, err : text streams, optional
        Where to print the worst files and a table that could not be written; stdout and stderr by default.
    """
    out, err = out or sys.stdout, err or sys.stderr
    rated = [o for o in outcomes if o.status in ("written", "skipped") and o.quality is not None]
    qualities = rate_cohort([(o.source, PredictionStats.from_dict(o.quality)) for o in rated], class_names)
    classes = [class_label(value, class_names) for value in class_values[1:]]
    failed = [(o.source, o.message) for o in outcomes if o.status == "failed"]
    kept = {o.source for o in rated if o.status == "skipped"}
    skipped = [o.source for o in outcomes if o.status == "skipped" and o.quality is None]
    try:
        write_quality_csv(path, quality_table(qualities, classes, failed=failed, skipped=skipped, kept=kept))
        where = f"every file in {path}"
    except OSError as error:
        # The masks are written: a table that cannot be (a full disk) must not hide their summary.
        print(f"{prefix}Warning: the quality table was not written: {describe_error(error)}", file=err)
        where = "no table written"
    print_worst(qualities, where, prefix=prefix, out=out)
    return qualities


def print_worst(qualities: Sequence[VolumeQuality], where: str, *, prefix: str = "", out: TextIO) -> None:
    """The :data:`WORST_SHOWN` lowest scores with their flags and worst slice, and where the whole table is."""
    if not qualities:
        return
    print(f"{prefix}Check first (lowest quality of {len(qualities)}; {where}):", file=out)
    for quality in qualities[:WORST_SHOWN]:
        where = f"worst slice {quality.worst_slice} along axis {quality.axis}"
        print(f"{prefix}  {quality.score:.3f}  {quality.name}: {quality.brief_flags()}; {where}", file=out)

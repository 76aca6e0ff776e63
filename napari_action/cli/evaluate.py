"""``napari-action evaluate``: Dice, HD95 and ASD (mm) of a prediction against the truth."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

import numpy as np

from napari_action.cli.given_files import folder_advice_for_label_map
from napari_action.cli.options import int_list
from napari_action.io.atomic import write_text_atomically
from napari_action.io.geometry import grid_difference, same_voxel_grid
from napari_action.io.label_map import load_label_map
from napari_action.io.nifti import FolderGivenError
from napari_action.io.volume_meta import VolumeMeta


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command and its options to ``commands``."""
    parser = commands.add_parser("evaluate", help="Dice, HD95 and ASD (mm) of a prediction")
    parser.add_argument("--pred", required=True, type=Path, help="the predicted label map: NIfTI file or zarr store")
    parser.add_argument("--truth", required=True, type=Path, help="the expert's label map: NIfTI file or zarr store")
    parser.add_argument(
        "--exclude-slices", type=int_list, default=None, help="slices left out of the scores (e.g. the annotated ones)"
    )
    parser.add_argument("--axis", type=int, default=None, help="axis of --exclude-slices")
    parser.add_argument("--json", type=Path, default=None, help="also write the scores as JSON")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Print the score table (and write it as JSON with ``--json``); return the exit code."""
    # Imported when the command runs, so that `napari-action --help` does not wait for scipy.
    from napari_action.evaluation.metrics import evaluate

    _check_json_is_no_input(args.json, {"--pred": args.pred, "--truth": args.truth})
    pred, pred_meta = _label_map(args.pred, "--pred")
    truth, truth_meta = _label_map(args.truth, "--truth")
    _check_same_grid(args.pred, pred_meta, args.truth, truth_meta)
    if args.exclude_slices and args.axis is None:
        raise ValueError("--exclude-slices needs --axis to say which axis the slice numbers refer to.")
    result = evaluate(pred, truth, spacing=truth_meta.zooms, exclude_slices=args.exclude_slices, axis=args.axis)
    print(result.format_table())
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        # Whole or not at all: the scores of an earlier run stay if these cannot be written.
        write_text_atomically(args.json, json.dumps(result.to_dict(), indent=2))
    return 0


def _check_json_is_no_input(report: Path | None, inputs: dict[str, Path]) -> None:
    """Refuse a --json that is one of the label maps, before scoring: the scores would replace the user's mask."""
    if report is None or not report.is_file():
        return
    for option, path in inputs.items():
        if path.is_file() and os.path.samefile(report, path):
            raise ValueError(
                f"--json {report} is the {option} file; the scores would replace it. "
                "Choose another --json, such as scores.json."
            )


def _label_map(path: Path, option: str) -> tuple[np.ndarray, VolumeMeta]:
    """The label map given as ``option``; a file with negative values (a CT scan, most often) is refused."""
    try:
        labels, meta = load_label_map(path)  # a NIfTI file or a zarr store (predict --output-format zarr)
    except FolderGivenError as error:
        raise folder_advice_for_label_map(error, option) from None
    if labels.size and labels.min() < 0:
        raise ValueError(
            f"{path} holds negative values (min {labels.min()}), so it is not a label map but most likely a scan; "
            f"{option} takes a label map (the expert mask as --truth, napari-action's *_action.nii.gz as --pred)."
        )
    return labels, meta


def _check_same_grid(pred_path: Path, pred_meta: VolumeMeta, truth_path: Path, truth_meta: VolumeMeta) -> None:
    """Refuse a prediction on another voxel grid than the truth: voxel-by-voxel scores would mean nothing."""
    if pred_meta.shape != truth_meta.shape:
        raise ValueError(
            f"{pred_path} has shape {pred_meta.shape} but {truth_path} has shape {truth_meta.shape}; compare a "
            "prediction with the truth of the same image (resample one onto the other's grid first)."
        )
    if not same_voxel_grid(pred_meta.affine, truth_meta.affine):
        raise ValueError(
            f"{pred_path} lies on another voxel grid than {truth_path} "
            f"({grid_difference(pred_meta.affine, truth_meta.affine)}); the scores compare voxel by voxel. "
            "Resample the prediction onto the truth's grid (nearest-neighbour), or predict on the image the "
            "truth was drawn on."
        )

"""``napari-action train``: a model from NIfTI images and their sparse labels."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from napari_action.cli.options import add_schedule_options, add_threads_option, config_from_args, int_list
from napari_action.cli.progress_bar import TerminalProgress, describe_schedule, run_training
from napari_action.config import BUDGETS, METHODS
from napari_action.io.nifti import load_labels, load_volume


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command and its options to ``commands``."""
    train = commands.add_parser("train", help="train a model from sparse labels")
    train.add_argument(
        "--image",
        action="append",
        required=True,
        type=Path,
        help="NIfTI image; repeat for several. Images beyond the labels are unlabeled data.",
    )
    train.add_argument(
        "--labels", action="append", default=[], type=Path, help="sparse labels of the k-th --image (0 = not painted)"
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
    add_schedule_options(train)
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    train.add_argument("--seed", type=int, default=1337)
    add_threads_option(train)
    train.add_argument("--out", required=True, type=Path, help="checkpoint file to write (.pt)")
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Train on the given files and write the checkpoint; return the exit code."""
    # Imported when the command runs, so that `napari-action --help` does not wait
    # for torch (a second or more).
    from napari_action.inference.loaded_model import VoxelGeometry, save_model
    from napari_action.training.trainer import Trainer

    if len(args.labels) > len(args.image):
        raise ValueError("More --labels than --image: the k-th --labels belongs to the k-th --image.")
    loaded = [load_volume(path) for path in args.image]
    images = [volume for volume, _ in loaded]
    labels = [load_labels(path)[0] for path in args.labels]
    _check_pairs(args.image, images, args.labels, labels)
    extra = {0: args.labeled_slices} if args.labeled_slices else None
    spacings = [meta.zooms[:3] for _, meta in loaded]
    trainer = Trainer(images, labels, config_from_args(args), labeled_slices=extra, spacings=spacings)
    print(
        f"Training {trainer.config.method} on {trainer.device_label}: {len(images)} volume(s), "
        f"axis {trainer.axis}, classes {trainer.class_values.tolist()}, {describe_schedule(trainer)}",
        file=sys.stderr,
    )
    for message in trainer.advice:
        print(f"Note: {message}", file=sys.stderr)
    run_training(trainer, TerminalProgress())
    # The training volumes' geometry goes with the model, so that `predict` can warn about unlike voxels.
    references = [VoxelGeometry.from_matrix(meta.affine) for _, meta in loaded]
    path = save_model(trainer, args.out, references)
    print(f"Model written to {path}")
    return 0


def _check_pairs(
    image_paths: Sequence[Path], images: Sequence[np.ndarray], label_paths: Sequence[Path], labels: Sequence[np.ndarray]
) -> None:
    """Each --labels must have the shape of the --image in the same position (named by file, counted from 1)."""
    for number, (image_path, image, label_path, label) in enumerate(
        zip(image_paths, images, label_paths, labels, strict=False), start=1
    ):
        if label.shape != image.shape:
            raise ValueError(
                f"{label_path} has shape {label.shape}, but {image_path} (--image number {number}) has shape "
                f"{image.shape}; the k-th --labels must be painted on the k-th --image."
            )

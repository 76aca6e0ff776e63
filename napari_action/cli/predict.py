"""``napari-action predict``: segment NIfTI images with a trained model."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from napari_action.cli.options import add_nan_to_zero_option, add_threads_option, load_image
from napari_action.io.nifti import NIFTI_EXTENSIONS, save_labels


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``predict`` sub-command and its options to ``commands``."""
    predict = commands.add_parser("predict", help="segment images with a trained model")
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("--image", action="append", required=True, type=Path)
    predict.add_argument("--out-dir", required=True, type=Path)
    predict.add_argument("--device", default="auto")
    predict.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    predict.add_argument("--overwrite", action="store_true", help="replace existing output files")
    predict.add_argument(
        "--largest-components",
        type=int,
        default=0,
        metavar="N",
        help="keep only the N largest 3D pieces of each label (2 for left+right structures)",
    )
    add_threads_option(predict)
    add_nan_to_zero_option(predict)
    predict.set_defaults(run=run)


def output_path(out_dir: Path, image: Path, suffix: str = "_action") -> Path:
    """``DIR/<image name>_action.nii.gz``."""
    name = image.name
    for ext in NIFTI_EXTENSIONS:
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return out_dir / f"{name}{suffix}.nii.gz"


def run(args: argparse.Namespace) -> int:
    """Predict every ``--image`` and write the labels into ``--out-dir``; return the exit code."""
    # Imported when the command runs, so that `napari-action --help` does not wait
    # for torch (a second or more) and scipy.
    from napari_action.inference.loaded_model import VoxelGeometry, geometry_warnings, load_model
    from napari_action.inference.postprocess import keep_largest_components
    from napari_action.runtime import configure_threads

    configure_threads(args.threads)
    _refuse_existing_outputs(args)
    model = load_model(args.model, device=args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.image:
        volume, meta = load_image(path, nan_to_zero=args.nan_to_zero)
        # The same check as the widget's: voxels unlike the training volumes' degrade predictions.
        target = [(path.name, VoxelGeometry.from_matrix(meta.affine))]
        for message in geometry_warnings(model.references, target, model.axis):
            print(f"Warning: {message}", file=sys.stderr)
        labels, _ = model.predictor.predict(volume, tta=args.tta, spacing=meta.zooms[:3])
        if args.largest_components:
            labels = keep_largest_components(labels, args.largest_components)
        target = save_labels(output_path(args.out_dir, path), labels, meta, overwrite=args.overwrite)
        print(f"{path} -> {target}")
    return 0


def _refuse_existing_outputs(args: argparse.Namespace) -> None:
    """Stop before any work when an output exists and ``--overwrite`` was not given."""
    if args.overwrite:
        return
    existing = [target for target in (output_path(args.out_dir, path) for path in args.image) if target.exists()]
    if existing:
        names = ", ".join(str(target) for target in existing)
        raise FileExistsError(f"{names} already exist(s); pass --overwrite to replace, or choose another --out-dir.")

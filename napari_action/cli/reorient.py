"""``napari-action reorient``: NIfTI scans written in one voxel order, for tools that need one.

napari-action itself reads every scan in the painted scan's voxel order (the MNI152 template stored LPS
beside Colin27: mean Dice 0.13 read as stored, 0.65 reoriented), but other tools, and models saved by
older versions, take slices as stored. ``--like`` takes the painted scan's order; without it, RAS.
Exact: axes swapped or flipped, nothing resampled (:mod:`napari_action.io.reorient`).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from napari_action.io.atomic import require_writable_folder


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``reorient`` sub-command and its options to ``commands``."""
    reorient = commands.add_parser(
        "reorient", help="write NIfTI scans in one voxel order (axes swapped or flipped, nothing resampled)"
    )
    reorient.add_argument("--image", action="append", required=True, type=Path, help="NIfTI scan; repeat for several")
    reorient.add_argument(
        "--like",
        type=Path,
        default=None,
        help="a scan whose voxel order the others take (the painted one); default RAS",
    )
    reorient.add_argument("--out-dir", required=True, type=Path, help="folder for the reoriented files (same names)")
    reorient.add_argument("--overwrite", action="store_true", help="replace existing files in --out-dir")
    reorient.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Reorient every ``--image`` into ``--out-dir``; return the exit code."""
    from napari_action.io.geometry import VoxelGeometry
    from napari_action.io.nifti import open_nifti_image
    from napari_action.io.reorient import RAS, reorient_file

    like = VoxelGeometry.from_matrix(open_nifti_image(args.like).affine) if args.like else RAS
    targets = {image: args.out_dir / image.name for image in args.image}
    _refuse_clashes(targets)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    require_writable_folder(args.out_dir, instead="another --out-dir")
    for image, target in targets.items():
        before, after = reorient_file(image, target, like, overwrite=args.overwrite)
        change = "already in that order, copied" if before == after else f"{before} -> {after}"
        print(f"{image} ({change}) -> {target}")
    return 0


def _refuse_clashes(targets: dict[Path, Path]) -> None:
    """No input is written over, and no two inputs go to one file."""
    for image, target in targets.items():
        if target.resolve() == image.resolve():
            raise ValueError(f"--out-dir would write {target} over its input; choose another --out-dir.")
    names = [target.name.casefold() for target in targets.values()]
    twice = sorted({name for name in names if names.count(name) > 1})
    if twice:
        raise ValueError(
            f"Two --image files share the name {twice[0]}; reorient them into different --out-dir folders."
        )

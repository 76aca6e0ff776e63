"""``napari-action convert``: a NIfTI image as a zarr array chunked along the slicing axis.

A ``.nii.gz`` file cannot be read slice by slice (gzip cannot seek), so ``predict`` loads it
whole. Converted once, the zarr array is read a run of slices at a time, with the
geometry kept in its attributes (:mod:`napari_action.io.volume_source`). (``gunzip -k
scan.nii.gz`` is the other way: ``predict`` reads an uncompressed ``.nii`` lazily too, at
its full size on disk.)
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np

from napari_action.cli.options import NAN_TO_ZERO_ADVICE, add_nan_to_zero_option, positive_int
from napari_action.io.atomic import explained_errors, make_folder_for
from napari_action.io.nifti import NonFiniteVoxelsError

#: Slices per chunk along the slicing axis unless ``--chunk-slices`` says otherwise.
DEFAULT_CHUNK_SLICES = 16
# Slices read and written at a time: a multiple of the chunk, so that every chunk is encoded once.
_CHUNKS_PER_WRITE = 2


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``convert`` sub-command and its options to ``commands``."""
    convert = commands.add_parser(
        "convert", help="write a NIfTI image as a zarr array that predict reads slice by slice"
    )
    convert.add_argument("--image", required=True, type=Path, help="NIfTI image (.nii or .nii.gz)")
    convert.add_argument("--out", required=True, type=Path, help="zarr store to write (a folder ending in .zarr)")
    convert.add_argument(
        "--axis",
        type=int,
        choices=(0, 1, 2),
        default=2,
        help="slicing axis the chunks follow: the model's axis (train prints it; default 2)",
    )
    convert.add_argument(
        "--chunk-slices",
        type=positive_int,
        default=DEFAULT_CHUNK_SLICES,
        metavar="N",
        help=f"slices per chunk (whole planes; default {DEFAULT_CHUNK_SLICES})",
    )
    convert.add_argument("--overwrite", action="store_true", help="replace an existing --out store")
    add_nan_to_zero_option(convert)
    convert.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Convert ``--image`` into the zarr store ``--out``; return the exit code."""
    if not args.out.name.lower().endswith(".zarr"):
        raise ValueError(f"--out {args.out}: the store's name must end in .zarr.")
    if args.out.exists() and not args.overwrite:
        raise FileExistsError(f"{args.out} already exists; pass --overwrite to replace it, or choose another --out.")
    make_folder_for(args.out)
    try:
        # A failure names --out, not the hidden store it is built in (".<name>.<random>.part").
        with explained_errors(args.out, existed=args.out.exists()):
            written = convert_to_zarr(
                args.image, args.out, axis=args.axis, chunk_slices=args.chunk_slices, nan_to_zero=args.nan_to_zero
            )
    except NonFiniteVoxelsError as error:
        raise error.with_advice(NAN_TO_ZERO_ADVICE) from None
    print(f"{args.image} -> {written}")
    return 0


def convert_to_zarr(
    image: Path, out: Path, *, axis: int = 2, chunk_slices: int = DEFAULT_CHUNK_SLICES, nan_to_zero: bool = False
) -> Path:
    """Write ``image`` (NIfTI) as a zarr array at ``out``, chunked along ``axis``, geometry in its attributes.

    The voxels keep their stored type (scaled files: float32, as they are read). Uncompressed
    files are read a few chunks at a time; a ``.nii.gz`` is read whole once (its stored type).
    The store is built next to ``out`` and renamed into place at the end, replacing an old one.
    NaN and infinite voxels are refused, or replaced by 0 with ``nan_to_zero``, as ``predict`` does.

    Returns
    -------
    pathlib.Path
        ``out``.
    """
    import zarr  # ~0.3 s to import: only when converting

    from napari_action.io.atomic import replace
    from napari_action.io.label_writers import chunks_along, switch_folder_in
    from napari_action.io.volume_source import open_volume_source, zarr_attrs

    source = open_volume_source(image, nan_to_zero=nan_to_zero)
    sample = source.read(axis, 0, 1)
    partial = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent))
    try:
        array = zarr.create_array(
            str(partial),
            shape=source.shape,
            chunks=chunks_along(source.shape, axis, chunk_slices),
            dtype=sample.dtype,
            attributes=zarr_attrs(source.meta),
            overwrite=True,
        )
        step = chunk_slices * _CHUNKS_PER_WRITE
        for start in range(0, source.shape[axis], step):
            stop = min(start + step, source.shape[axis])
            index = [slice(None)] * 3
            index[axis] = slice(start, stop)
            array[tuple(index)] = np.moveaxis(source.read(axis, start, stop), 0, axis)
        if out.exists():
            switch_folder_in(partial, out)
        else:
            replace(partial, out)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return out

"""``napari-action demo``: the whole ACTION loop on built-in sample data.

A simulated user paints a few short-axis slices of the first phantom subject
(copied from its ground truth); ACTION trains on those slices plus every
other slice of every subject; the model then segments all subjects, which
are scored against the truth on the slices nobody painted.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

from napari_action.cli.demo_files import demo_file_names, record_written, refuse_to_replace_others
from napari_action.cli.options import (
    add_precision_option,
    add_schedule_options,
    add_seed_option,
    add_structure_ends_option,
    add_threads_option,
    config_from_args,
    positive_int,
)
from napari_action.cli.progress_bar import TerminalProgress, describe_schedule, run_training
from napari_action.config import METHODS
from napari_action.data.samples import (
    PHANTOM_CLASS_NAMES,
    PhantomSubject,
    evenly_spaced_slices,
    make_phantom,
    sparse_from_truth,
)
from napari_action.evaluation.metrics import dice_per_class
from napari_action.io.atomic import require_writable_folder, write_text_atomically
from napari_action.io.nifti_writer import save_labels
from napari_action.io.volume_meta import VolumeMeta

DEMO_AXIS = 2  # the phantom's long axis: short-axis slices, as in cardiac cine MRI
#: The demo's schedule: the cpu preset's 300 supervised steps, then 600 ACTION steps where the preset
#: has 900, so that the demo ends within about 2 minutes on a 2-core machine (docs/benchmarks.md, "The
#: demo's schedule: 300 supervised steps"; with 100 supervised steps one seed's second heart came out
#: 0.05 lower). Its two unpainted hearts are too few for the cpu preset to lengthen the schedule.
DEMO_SUPERVISED_START = 300
DEMO_WARMUP = 0
DEMO_STEPS = 600


def add_parser(commands: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command and its options to ``commands``."""
    demo = commands.add_parser("demo", help="the whole loop on built-in sample data, headless")
    demo.add_argument("--out-dir", type=Path, default=Path("napari-action-demo"))
    add_schedule_options(
        demo, steps=DEMO_STEPS, warmup=DEMO_WARMUP, supervised_start=DEMO_SUPERVISED_START, images="subjects"
    )
    demo.add_argument("--slices", type=positive_int, default=3, help="number of painted slices")
    demo.add_argument("--method", choices=METHODS, default="action")
    demo.add_argument("--device", default="auto")
    add_seed_option(demo)
    add_structure_ends_option(demo)
    add_threads_option(demo)
    add_precision_option(demo)
    demo.add_argument(
        "--overwrite", action="store_true", help="replace files in --out-dir that no earlier demo wrote (a model.pt)"
    )
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    """Run the demo (:func:`run_demo`); return the exit code."""
    run_demo(args)
    return 0


def run_demo(args: argparse.Namespace) -> dict[str, Any]:
    """Run the demo; write NIfTI files, a PNG overlay and ``results.json`` into ``args.out_dir``."""
    # Imported when the demo runs, so that `napari-action --help` does not wait
    # for torch (a second or more) and scipy.
    from napari_action.evaluation.metrics import evaluate
    from napari_action.training.trainer import Trainer

    out = Path(args.out_dir)
    subjects = make_phantom(n_subjects=3, seed=args.seed)
    written = demo_file_names(subject.name for subject in subjects)
    refuse_to_replace_others(out, written, overwrite=args.overwrite)
    # Before training, as train and predict check theirs: the model is the first file written, minutes later.
    require_writable_folder(out, instead="another --out-dir")
    painted = evenly_spaced_slices(subjects[0].labels, DEMO_AXIS, args.slices)
    sparse = sparse_from_truth(subjects[0].labels, DEMO_AXIS, painted)
    _say(
        f"Painted slices {list(painted)} of {subjects[0].name} (axis {DEMO_AXIS}); "
        f"{len(subjects) - 1} more subjects are unlabeled data."
    )

    config = config_from_args(args, axis=DEMO_AXIS)
    trainer = Trainer(
        [s.image for s in subjects],
        [sparse],
        config,
        class_names=PHANTOM_CLASS_NAMES,
        spacings=[s.meta.zooms[:3] for s in subjects],
        affines=[s.meta.affine for s in subjects],
    )
    _say(f"Training {trainer.config.method} on {trainer.device_label}: {describe_schedule(trainer)}...")
    for message in trainer.advice:  # what the trainer decided from the data, as `train` says it
        _say(f"Note: {message}")
    run_training(trainer, TerminalProgress())
    trainer.save_checkpoint(out / "model.pt")

    results = {}
    for index, subject in enumerate(subjects):
        # Each subject is a training volume: the painted one keeps its painted slices as a prior.
        *_, final = trainer.predict_volume(index)
        labels = final.labels
        save_labels(out / f"{subject.name}_action.nii.gz", labels, subject.meta, overwrite=True)
        save_labels(out / f"{subject.name}_truth.nii.gz", subject.labels, subject.meta, overwrite=True)
        _save_image(out / f"{subject.name}.nii.gz", subject.image, subject.meta)
        excluded = list(painted) if index == 0 else None
        result = evaluate(
            labels,
            subject.labels,
            spacing=subject.meta.zooms,
            exclude_slices=excluded,
            axis=DEMO_AXIS,
            class_names=PHANTOM_CLASS_NAMES,
        )
        results[subject.name] = result.to_dict()
        note = " (non-painted slices)" if excluded else " (never painted)"
        print(f"\n{subject.name}{note}: mean Dice {result.mean_dice:.3f}")
        print(result.format_table())
        if index == 0:
            _save_overlay(out / "overlay.png", subject, labels, painted)
    save_labels(out / f"{subjects[0].name}_painted.nii.gz", sparse, subjects[0].meta, overwrite=True)
    write_text_atomically(out / "results.json", json.dumps(results, indent=2))
    record_written(out, written)
    _say(
        f"\nWrote the model, images, painted slices, predictions, truth, overlay.png and results.json "
        f"to {out}/.\nOpen them in napari: {open_in_napari_command(out, subjects[0].name)}"
    )
    return results


def open_in_napari_command(out: Path, name: str) -> str:
    """The command line that opens ``name``'s image and prediction in napari, quoted for a shell."""
    files = [out / f"{name}.nii.gz", out / f"{name}_action.nii.gz"]
    words = [_napari_command(), *(str(path) for path in files)]
    if sys.platform == "win32":
        # Double quotes, read alike by cmd.exe and PowerShell (cmd.exe keeps single quotes as part of a
        # name), and only where a space needs them: Windows paths hold backslashes.
        return subprocess.list2cmdline(words)
    return shlex.join(words)


def _napari_command() -> str:
    """``napari`` as the user can type it: the script next to this Python when it is not on PATH (a venv)."""
    # which() finds napari.exe in a Windows venv's Scripts folder too.
    beside = shutil.which("napari", path=str(Path(sys.executable).parent))
    if shutil.which("napari") is not None or beside is None:
        return "napari"
    beside = Path(beside)
    try:
        return str(beside.relative_to(Path.cwd()))
    except ValueError:  # the venv lives elsewhere
        return str(beside)


def _say(text: str) -> None:
    print(text, file=sys.stderr)


def _save_image(path: Path, image: np.ndarray, meta: VolumeMeta) -> None:
    nifti = nib.Nifti1Image(image.astype(np.float32), meta.affine)
    nifti.set_qform(meta.affine, code=int(meta.qform_code) or 1)
    nifti.set_sform(meta.affine, code=int(meta.sform_code) or 1)
    nifti.header["xyzt_units"] = meta.xyzt_units or 10  # mm + s: the NIfTI default for scanner files
    nib.save(nifti, str(path))


def _save_overlay(path: Path, subject: PhantomSubject, prediction: np.ndarray, painted: Sequence[int]) -> None:
    """Image | truth | prediction on the foreground slice farthest from any painted slice, each panel titled."""
    # Imported when the overlay is drawn, so that `napari-action --help` does not wait
    # for scikit-image (a few tenths of a second).
    from skimage.io import imsave

    slice_index = _farthest_foreground_slice(subject.labels, painted)
    image = np.take(subject.image, slice_index, axis=DEMO_AXIS).astype(np.float32)
    lo, hi = np.percentile(image, (1, 99))
    grey = np.clip((image - lo) / max(hi - lo, 1e-6), 0, 1)
    truth = np.take(subject.labels, slice_index, axis=DEMO_AXIS)
    predicted = np.take(prediction, slice_index, axis=DEMO_AXIS)
    panels = [np.repeat(grey[..., None], 3, axis=2), _blend(grey, truth), _blend(grey, predicted)]
    distance = int(np.min(np.abs(np.asarray(list(painted)) - slice_index)))
    titles = [
        f"image, slice {slice_index}",
        "truth",
        f"ACTION, Dice {np.nanmean(list(dice_per_class(predicted, truth).values())):.2f}",
    ]
    # Rows of the array run along the first image axis; show it as the
    # vertical axis of each panel, panels left to right: image, truth, ACTION.
    scaled = [np.kron(np.rot90(panel), np.ones((2, 2, 1))) for panel in panels]  # 2x keeps label edges crisp
    strip = np.concatenate([_titled(panel, title) for panel, title in zip(scaled, titles, strict=True)], axis=1)
    caption = f"{subject.name}: {distance} slices from the nearest painted slice ({', '.join(map(str, painted))})"
    imsave(str(path), _titled(strip, caption), check_contrast=False)


def _titled(panel: np.ndarray, title: str, height: int = 22) -> np.ndarray:
    """``panel`` (float RGB in [0, 1], or uint8) under a black band with ``title`` in white: uint8 RGB."""
    from PIL import Image, ImageDraw, ImageFont

    pixels = panel if panel.dtype == np.uint8 else (np.clip(panel, 0, 1) * 255).astype(np.uint8)
    band = Image.new("RGB", (pixels.shape[1], height))
    ImageDraw.Draw(band).text((6, 3), title, fill=(255, 255, 255), font=ImageFont.load_default(size=14))
    return np.concatenate([np.asarray(band), pixels], axis=0)


PALETTE = (
    np.array(
        [
            [0, 0, 0],
            [230, 25, 75],
            [60, 180, 75],
            [0, 130, 200],
            [245, 130, 48],
            [145, 30, 180],
            [70, 240, 240],
            [240, 50, 230],
        ],
        dtype=np.float32,
    )
    / 255
)


def _blend(grey: np.ndarray, labels: np.ndarray) -> np.ndarray:
    rgb = np.repeat(grey[..., None], 3, axis=2)
    colors = PALETTE[np.asarray(labels) % len(PALETTE)]
    mask = (labels > 0)[..., None]
    return np.where(mask, 0.45 * rgb + 0.55 * colors, rgb)


def _farthest_foreground_slice(truth: np.ndarray, painted: Sequence[int]) -> int:
    has_fg = np.flatnonzero(np.any(np.moveaxis(truth, DEMO_AXIS, 0) > 0, axis=(1, 2)))
    distance = np.min(np.abs(has_fg[:, None] - np.asarray(list(painted))[None, :]), axis=1)
    return int(has_fg[np.argmax(distance)])

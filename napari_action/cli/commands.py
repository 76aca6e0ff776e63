"""What each ``napari-action`` sub-command does (argument parsing is in ``cli.py``)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from napari_action.progress import TrainProgress


class TerminalProgress:
    """A one-line progress bar on stderr, redrawn at most 5 times a second."""

    def __init__(self, stream=None, width: int = 28):
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._last = 0.0

    def update(self, progress: TrainProgress, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < 0.2:
            return
        self._last = now
        filled = int(self.width * progress.fraction)
        bar = "#" * filled + "-" * (self.width - filled)
        eta = "?" if progress.eta_seconds == float("inf") else f"{progress.eta_seconds:4.0f}s"
        loss = progress.losses.get("total", float("nan"))
        self.stream.write(
            f"\r[{bar}] {progress.step}/{progress.total_steps} {progress.stage[:28]:<28} "
            f"loss {loss:6.3f}  {progress.steps_per_second:4.1f} it/s  eta {eta} "
        )
        self.stream.flush()

    def close(self) -> None:
        self.stream.write("\n")
        self.stream.flush()


def run_training(trainer, bar: TerminalProgress | None = None) -> TrainProgress | None:
    """Drive ``trainer.iter_train()`` to the end, drawing ``bar``; return the last progress."""
    last = None
    for last in trainer.iter_train():
        if bar is not None:
            bar.update(last)
    if bar is not None and last is not None:
        bar.update(last, force=True)
        bar.close()
    return last


def train(args: argparse.Namespace) -> int:
    from napari_action.cli.main import config_from_args
    from napari_action.io.nifti import load_labels, load_volume
    from napari_action.training.trainer import Trainer

    if len(args.labels) > len(args.image):
        raise ValueError("More --labels than --image: the k-th --labels belongs to the k-th --image.")
    images = [load_volume(path)[0] for path in args.image]
    labels = [load_labels(path)[0] for path in args.labels]
    extra = {0: args.labeled_slices} if args.labeled_slices else None
    trainer = Trainer(images, labels, config_from_args(args), labeled_slices=extra)
    print(
        f"Training {trainer.config.method} on {trainer.device_label}: {len(images)} volume(s), "
        f"axis {trainer.axis}, classes {trainer.class_values.tolist()}",
        file=sys.stderr,
    )
    run_training(trainer, TerminalProgress())
    path = trainer.save_checkpoint(args.out)
    print(f"Model written to {path}")
    return 0


def output_path(out_dir: Path, image: Path, suffix: str = "_action") -> Path:
    """``DIR/<image name>_action.nii.gz``."""
    name = image.name
    for ext in (".nii.gz", ".nii"):
        if name.endswith(ext):
            name = name[: -len(ext)]
            break
    return out_dir / f"{name}{suffix}.nii.gz"


def predict(args: argparse.Namespace) -> int:
    from napari_action.inference.postprocess import keep_largest_components
    from napari_action.inference.predictor import Predictor
    from napari_action.io.nifti import load_volume, save_labels

    predictor = Predictor.from_checkpoint(args.model, device=args.device)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for path in args.image:
        volume, meta = load_volume(path)
        labels, _ = predictor.predict(volume, tta=args.tta)
        if args.largest_components:
            labels = keep_largest_components(labels, args.largest_components)
        target = save_labels(output_path(args.out_dir, path), labels, meta, overwrite=args.overwrite)
        print(f"{path} -> {target}")
    return 0


def evaluate(args: argparse.Namespace) -> int:
    from napari_action.cli.main import write_json
    from napari_action.evaluation.metrics import evaluate as score
    from napari_action.io.nifti import load_labels

    pred, pred_meta = load_labels(args.pred)
    truth, truth_meta = load_labels(args.truth)
    if args.exclude_slices and args.axis is None:
        raise ValueError("--exclude-slices needs --axis to say which axis the slice numbers refer to.")
    result = score(pred, truth, spacing=truth_meta.zooms, exclude_slices=args.exclude_slices, axis=args.axis)
    print(result.format_table())
    if args.json:
        write_json(args.json, result.to_dict())
    return 0


def demo(args: argparse.Namespace) -> int:
    from napari_action.cli.demo import run_demo

    run_demo(args)
    return 0

"""The sparse-slice protocol: train on k painted slices, score every other slice.

One command per setting; results accumulate in ``--out-dir`` (``results.json``,
``results.md``, PNG plots, predicted volumes under ``preds/``), so k values and
methods can be run in separate invocations and the plots always show them all.

Example (2 CPU cores, no GPU; see ``docs/benchmarks.md``)::

    .venv/bin/python benchmarks/sparse_slices.py --dataset colin27 --k 3 \\
        --methods rf,supervised,action --seeds 1337 --out-dir bench-out

Methods:

* ``propagation``: the painted slices carried along the image's motion, no training;
* ``rf``: random forest on ``skimage.feature.multiscale_basic_features`` of the
  painted slices' pixels (class-balanced subsample), predicted slice by slice;
* ``supervised``, ``mean-teacher``, ``action``: the trainer's methods;
* ``action-no-distill`` (no stages i-ii: the same as ``action`` in the cpu budget, which
  starts with supervised steps instead), ``action-no-anco`` (no anatomical contrast);
* ``upper``: the supervised U-Net with every second slice of the volume painted.

Every network gets the same stage-iii step budget (``--steps``); ACTION runs its
supervised start (``--set steps_supervised_start=N``) and warm-up stages (``--warmup``)
on top. ``--budget paper --device cuda`` runs the paper's schedule (30k stage-iii steps
at 256², SGD) on a GPU; every record names the machine it ran on. Extra dependencies: scikit-learn, matplotlib, psutil.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np
import torch
from peak_memory import PeakRss, peak_rss_mb
from sparse_baselines import (  # sibling modules (run as a script)
    run_interpolation,
    run_itk_interpolation,
    run_propagation,
    run_rf,
)
from sparse_results import load_results, run_key, save_prediction, save_results

from napari_action.config import BUDGETS, TrainConfig
from napari_action.data.samples import (
    COLIN27_CLASS_NAMES,
    PHANTOM_CLASS_NAMES,
    evenly_spaced_slices,
    load_colin27,
    make_phantom,
    sparse_from_truth,
)
from napari_action.evaluation.metrics import evaluate
from napari_action.inference.predictor import Predictor
from napari_action.io.nifti import load_labels, load_volume
from napari_action.training.trainer import Trainer

#: The previous release's defaults: no interpolation prior, 600 stage-iii steps, no prediction post-processing.
REFERENCE = {"loss": {"prior": "none"}, "steps_stage3": 600, "predict_smoothing_mm": 0.0, "predict_prior_decay_mm": 0.0}
NETWORK_METHODS: dict[str, dict] = {
    "supervised": {"method": "supervised"},
    # As many seconds as ACTION: a stage-iii step costs about three supervised steps.
    "supervised-long": {"method": "supervised", "steps_stage3": 2700},
    "mean-teacher": {"method": "mean-teacher"},
    "action": {"method": "action"},
    # The prior of release 0.2: shape interpolation between the painted slices.
    "action-interpolation-prior": {"method": "action", "prior_source": "interpolation"},
    "action-0.1": {"method": "action", **REFERENCE},
    "action-no-distill": {"method": "action", "loss": {"use_global": False, "use_local": False}},
    "action-no-anco": {"method": "action", "loss": {"use_anco": False}},
    "upper": {"method": "supervised"},
}
ALL_METHODS = ("rf", "interpolation", "itk-interpolation", "propagation", *NETWORK_METHODS)
#: Methods whose trainer keeps an EMA teacher; the others predict with the student.
EMA_METHODS = {
    "mean-teacher",
    "action",
    "action-interpolation-prior",
    "action-0.1",
    "action-no-distill",
    "action-no-anco",
}
TPTBOX_FILES = {
    "tptbox-ct": ("sample_ct/sub-ct_label-22_ct.nii.gz", "sample_ct/sub-ct_seg-vert_label-22_msk.nii.gz"),
    "tptbox-mri": ("sample_mri/sub-mri_label-6_T2w.nii.gz", "sample_mri/sub-mri_seg-vert_label-6_msk.nii.gz"),
}
DATASETS = ("colin27", "tptbox-ct", "tptbox-mri", "phantom")
TPTBOX_NAMES = {
    5: "C5",
    6: "C6",
    7: "C7",
    21: "L2",
    22: "L3",
    23: "L4",
    105: "disc C5/6",
    106: "disc C6/7",
    205: "endplate 205",
    206: "endplate 206",
    207: "endplate 207",
}


# --------------------------------------------------------------------------- data


@dataclass
class Dataset:
    """One volume with its full ground truth and the slicing axis of the protocol."""

    name: str
    image: np.ndarray
    truth: np.ndarray
    spacing: tuple[float, float, float]
    axis: int
    class_names: dict[int, str]

    @property
    def class_values(self) -> list[int]:
        return sorted(v for v in self.class_names if v != 0)


def superior_inferior_axis(affine: np.ndarray) -> int:
    """Array axis closest to the scanner's superior-inferior direction (axial slices)."""
    codes = nib.aff2axcodes(affine)
    return next(i for i, code in enumerate(codes) if code in ("S", "I"))


def _tptbox_folder() -> Path:
    spec = importlib.util.find_spec("TPTBox")  # located, never imported (its deps are not installed)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("TPTBox is missing: .venv/bin/pip install --no-deps tptbox==1.1.0")
    return Path(spec.submodule_search_locations[0]) / "tests"


def _load_tptbox(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, tuple, dict[int, str]]:
    image_file, mask_file = TPTBOX_FILES[name]
    image, meta = load_volume(_tptbox_folder() / image_file)
    mask, _ = load_labels(_tptbox_folder() / mask_file)
    values = [int(v) for v in np.unique(mask) if v != 0]
    truth = np.zeros(mask.shape, np.uint8)
    for new, value in enumerate(values, start=1):
        truth[mask == value] = new
    names = {0: "background"} | {i: TPTBOX_NAMES.get(v, f"label {v}") for i, v in enumerate(values, 1)}
    return image, truth, meta.affine, meta.zooms, names


def load_dataset(name: str, axis: int | None = None) -> Dataset:
    """Load ``colin27``, ``tptbox-ct``, ``tptbox-mri`` or ``phantom``; default axis: axial."""
    if name == "colin27":
        image, truth, meta = load_colin27()
        affine, zooms, names = meta.affine, meta.zooms, dict(COLIN27_CLASS_NAMES)
    elif name == "phantom":
        subject = make_phantom(1)[0]
        image, truth, affine, zooms = subject.image, subject.labels, subject.meta.affine, subject.meta.zooms
        names = dict(PHANTOM_CLASS_NAMES)
    elif name in TPTBOX_FILES:
        image, truth, affine, zooms, names = _load_tptbox(name)
    else:
        raise SystemExit(f"unknown dataset {name!r}")
    axis = superior_inferior_axis(affine) if axis is None else axis
    spacing = tuple(float(z) for z in zooms[:3])
    return Dataset(name, np.asarray(image, np.float32), np.asarray(truth), spacing, axis, names)


def score(ds: Dataset, pred: np.ndarray, excluded: list[int]) -> dict:
    """Per-class Dice/HD95/ASD (mm) on every slice that was not painted."""
    result = evaluate(
        pred,
        ds.truth,
        ds.spacing,
        class_values=ds.class_values,
        exclude_slices=excluded,
        axis=ds.axis,
        class_names=ds.class_names,
    )
    return result.to_dict()


# --------------------------------------------------------------------------- networks


def network_config(ds: Dataset, method: str, args) -> TrainConfig:
    """The ``--budget`` preset with the method's overrides and the command line's steps."""
    overrides = {k: (dict(v) if isinstance(v, dict) else v) for k, v in NETWORK_METHODS[method].items()}
    overrides.update(seed=args.seed, device=args.device, axis=ds.axis)
    if args.steps is not None:
        overrides["steps_stage3"] = args.steps
    if args.warmup is not None:
        overrides["steps_stage1"], overrides["steps_stage2"] = args.warmup
    if args.lr is not None:
        overrides["lr"] = args.lr
    for key, value in args.set:
        if "." in key:
            group, field = key.split(".", 1)
            overrides.setdefault(group, {})[field] = value
        else:
            overrides[key] = value
    return TrainConfig.preset(args.budget, **overrides)


def parse_setting(text: str) -> tuple[str, object]:
    """``name=value`` or ``loss.name=value``; the value is read as JSON (numbers, true/false)."""
    key, sep, raw = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected name=value, got {text!r}")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def train_timed(trainer: Trainer) -> dict:
    """Run the schedule; steps and seconds per stage, first streamed prediction, final losses."""
    stages: dict[str, dict] = {}
    first_stream, totals = None, []
    start = last = time.perf_counter()
    for progress in trainer.iter_train():
        now = time.perf_counter()
        entry = stages.setdefault(progress.stage, {"steps": 0, "seconds": 0.0})
        entry["steps"] += 1
        entry["seconds"] += now - last
        last = now
        totals.append(progress.losses["total"])
        if first_stream is None and progress.predictions:
            first_stream = now - start
    for entry in stages.values():
        entry["steps_per_s"] = entry["steps"] / max(entry["seconds"], 1e-9)
    steps = sum(e["steps"] for e in stages.values())
    return {
        "train_s": last - start,
        "steps": steps,
        "steps_per_s": steps / max(last - start, 1e-9),
        "first_stream_s": first_stream,
        "stages": stages,
        "final_loss": float(np.mean(totals[-20:])),
    }


def predictors(trainer: Trainer, method: str) -> dict[str, Predictor]:
    """The networks to score: the trainer's (the EMA teacher, or the supervised student) and, for
    methods with a teacher, the student too, with the same prediction settings."""
    primary = trainer.predictor()
    if method not in EMA_METHODS:
        return {"teacher" if method in EMA_METHODS else "student": primary}
    student = Predictor(
        trainer.nets.student,
        trainer.class_values,
        trainer.axis,
        context=primary.context,
        device=trainer.device,
        amp=primary.amp,
        smoothing_mm=primary.smoothing_mm,
        prior_decay_mm=primary.prior_decay_mm,
    )
    return {"teacher": primary, "student": student}


def run_network(ds: Dataset, method: str, slices: list[int], args) -> tuple[dict, np.ndarray, dict]:
    """Train one network; return (timing, primary prediction, extra scores of other predictors)."""
    sparse = sparse_from_truth(ds.truth, ds.axis, slices)
    with PeakRss() as memory:
        start = time.perf_counter()
        trainer = Trainer(
            [ds.image],
            [sparse],
            network_config(ds, method, args),
            labeled_slices={0: slices},
            class_names=ds.class_names,
            spacings=[ds.spacing],
        )
        timing = {"setup_s": time.perf_counter() - start} | train_timed(trainer)
        preds = {}
        for name, predictor in predictors(trainer, method).items():
            start = time.perf_counter()
            preds[name] = predictor.predict(
                trainer.volumes[0], normalized=True, prior=trainer.prior(0), spacing=ds.spacing
            )[0]
            timing[f"inference_{name}_s"] = time.perf_counter() - start
    timing["peak_rss_delta_mb"] = memory.delta_mb
    if args.save_models:
        folder = args.out_dir / "models"
        folder.mkdir(exist_ok=True)
        shift = f"_shift{args.shift:+d}" if args.shift else ""
        trainer.save_checkpoint(folder / f"{ds.name}_k{len(slices)}{shift}_{method}_s{args.seed}.pt")
    primary = next(iter(preds))
    timing["predictor"] = primary
    others = {name: score(ds, p, slices)["mean_dice"] for name, p in preds.items() if name != primary}
    return timing, preds[primary], others


# --------------------------------------------------------------------------- analysis and plots

DISTANCE_BINS = ((1, 3), (4, 8), (9, 16), (17, 10**6))


def slice_dice(pred: np.ndarray, truth: np.ndarray, classes: list[int]) -> np.ndarray:
    """Per-slice mean Dice over the classes present in truth or prediction (axis-first arrays)."""
    scores = np.full(truth.shape[0], np.nan)
    for s in range(truth.shape[0]):
        present = [c for c in classes if (truth[s] == c).any() or (pred[s] == c).any()]
        values = [_dice(pred[s] == c, truth[s] == c) for c in present]
        scores[s] = np.mean(values) if values else np.nan
    return scores


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return 2.0 * np.count_nonzero(a & b) / (np.count_nonzero(a) + np.count_nonzero(b))


def by_distance(ds: Dataset, pred: np.ndarray, slices: list[int]) -> dict[str, float | None]:
    """Mean per-slice Dice, binned by the distance (in slices) to the nearest painted slice."""
    truth, moved = np.moveaxis(ds.truth, ds.axis, 0), np.moveaxis(pred, ds.axis, 0)
    scores = slice_dice(moved, truth, ds.class_values)
    distance = np.abs(np.arange(truth.shape[0])[:, None] - np.asarray(slices)[None, :]).min(axis=1)
    result = {}
    for low, high in DISTANCE_BINS:
        chosen = scores[(distance >= low) & (distance <= high)]
        chosen = chosen[~np.isnan(chosen)]
        name = f"{low}-{high}" if high < 10**6 else f">{low - 1}"
        result[name] = float(chosen.mean()) if chosen.size else None
    return result


# --------------------------------------------------------------------------- driver


def run_one(ds: Dataset, method: str, k: int | None, args) -> tuple[dict, np.ndarray]:
    n_slices = ds.truth.shape[ds.axis]
    if k is None:
        slices = list(range(0, n_slices, 2))
    else:
        slices = [min(max(s + args.shift, 0), n_slices - 1) for s in evenly_spaced_slices(ds.truth, ds.axis, k)]
    extra: dict = {}
    if method == "rf":
        timing, pred = run_rf(ds, slices, args.seed)
    elif method == "interpolation":
        timing, pred = run_interpolation(ds, slices)
    elif method == "itk-interpolation":
        timing, pred = run_itk_interpolation(ds, slices)
    elif method == "propagation":
        timing, pred = run_propagation(ds, slices)
    else:
        timing, pred, extra = run_network(ds, method, slices, args)
    record = {
        "machine": machine(),
        "budget": args.budget,
        "dataset": ds.name,
        "axis": ds.axis,
        "k": k,
        "shift": args.shift if k else 0,
        "method": method,
        "seed": args.seed,
        "slices": slices,
        "timing": timing,
        "scores": score(ds, pred, slices),
        "other_predictors": extra,
        "by_distance": by_distance(ds, pred, slices),
    }
    if method in NETWORK_METHODS:
        record["config"] = network_config(ds, method, args).to_dict()
    return record, pred


def machine() -> str:
    """The card for CUDA runs, else the CPU count and torch's thread count."""
    if torch.cuda.is_available():
        return f"{torch.cuda.get_device_name(0)}, torch {torch.__version__}"
    return f"{os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads, torch {torch.__version__}"


def parse_warmup(text: str | None) -> tuple[int, int] | None:
    """``--warmup`` as (stage i, stage ii) steps; one number serves both."""
    if text is None:
        return None
    parts = [int(p) for p in text.split(",")]
    return (parts[0], parts[-1])


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """``--device``, ``--steps``, ``--warmup``, ``--lr`` and ``--set``: how every network of a benchmark trains."""
    parser.add_argument("--device", default="cpu", help="cpu, cuda, mps or auto")
    parser.add_argument("--steps", type=int, default=None, help="stage-iii steps (default: the budget's)")
    parser.add_argument("--warmup", default=None, help="stage i,ii steps, e.g. 100,200 (default: the budget's)")
    parser.add_argument("--lr", type=float, default=None, help="learning rate (default: the budget's)")
    parser.add_argument(
        "--set",
        type=parse_setting,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a TrainConfig field, e.g. rot90_prob=0.5 or "
        "loss.dice_present_classes_only=false (use a separate --out-dir)",
    )


def read_run_lists(parser: argparse.ArgumentParser, args: argparse.Namespace, known_methods: tuple) -> None:
    """``--methods`` and ``--seeds`` as lists, ``--warmup`` as steps; an unknown method stops with a message."""
    args.methods = args.methods.split(",")
    args.seeds = [int(s) for s in args.seeds.split(",")]
    args.warmup = parse_warmup(args.warmup)
    unknown = set(args.methods) - set(known_methods)
    if unknown:
        parser.error(f"unknown methods {sorted(unknown)}; choose from {known_methods}")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="colin27", choices=DATASETS)
    parser.add_argument("--axis", type=int, default=None, help="slicing axis (default: closest to S-I)")
    parser.add_argument("--k", default="1,3,7", help="comma-separated numbers of painted slices")
    parser.add_argument("--methods", default="rf,supervised,action")
    parser.add_argument("--seeds", default="1337")
    parser.add_argument(
        "--shift", type=int, default=0, help="move every painted slice by this many slices (a second pick set)"
    )
    parser.add_argument(
        "--budget",
        choices=BUDGETS,
        default="cpu",
        help="training preset: cpu (minutes on 2 cores) or paper (30k steps, for a GPU)",
    )
    add_training_options(parser)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--save-models", action="store_true", help="keep each trained network under out-dir/models")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-out"))
    args = parser.parse_args(argv)
    args.k = [int(k) for k in args.k.split(",")]
    read_run_lists(parser, args, ALL_METHODS)
    return args


def settings(args) -> list[tuple[str, int | None]]:
    """(method, k) pairs to run; ``upper`` runs once, independent of k."""
    pairs = [(m, k) for k in args.k for m in args.methods if m != "upper"]
    return pairs + ([("upper", None)] if "upper" in args.methods else [])


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(args.dataset, args.axis)
    print(f"{ds.name}: shape {ds.image.shape}, spacing {ds.spacing}, axis {ds.axis}, torch {torch.__version__}")
    for seed in args.seeds:
        args.seed = seed
        for method, k in settings(args):
            record, pred = run_one(ds, method, k, args)
            runs = [r for r in load_results(args.out_dir) if run_key(r) != run_key(record)] + [record]
            save_results(args.out_dir, runs, ALL_METHODS, peak_rss_mb())
            save_prediction(args.out_dir, record, pred)
            print(
                f"k={k} {method}: Dice {record['scores']['mean_dice']:.3f} "
                f"HD95 {record['scores']['mean_hd95_mm']} train {record['timing']['train_s']:.0f}s "
                f"{record['other_predictors']}",
                flush=True,
            )
    from sparse_plots import plot_all  # imported late: it imports this module

    plot_all(args.out_dir, ds)


if __name__ == "__main__":
    main()

"""Training speed and memory on a GPU: steps per second and peak memory of each stage, per preset and precision.

For the ``cpu`` and ``paper`` presets, with mixed precision on and off (bfloat16 on GPUs that
support it, else float16 with a loss scaler: ``napari_action.runtime.autocast``), and for the
supervised baseline at the same batch, one run of the painted-slice trainer (Colin27 + AAL, 3 axial
slices painted from the truth) times ``--warmup + --steps`` steps of every stage and reports:

- steps per second of the supervised start and stages i, ii and iii (median over the timed steps; the device is
  synchronised after every step, so a step's time is its whole time);
- peak GPU memory allocated by torch during the run (``torch.cuda.max_memory_allocated``);
- the ACTION stage-iii step over the supervised step (same batch, same run);
- the time the preset's whole schedule would take at those speeds.

``--timeline`` adds what a user would see on that device: the cpu preset trained to its end on
Colin27 (3 painted axial slices, seeds 0, 1, 2, ACTION and the supervised U-Net), the whole volume
predicted every ``--every`` seconds of training (the clock stops while it predicts) and scored by
mean Dice on the unpainted slices, and the preview (the painted slices propagated along the image,
computed on the CPU once and shared by every run) with its own time and Dice. It is the headless
twin of ``benchmarks/widget_timeline.py``, which needs napari and a display.

On a machine without CUDA, ``--device cpu`` runs the same measurements on the CPU (peak memory is
then not reported), e.g. to check the script::

    .venv/bin/python benchmarks/gpu.py --device cpu --presets cpu --steps 2 --warmup 1 --dataset phantom

On a GPU machine::

    .venv/bin/python benchmarks/gpu.py --json bench-out/gpu.json --timeline bench-out/gpu_timeline.json
    xvfb-run -a .venv/bin/python benchmarks/widget_timeline.py --k 3 --seconds 120 --json bench-out/gpu_widget.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from engine import step_times, synchronize
from sparse_slices import DATASETS, Dataset, load_dataset, score

from napari_action.config import SCHEDULE_STEPS, TrainConfig
from napari_action.data.priors import SlicePrior
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.training.trainer import Trainer

STAGES = ("supervised start", "stage i", "stage ii", "stage iii")
STAGE_STEPS = SCHEDULE_STEPS  # the config fields of STAGES' step counts
NO_STREAM = {"stream_every_steps": 10**9, "stream_every_seconds": float("inf")}


def build_trainer(ds: Dataset, preset: str, amp: bool, method: str, device: str, steps: int) -> Trainer:
    """A trainer of ``preset`` on 3 painted slices with ``steps`` steps in each stage, streaming off."""
    budget = dict.fromkeys(STAGE_STEPS, steps)
    config = TrainConfig.preset(preset, device=device, axis=ds.axis, amp=amp, method=method, **budget, **NO_STREAM)
    return painted_trainer(ds, config)


def painted_trainer(ds: Dataset, config: TrainConfig) -> Trainer:
    """A trainer on 3 evenly spaced slices painted from the truth, with the dataset's prior shared between runs.

    The propagation behind the prior runs on the CPU (tens of seconds); every run of
    this script paints the same slices, so it is computed once.
    """
    slices = evenly_spaced_slices(ds.truth, ds.axis, 3)
    trainer = Trainer(
        [ds.image],
        [sparse_from_truth(ds.truth, ds.axis, slices)],
        config,
        labeled_slices={0: slices},
        spacings=[ds.spacing],
    )
    key = (ds.name, tuple(slices), config.prior_source)
    if key in _SHARED_PRIORS:
        trainer.pool.priors = _SHARED_PRIORS[key]
    else:
        _SHARED_PRIORS[key] = trainer.pool.priors
    return trainer


_SHARED_PRIORS: dict[tuple, dict[int, SlicePrior]] = {}


def measure(ds: Dataset, preset: str, amp: bool, method: str, args) -> dict:
    """Steps per second of each stage and the peak memory of one run."""
    trainer = build_trainer(ds, preset, amp, method, args.device, args.warmup + args.steps)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    stages = {}
    for stage, times in step_times(trainer).items():
        kept = times[args.warmup :] or times  # allocator, cuDNN autotuning and teacher sync come first
        stages[stage] = {"steps_per_s": float(1.0 / np.median(kept)), "timed_steps": len(kept)}
    peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if trainer.device.type == "cuda" else None
    return {"device": trainer.device_label, "stages": stages, "peak_gib": peak}


def schedule_seconds(preset: str, stages: dict) -> float | None:
    """The preset's full schedule at the measured speeds (None if a stage was not measured)."""
    config = TrainConfig.preset(preset)
    scheduled = [(getattr(config, field), name) for field, name in zip(STAGE_STEPS, STAGES, strict=True)]
    run = [(count, _speed_of(stages, name)) for count, name in scheduled if count]
    if any(speed is None for _, speed in run):
        return None
    return float(sum(count / speed for count, speed in run))


def _speed_of(stages: dict, prefix: str) -> float | None:
    # Stage names carry their job ("stage iii: ACTION"); match by the numeral.
    found = [v["steps_per_s"] for name, v in stages.items() if name.split(":")[0] == prefix]
    return found[0] if found else None


def run(args) -> list[dict]:
    ds = load_dataset(args.dataset)
    rows = []
    for preset in args.presets:
        for amp in (True, False):
            action = measure(ds, preset, amp, "action", args)
            supervised = measure(ds, preset, amp, "supervised", args)
            sup_speed = next(iter(supervised["stages"].values()))["steps_per_s"]
            stage3 = _speed_of(action["stages"], "stage iii")
            rows.append(
                {
                    "preset": preset,
                    "amp": amp,
                    "device": action["device"],
                    "action": action,
                    "supervised_steps_per_s": sup_speed,
                    "supervised_peak_gib": supervised["peak_gib"],
                    "stage_iii_over_supervised": None if stage3 is None else sup_speed / stage3,
                    "schedule_s": schedule_seconds(preset, action["stages"]),
                }
            )
            print(format_row(rows[-1]), flush=True)
            if args.json:
                _write_json(args.json, rows)
    return rows


def format_row(row: dict) -> str:
    speeds = " / ".join(f"{_speed_of(row['action']['stages'], name) or float('nan'):.1f}" for name in STAGES)
    peak = row["action"]["peak_gib"]
    memory = f"{peak:.2f} GiB" if peak is not None else "n/a"
    ratio = row["stage_iii_over_supervised"]
    schedule = row["schedule_s"]
    return (
        f"{row['preset']:>5} amp={'on ' if row['amp'] else 'off'} {row['device']}: steps/s start/i/ii/iii {speeds}; "
        f"supervised {row['supervised_steps_per_s']:.1f}; stage iii costs {ratio:.2f}x a supervised step; "
        f"peak {memory}; whole schedule {schedule / 60:.1f} min"
    )


# --------------------------------------------------------------------------- timeline


def preview_labels(trainer: Trainer, ds: Dataset) -> tuple[np.ndarray, float]:
    """The preview (the prior of the painted slices) as a label volume, and the seconds it took now."""
    start = time.perf_counter()
    labels = np.zeros(ds.truth.shape, dtype=ds.truth.dtype)
    moved = np.moveaxis(labels, ds.axis, 0)  # a view: writing it fills ``labels``
    for predictions in trainer.iter_preview():
        for run in predictions:
            moved[run.start : run.start + len(run.labels)] = run.labels
    return labels, time.perf_counter() - start


# Where the preview stays on screen under each candidate takeover rule (the network shows elsewhere):
# slices the propagation reached, with a slice confidence of at least c, or within d slices of a painted one.
TAKEOVER_RULES = {
    "network everywhere": lambda prior: np.zeros_like(prior.covered),
    "preview where reached": lambda prior: prior.covered,
    "preview where confidence >= 0.5": lambda prior: prior.covered & (prior.result.slice_confidence >= 0.5),
    "preview where confidence >= 0.8": lambda prior: prior.covered & (prior.result.slice_confidence >= 0.8),
    "preview within 4 slices": lambda prior: prior.covered & (prior.distance <= 4),
    "preview within 8 slices": lambda prior: prior.covered & (prior.distance <= 8),
}


def takeover_scores(network: np.ndarray, preview: np.ndarray, trainer: Trainer, ds: Dataset, slices) -> dict:
    """Mean Dice of the layer each rule would show: the preview on its slices, the network on the others."""
    prior = trainer.prior(0)
    scores = {}
    for name, keeps_preview in TAKEOVER_RULES.items():
        keep = np.asarray(keeps_preview(prior), bool)
        shown = np.moveaxis(
            np.where(keep[:, None, None], np.moveaxis(preview, ds.axis, 0), np.moveaxis(network, ds.axis, 0)),
            0,
            ds.axis,
        )
        scores[name] = score(ds, shown, slices)["mean_dice"]
    return scores


def timeline_run(ds: Dataset, method: str, seed: int, args) -> dict:
    """Train the cpu preset to its end; the mean Dice of the whole volume every ``args.every`` training seconds."""
    budget = {} if args.timeline_steps is None else dict.fromkeys(STAGE_STEPS, args.timeline_steps)
    settings = dict(device=args.device, axis=ds.axis, method=method, seed=seed, **NO_STREAM, **budget)
    config = TrainConfig.preset("cpu", **settings)
    trainer = painted_trainer(ds, config)
    slices = list(trainer.annotation.labeled_slices(0))
    shown, seconds = preview_labels(trainer, ds)
    preview = {"seconds": seconds, "step": 0, "stage": "preview", "dice": score(ds, shown, slices)["mean_dice"]}
    points, clock, mark = [], 0.0, args.every
    generator, progress = trainer.iter_train(), None
    start = time.perf_counter()
    for progress in generator:
        synchronize(trainer.device)
        if clock + time.perf_counter() - start >= mark:
            clock += time.perf_counter() - start
            points.append(scored_point(trainer, ds, slices, clock, progress, shown))
            mark = clock + args.every
            start = time.perf_counter()  # the clock stood still while it predicted
    clock += time.perf_counter() - start
    points.append(scored_point(trainer, ds, slices, clock, progress, shown))
    row = {"method": method, "seed": seed, "device": trainer.device_label, "preview": preview}
    return row | {"train_s": clock, "steps": trainer.step, "points": points, "final_dice": points[-1]["dice"]}


def scored_point(trainer: Trainer, ds: Dataset, slices: list[int], seconds: float, progress, preview) -> dict:
    """The whole volume predicted now (with the prior, as the product predicts it) and scored, alone and
    under each takeover rule."""
    predictor = trainer.predictor()
    labels = predictor.predict(trainer.volumes[0], normalized=True, prior=trainer.prior(0), spacing=ds.spacing)[0]
    stage = None if progress is None else progress.stage
    dice = score(ds, labels, slices)["mean_dice"]
    rules = takeover_scores(labels, preview, trainer, ds, slices)
    return {"seconds": seconds, "step": trainer.step, "stage": stage, "dice": dice, "takeover": rules}


def run_timeline(args) -> list[dict]:
    """Every method and seed of the timeline, each row saved as soon as it is done."""
    ds = load_dataset(args.dataset)
    rows = []
    for seed in args.seeds:
        for method in ("action", "supervised"):
            rows.append(timeline_run(ds, method, seed, args))
            print(format_timeline(rows[-1]), flush=True)
            _write_json(args.timeline, rows)
    return rows


def format_timeline(row: dict) -> str:
    curve = ", ".join(f"{p['seconds']:.0f} s {p['dice']:.3f}" for p in row["points"])
    preview = row["preview"]
    lines = [
        f"timeline {row['method']} seed {row['seed']} {row['device']}: preview {preview['dice']:.3f} "
        f"({preview['seconds']:.1f} s, CPU); {row['steps']} steps in {row['train_s']:.0f} s; "
        f"final {row['final_dice']:.3f}; {curve}"
    ]
    for rule in TAKEOVER_RULES:
        lines.append(f"    {rule:34s} " + " ".join(f"{p['takeover'][rule]:.3f}" for p in row["points"]))
    return "\n".join(lines)


def _write_json(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="colin27", choices=DATASETS)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of each stage")
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--timeline", type=Path, default=None, help="also run the timeline; its rows go here")
    parser.add_argument("--every", type=float, default=10.0, help="timeline: training seconds between predictions")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="timeline seeds")
    parser.add_argument("--timeline-steps", type=int, default=None, help="timeline: steps per stage (the preset's)")
    parser.add_argument("--skip-speed", action="store_true", help="only the timeline")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU is visible to torch; run on a GPU machine, or pass --device cpu to try it out.")
    if not args.skip_speed:
        run(args)
    if args.timeline:
        run_timeline(args)


if __name__ == "__main__":
    main()

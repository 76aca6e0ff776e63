"""Training speed and memory on a GPU: steps per second and peak memory of each stage, per preset and precision.

For the ``cpu`` and ``paper`` presets, with mixed precision on and off (bfloat16 on GPUs that
support it, else float16 with a loss scaler: ``napari_action.runtime.autocast``), and for the
supervised baseline at the same batch, one run of the painted-slice trainer (Colin27 + AAL, 3 axial
slices painted from the truth) times ``--warmup + --steps`` steps of every stage and reports:

- steps per second of stages i, ii and iii (median over the timed steps; the device is
  synchronised after every step, so a step's time is its whole time);
- peak GPU memory allocated by torch during the run (``torch.cuda.max_memory_allocated``);
- the ACTION stage-iii step over the supervised step (same batch, same run);
- the time the preset's whole schedule would take at those speeds.

The widget's timeline on the same machine comes from ``benchmarks/widget_timeline.py`` (the
widget picks the GPU by itself). On a machine without CUDA, ``--device cpu`` runs the same
measurements on the CPU (peak memory is then not reported), e.g. to check the script::

    .venv/bin/python benchmarks/gpu.py --device cpu --presets cpu --steps 2 --warmup 1 --dataset phantom

On a GPU machine::

    .venv/bin/python benchmarks/gpu.py --json bench-out/gpu.json
    xvfb-run -a .venv/bin/python benchmarks/widget_timeline.py --k 3 --seconds 120 --json bench-out/gpu_widget.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from sparse_slices import DATASETS, Dataset, load_dataset

from napari_action.config import TrainConfig
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.training.trainer import Trainer

STAGES = ("stage i", "stage ii", "stage iii")
NO_STREAM = {"stream_every_steps": 10**9, "stream_every_seconds": float("inf")}


def build_trainer(ds: Dataset, preset: str, amp: bool, method: str, device: str, steps: int) -> Trainer:
    """A trainer of ``preset`` on 3 painted slices with ``steps`` steps in each stage, streaming off."""
    budget = {"steps_stage1": steps, "steps_stage2": steps, "steps_stage3": steps}
    config = TrainConfig.preset(preset, device=device, axis=ds.axis, amp=amp, method=method, **budget, **NO_STREAM)
    slices = evenly_spaced_slices(ds.truth, ds.axis, 3)
    return Trainer([ds.image], [sparse_from_truth(ds.truth, ds.axis, slices)], config)


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed_steps(trainer: Trainer) -> dict[str, list[float]]:
    """Seconds of every step, by stage name, the device synchronised after each."""
    times: dict[str, list[float]] = {}
    generator = trainer.iter_train()
    while True:
        start = time.perf_counter()
        progress = next(generator, None)
        _synchronize(trainer.device)
        if progress is None:
            return times
        times.setdefault(progress.stage, []).append(time.perf_counter() - start)


def measure(ds: Dataset, preset: str, amp: bool, method: str, args) -> dict:
    """Steps per second of each stage and the peak memory of one run."""
    trainer = build_trainer(ds, preset, amp, method, args.device, args.warmup + args.steps)
    if trainer.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(trainer.device)
    stages = {}
    for stage, times in timed_steps(trainer).items():
        kept = times[args.warmup :] or times  # allocator, cuDNN autotuning and teacher sync come first
        stages[stage] = {"steps_per_s": float(1.0 / np.median(kept)), "timed_steps": len(kept)}
    peak = torch.cuda.max_memory_allocated(trainer.device) / 2**30 if trainer.device.type == "cuda" else None
    return {"device": trainer.device_label, "stages": stages, "peak_gib": peak}


def schedule_seconds(preset: str, stages: dict) -> float | None:
    """The preset's full schedule at the measured speeds (None if a stage was not measured)."""
    config = TrainConfig.preset(preset)
    counts = (config.steps_stage1, config.steps_stage2, config.steps_stage3)
    speeds = [_speed_of(stages, name) for name in STAGES]
    if any(speed is None for speed in speeds):
        return None
    return float(sum(count / speed for count, speed in zip(counts, speeds, strict=True)))


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
    return rows


def format_row(row: dict) -> str:
    speeds = " / ".join(f"{_speed_of(row['action']['stages'], name) or float('nan'):.1f}" for name in STAGES)
    peak = row["action"]["peak_gib"]
    memory = f"{peak:.2f} GiB" if peak is not None else "n/a"
    ratio = row["stage_iii_over_supervised"]
    schedule = row["schedule_s"]
    return (
        f"{row['preset']:>5} amp={'on ' if row['amp'] else 'off'} {row['device']}: steps/s i/ii/iii {speeds}; "
        f"supervised {row['supervised_steps_per_s']:.1f}; stage iii costs {ratio:.2f}x a supervised step; "
        f"peak {memory}; whole schedule {schedule / 60:.1f} min"
    )


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dataset", default="colin27", choices=DATASETS)
    parser.add_argument("--presets", nargs="+", default=["cpu", "paper"], choices=["cpu", "paper"])
    parser.add_argument("--steps", type=int, default=50, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=10, help="untimed steps at the start of each stage")
    parser.add_argument("--json", type=Path, default=None)
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit("No CUDA GPU is visible to torch; run on a GPU machine, or pass --device cpu to try it out.")
    rows = run(args)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"torch": torch.__version__, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()

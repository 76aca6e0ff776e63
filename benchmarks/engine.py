"""Engine speed and memory on CPU: training steps per stage, whole-volume inference.

Prints, in one run with ``torch.set_num_threads(2)``:

(a) milliseconds per step of ACTION stages i, ii and iii, the supervised baseline
    and Mean Teacher, with the same batch (cpu preset: 2 labeled + 2 unlabeled
    128² crops; supervised also with 4 labeled crops, i.e. as many student
    images as ACTION), measured in interleaved rounds so that load from other
    processes hits every method alike, and the ratios to a supervised step;
(b) whole-volume inference of the 181×217×181 Colin27 T1 along the axial axis;
(c) peak memory of training and inference, each in a fresh child process
    (peak RSS, ``VmHWM``, above its value after loading the data);
and, per stage-iii step, where the time goes (cProfile by caller and the top
torch operators).

Aims (issue): an ACTION step ≤ 1.8× a supervised step; that inference ≤ 10 s on 2 cores.

Run::

    .venv/bin/python benchmarks/engine.py            # ~5 min on 2 shared cores
    .venv/bin/python benchmarks/engine.py --dataset phantom --steps 10 --rounds 2   # quick
"""

from __future__ import annotations

import argparse
import cProfile
import json
import pstats
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from peak_memory import PeakRss, peak_rss_mb
from sparse_slices import DATASETS, Dataset, load_dataset

from napari_action.config import SCHEDULE_STEPS, TrainConfig
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.progress import TrainProgress
from napari_action.training.trainer import Trainer

NO_STREAM = {"stream_every_steps": 10**9, "stream_every_seconds": float("inf")}
# "action" and "supervised (2 lab)" are the shipped cpu preset as this machine resolves it (bfloat16
# where the CPU computes it natively, float32 elsewhere); the others say what they change.
FLOAT32 = {"cpu_bfloat16": False}
BF16 = {"cpu_bfloat16": True}
VARIANTS: dict[str, dict] = {
    "action": {"method": "action"},
    "action, float32": {"method": "action", **FLOAT32},
    "action, bfloat16": {"method": "action", **BF16},
    "action, AnCo at stride 4 (before)": {"method": "action", "model": {"rep_stride": 4}},
    "action, no AnCo": {"method": "action", "loss": {"use_anco": False}},
    "supervised (2 lab)": {"method": "supervised"},
    "supervised (2 lab), float32": {"method": "supervised", **FLOAT32},
    "supervised (2 lab), bfloat16": {"method": "supervised", **BF16},
    "supervised (4 lab)": {"method": "supervised", "batch_labeled_stage3": 4},
    "mean-teacher": {"method": "mean-teacher"},
}

STAGE_III = "stage iii: ACTION"


def build_trainer(ds: Dataset, overrides: dict, steps: int, device: str = "cpu") -> Trainer:
    """A trainer on 3 evenly spaced painted slices with ``steps`` in every stage, streaming off."""
    slices = evenly_spaced_slices(ds.truth, ds.axis, 3)
    budget = {**dict.fromkeys(SCHEDULE_STEPS, steps), **NO_STREAM}
    config = TrainConfig.preset("cpu", device=device, axis=ds.axis, **(budget | overrides))
    return Trainer([ds.image], [sparse_from_truth(ds.truth, ds.axis, slices)], config)


def synchronize(device: torch.device) -> None:
    """Wait for the GPU's queued work, so that a step's time is its whole time (nothing to wait for on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def step_times(trainer: Trainer, steps: int | None = None) -> dict[str, list[float]]:
    """Seconds per step, keyed by stage name, of one call of ``iter_train``, the device synchronised after each."""
    times: dict[str, list[float]] = {}
    generator = trainer.iter_train(steps)
    while True:
        start = time.perf_counter()
        progress = next(generator, None)
        synchronize(trainer.device)
        if progress is None:
            return times
        times.setdefault(progress.stage, []).append(time.perf_counter() - start)


def lockstep(generators: dict[str, Iterator[TrainProgress]]) -> dict[str, list[tuple[str, float]]]:
    """Advance every generator by one step in turn until all are done: (stage, seconds) per step.

    Interleaving single steps spreads the load of other processes on the shared
    cores evenly over the variants, so that their ratios stay meaningful.
    """
    records: dict[str, list[tuple[str, float]]] = {name: [] for name in generators}
    active = dict(generators)
    while active:
        for name, generator in list(active.items()):
            start = time.perf_counter()
            progress = next(generator, None)
            if progress is None:
                del active[name]
            else:
                records[name].append((progress.stage, time.perf_counter() - start))
    return records


def measure_steps(ds: Dataset, steps: int, warmup: int) -> dict[str, list[float]]:
    """Per-step seconds of every variant and stage, measured in lockstep.

    ACTION variants run the supervised start and stages i, ii, iii with ``warmup + steps`` steps each; the
    baselines run as many steps in their single stage. The first ``warmup``
    steps of every stage are dropped (allocator and oneDNN warm-up, teacher sync).
    """
    per_stage = warmup + steps
    generators = {}
    for name, overrides in VARIANTS.items():
        budget = per_stage if overrides["method"] == "action" else len(SCHEDULE_STEPS) * per_stage
        generators[name] = build_trainer(ds, overrides, budget).iter_train()
    samples: dict[str, list[float]] = {}
    for name, records in lockstep(generators).items():
        stage_names = list(dict.fromkeys(stage for stage, _ in records))
        for stage in stage_names:
            times = [t for st, t in records if st == stage][warmup:]
            if stage in (STAGE_III, "supervised", "mean teacher"):
                samples[name] = times
            elif name == "action":  # the other variant's warm-up stages are identical
                samples[f"{name}: {stage}"] = times
    return samples


def report_steps(samples: dict[str, list[float]]) -> dict[str, dict]:
    sup2 = np.median(samples["supervised (2 lab)"])
    sup4 = np.median(samples["supervised (4 lab)"])
    print(
        "\n(a) training step, ms: median / 20th percentile / mean (steps in lockstep); "
        "median ratio to supervised (2 lab) and (4 lab)"
    )
    table = {}
    for label, times in samples.items():
        median, low, mean = (float(np.median(times)), float(np.percentile(times, 20)), float(np.mean(times)))
        table[label] = {
            "median_ms": 1e3 * median,
            "p20_ms": 1e3 * low,
            "mean_ms": 1e3 * mean,
            "n": len(times),
            "ratio_sup2": median / sup2,
            "ratio_sup4": median / sup4,
        }
        print(
            f"  {label:40s} {1e3 * median:7.1f} / {1e3 * low:7.1f} / {1e3 * mean:7.1f}   "
            f"x{median / sup2:5.2f}  x{median / sup4:5.2f}   (n={len(times)})"
        )
    ratio = table["action"]["ratio_sup2"]
    print(
        f"  ACTION stage iii / supervised, same batch: x{ratio:.2f} (2 lab), "
        f"x{table['action']['ratio_sup4']:.2f} (4 lab); aim <= 1.8: {'met' if ratio <= 1.8 else 'MISSED'}"
    )
    return table


# --------------------------------------------------------------------------- where the time goes

PROFILED = {
    "data: labeled batch (crop + geometric aug)": ("_labeled_batch", None),
    "data: unlabeled crops + prior + geometric aug": ("_prior_batch", None),
    "teacher forward (pseudo-labels)": ("_wrapped_call_impl", "_teacher_probabilities"),
    "CutMix": ("cutmix", None),
    "photometric aug": ("strong_photometric", None),
    "student forward (U-Net)": ("_wrapped_call_impl", "action"),
    "supervised loss (CE + Dice)": ("supervised_loss", None),
    "pseudo-label loss": ("pseudo_label_loss", None),
    "representation head forward": ("representation", None),
    "AnCo sampler (_sample_contrast)": ("_sample_contrast", None),
    "AnCo loss incl. sampler": ("anatomical_contrast", None),
    "backward (all)": ("run_backward", None),
    "optimizer step": ("step", None),
    "EMA update": ("ema_update", None),
}


def _cumulative(stats: pstats.Stats, func: str, caller: str | None) -> float:
    """Cumulative seconds of ``func`` (ours or torch's), optionally only when called from ``caller``."""
    total = 0.0
    for (path, _, name), (_, _, _, cum, callers) in stats.stats.items():
        builtin = path == "~" and func in name  # e.g. "<method 'run_backward' of ...>"
        if not builtin and (name != func or ("napari_action" not in path and "torch" not in path)):
            continue
        if caller is None:
            total = max(total, cum) if func == "step" else total + cum
        else:
            total += sum(c[3] for (_, _, n), c in callers.items() if n == caller)
    return total


def profile_stage_iii(ds: Dataset, steps: int, device: str = "cpu") -> dict[str, float]:
    """cProfile ``steps`` stage-iii steps (after warm-up) and attribute the time to its parts.

    On a GPU the parts are where the Python thread spends its time (kernels run
    asynchronously and land on the next synchronising call).
    """
    first_stages = {"steps_supervised_start": 1, "steps_stage1": 1, "steps_stage2": 1}
    trainer = build_trainer(ds, {"method": "action", **first_stages}, steps, device)
    step_times(trainer)  # warm-up: whole schedule once
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(step_times, trainer, steps)
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    print(
        f"\nwhere a stage-iii step goes (cProfile, {steps} steps, {1e3 * wall / steps:.0f} ms/step incl. "
        "profiler overhead; nested rows overlap)"
    )
    parts = {}
    for label, (func, caller) in PROFILED.items():
        ms = 1e3 * _cumulative(stats, func, caller) / steps
        parts[label] = ms
        print(f"  {label:45s} {ms:7.1f} ms  {100 * ms * steps / (1e3 * wall):5.1f} %")
    torch_operator_table(trainer, max(2, steps // 4))
    return parts


def torch_operator_table(trainer: Trainer, steps: int) -> None:
    """Top torch operators by self CPU time over a few stage-iii steps."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.device.type == "cuda" else [])
    with profile(activities=activities) as prof:
        step_times(trainer, steps)
    print(f"\ntop torch operators over {steps} stage-iii steps (self CPU time)")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=14, max_name_column_width=38))
    if trainer.device.type == "cuda":
        print(f"\ntop torch operators over {steps} stage-iii steps (self GPU time)")
        print(prof.key_averages().table(sort_by="self_device_time_total", row_limit=10, max_name_column_width=38))


# --------------------------------------------------------------------------- inference


def measure_inference(ds: Dataset, repeats: int, batch_sizes: tuple[int, ...]) -> dict[str, dict]:
    """Whole-volume prediction (normalisation, network, confidence and entropy maps)."""
    trainer = build_trainer(ds, {"method": "action"}, 1)
    predictor = trainer.predictor()
    n = ds.image.shape[ds.axis]
    print(f"\n(b) whole-volume inference, shape {ds.image.shape}, axis {ds.axis} ({n} slices)")
    predictor.predict(ds.image, batch_size=batch_sizes[0])  # warm-up (allocator, oneDNN kernels)
    results = {}
    for batch in batch_sizes:
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            predictor.predict(ds.image, batch_size=batch)
            times.append(time.perf_counter() - start)
        best = min(times)
        results[f"batch {batch}"] = {"seconds_min": best, "seconds_all": times, "slices_per_s": n / best}
        print(
            f"  batch {batch:3d}: {best:6.2f} s (min of {[round(t, 2) for t in times]}), "
            f"{n / best:6.1f} slices/s; aim <= 10 s: {'met' if best <= 10 else 'MISSED'}"
        )
    profile_inference(predictor, ds)
    stream = time_stream_chunk(predictor, trainer)
    results["stream chunk"] = stream
    return results


def profile_inference(predictor, ds: Dataset) -> None:
    profiler = cProfile.Profile()
    start = time.perf_counter()
    profiler.runcall(predictor.predict, ds.image)
    wall = time.perf_counter() - start
    stats = pstats.Stats(profiler)
    print(f"  where inference goes (cProfile, {wall:.2f} s):")
    for label, func in (
        ("normalize_volume", "normalize_volume"),
        ("network forward", "_softmax"),
        ("entropy map", "normalized_entropy"),
        ("predict_slices total", "predict_slices"),
    ):
        print(f"    {label:25s} {_cumulative(stats, func, None):6.2f} s")


def time_stream_chunk(predictor, trainer: Trainer) -> dict[str, float]:
    """One streamed update (``stream_slices`` slices) and its share of training time."""
    moved = np.moveaxis(trainer.volumes[0], trainer.axis, 0)
    chunk = trainer.config.stream_slices
    predictor.predict_slices(moved, 0, chunk)
    start = time.perf_counter()
    predictor.predict_slices(moved, 0, chunk)
    seconds = time.perf_counter() - start
    every = TrainConfig.preset("cpu").stream_every_seconds  # the preset's rate (streaming is off here)
    share = seconds / (every + seconds)
    print(
        f"  streamed update ({chunk} slices): {seconds:.2f} s, every {every:.0f} s of training "
        f"=> {100 * share:.0f} % of training wall time"
    )
    return {"seconds": seconds, "training_share": share}


# --------------------------------------------------------------------------- memory (child processes)


def memory_child(dataset: str, what: str, steps: int) -> None:
    """Run in a fresh process: print JSON with the peak RSS before and after the work."""
    torch.set_num_threads(2)
    ds = load_dataset(dataset)
    loaded = peak_rss_mb()
    with PeakRss() as sampler:
        if what == "inference":
            build_trainer(ds, {"method": "action"}, 1).predictor().predict(ds.image)
        else:
            step_times(build_trainer(ds, VARIANTS[what], steps))
    print(json.dumps({"loaded_mb": loaded, "maxrss_mb": peak_rss_mb(), "sampled_delta_mb": sampler.delta_mb}))


def measure_memory(dataset: str, steps: int) -> dict[str, dict]:
    print("\n(c) peak memory, fresh process each (MB): peak RSS (VmHWM) after loading -> after the work")
    results = {}
    for what in ("supervised (2 lab)", "action", "inference"):
        command = [sys.executable, __file__, "--dataset", dataset, "--memory-child", what, "--steps", str(steps)]
        output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
        result = json.loads(output.strip().splitlines()[-1])
        results[what] = result
        grown = result["maxrss_mb"] - result["loaded_mb"]
        print(
            f"  {what:25s} {result['loaded_mb']:7.0f} -> {result['maxrss_mb']:7.0f}  "
            f"(+{grown:.0f}; sampled RSS peak +{result['sampled_delta_mb']:.0f})"
        )
    return results


# --------------------------------------------------------------------------- driver


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="colin27", choices=DATASETS)
    parser.add_argument("--steps", type=int, default=30, help="timed steps per stage")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps at the start of each stage")
    parser.add_argument("--profile-steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3, help="inference repeats (min is reported)")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    parser.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--device", default="cpu", help="with cuda: only the stage-iii profile runs")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.memory_child:
        memory_child(args.dataset, args.memory_child, args.steps)
        return
    torch.set_num_threads(2)
    ds = load_dataset(args.dataset)
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ds.name} {ds.image.shape}, "
        f"axis {ds.axis}; cpu preset: crop 128, batch 2+2, rep_dim 128, AnCo 64 queries x 128 negatives at 1/8"
    )
    if args.device != "cpu":  # steps/s and memory on a GPU: benchmarks/gpu.py
        profile_stage_iii(ds, args.profile_steps, args.device)
        return
    results = {"steps": report_steps(measure_steps(ds, args.steps, args.warmup))}
    results["stage_iii_profile_ms"] = profile_stage_iii(ds, args.profile_steps)
    results["inference"] = measure_inference(ds, args.repeats, (8, 32))
    results["memory"] = measure_memory(args.dataset, args.steps)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()

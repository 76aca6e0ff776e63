"""Throughput of training on 1 process vs 2 processes (torchrun, Gloo, CPU) on the same machine.

Each configuration is one ``torchrun --standalone`` launch of this script in
``--worker`` mode: every rank builds the same phantom (2 subjects, 3 painted
slices of the first), trains ``--steps`` stage-iii ACTION steps of the cpu
preset (no warm-up, no streaming) and rank 0 times the steps after the first
``--skip`` ones. The configurations run in interleaved rounds, so that load
from other processes on a shared machine hits each of them alike; reported
per configuration, as the median over rounds (min–max in brackets):

* steps/s: optimiser steps per second (every rank takes each step together);
* samples/s: crops per second over all ranks, steps/s × ranks × (2 labeled + 2 unlabeled);
* the wall time of the whole launch (start-up, data, process group, training).

On a machine with C cores the fair comparison is at equal cores: 1 rank ×
C threads against C ranks × 1 thread. Run::

    .venv/bin/python benchmarks/distributed.py                            # ~5 min on 2 cores
    .venv/bin/python benchmarks/distributed.py --steps 20 --rounds 1      # quick
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

# (ranks, threads per rank) in the order of the table.
CONFIGURATIONS = ((1, 1), (1, 2), (2, 1))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60, help="stage-iii steps per run")
    parser.add_argument("--skip", type=int, default=5, help="first steps left out of the timing")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of all configurations")
    parser.add_argument("--worker", action="store_true", help="(internal) one rank of a torchrun launch")
    parser.add_argument("--threads", type=int, default=1, help="(worker) torch threads per rank")
    parser.add_argument("--result", type=Path, help="(worker) JSON file rank 0 writes")
    return parser.parse_args()


def worker(args: argparse.Namespace) -> None:
    """One rank: train, time the steps, and (rank 0) write the figures."""
    from napari_action.config import TrainConfig
    from napari_action.data.samples import evenly_spaced_slices, make_phantom, sparse_from_truth
    from napari_action.training import distributed
    from napari_action.training.trainer import Trainer

    subjects = make_phantom(n_subjects=2, seed=0)
    axis = 2
    painted = sparse_from_truth(subjects[0].labels, axis, evenly_spaced_slices(subjects[0].labels, axis, 3))
    config = TrainConfig.preset(
        "cpu",
        device="cpu",
        axis=axis,
        num_threads=args.threads,
        steps_supervised_start=0,
        steps_stage1=0,
        steps_stage2=0,
        steps_stage3=args.steps,
        stream_every_steps=10**9,
        stream_every_seconds=float("inf"),
    )
    trainer = Trainer([s.image for s in subjects], [painted], config)
    times, final_loss = [], float("nan")
    for progress in trainer.iter_train():
        times.append(time.perf_counter())
        final_loss = progress.losses["total"]
    if trainer.distributed.is_main:
        timed_steps = len(times) - 1 - args.skip
        steps_per_s = timed_steps / (times[-1] - times[args.skip])
        crops = config.batch_labeled_stage3 + config.batch_unlabeled_stage3
        result = {
            "ranks": trainer.distributed.world_size,
            "threads": args.threads,
            "steps_per_s": steps_per_s,
            "samples_per_s": steps_per_s * trainer.distributed.world_size * crops,
            "final_loss": final_loss,
        }
        args.result.write_text(json.dumps(result))
    distributed.leave()


def launch(ranks: int, threads: int, steps: int, skip: int, result: Path) -> tuple[dict, float, list[str]]:
    """One torchrun launch; its figures, wall seconds and command."""
    command = [
        *(sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(ranks)),
        *(__file__, "--worker", "--threads", str(threads), "--steps", str(steps), "--skip", str(skip)),
        *("--result", str(result)),
    ]
    # torchrun would set 1 thread per rank anyway; set it so the 1-rank run gets what it asks for.
    environ = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    start = time.perf_counter()
    subprocess.run(command, check=True, env=environ, stdout=subprocess.DEVNULL)
    return json.loads(result.read_text()), time.perf_counter() - start, command


def main() -> None:
    args = parse_args()
    if args.worker:
        worker(args)
        return
    runs: dict[tuple[int, int], list[dict]] = {configuration: [] for configuration in CONFIGURATIONS}
    with tempfile.TemporaryDirectory() as folder:
        for round_number in range(args.rounds):
            for ranks, threads in CONFIGURATIONS:
                figures, wall, command = launch(ranks, threads, args.steps, args.skip, Path(folder) / "r.json")
                runs[ranks, threads].append({**figures, "wall_s": wall})
                if round_number == 0:
                    print("$", " ".join(Path(c).name if c == sys.executable else c for c in command), flush=True)
    base = float(np.median([run["samples_per_s"] for run in runs[CONFIGURATIONS[0]]]))
    print(
        f"\n{args.steps} stage-iii ACTION steps (cpu preset, 2+2 crops of 128² per rank), first {args.skip} "
        f"untimed; median of {args.rounds} interleaved rounds [min–max]"
    )
    print("| ranks × threads | steps/s | samples/s | samples/s vs 1×1 | wall s (launch) | final loss |")
    print("|---|---|---|---|---|---|")
    for (ranks, threads), done in runs.items():
        samples = float(np.median([run["samples_per_s"] for run in done]))
        print(
            f"| {ranks} × {threads} | {_spread(done, 'steps_per_s')} | {_spread(done, 'samples_per_s')} | "
            f"{samples / base:.2f}× | {_spread(done, 'wall_s', 1)} | {done[-1]['final_loss']:.3f} |"
        )
    print(f"\nmachine: {os.cpu_count()} CPUs visible, load average {np.round(os.getloadavg(), 2).tolist()}")


def _spread(runs: list[dict], key: str, digits: int = 2) -> str:
    values = [run[key] for run in runs]
    return f"{np.median(values):.{digits}f} [{min(values):.{digits}f}–{max(values):.{digits}f}]"


if __name__ == "__main__":
    main()

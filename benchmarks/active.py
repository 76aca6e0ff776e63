"""Simulated annotator: does the "next slices to annotate" ranking beat random picks?

Protocol, per seed:

1. Annotate one slice (the middle foreground slice along the axial axis) and
   train the model (warm-up + ``--initial-steps`` stage-iii steps).
2. For each strategy, starting from that same model, repeat ``--rounds`` times:
   pick one more slice, annotate it with the ground truth (the simulated
   user's correction is perfect), retrain ``--steps`` steps from the current
   weights (the same budget every round), predict the volume.

   * ``ranked``: the top slice of :func:`napari_action.inference.suggestions.suggest_slices`
     on the normalised entropy of the current prediction (what the plugin's
     "Next slices to annotate" list proposes);
   * ``ranked-foreground``: the same ranking, scored only near the predicted
     foreground (voxels within ``FOREGROUND_MARGIN`` of a predicted structure),
     so slices where the model sees nothing cannot win on background noise;
   * ``random``: a slice drawn uniformly from the unannotated ones (seeded).

3. Score: mean Dice over the classes on the slices this run never annotated.

Both strategies share the initial model and the training seed, so the only
difference is which slices they are given. Results go to
``<out-dir>/active_<dataset>.json`` and a plot ``active_<dataset>.png``.

Example (the lead's real budget; a tiny one proves it runs)::

    .venv/bin/python benchmarks/active.py --dataset colin27 --rounds 4 --seeds 0 1 2
    .venv/bin/python benchmarks/active.py --dataset phantom --initial-steps 10 --steps 5 \\
        --supervised-start 2 --out-dir bench-active

Extra dependency: matplotlib (plot); see ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage
from sparse_slices import Dataset, load_dataset  # the sibling benchmark's loaders (run as a script)

from napari_action.config import TrainConfig
from napari_action.data.interpolation import interpolate_labels
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.evaluation.metrics import dice_per_class
from napari_action.inference.next_slices import STRATEGIES as NEXT_SLICE_STRATEGIES
from napari_action.inference.next_slices import next_slices
from napari_action.inference.suggestions import suggest_slices
from napari_action.training.trainer import Trainer

logger = logging.getLogger("active")
# "gap-share": the gap rule with a structure range that ignores slices holding under
# GAP_AREA_SHARE of the largest slice's predicted structure (stray voxels no longer stretch it).
STRATEGIES = ("ranked", "ranked-foreground", "random", *NEXT_SLICE_STRATEGIES, "gap-share")
GAP_AREA_SHARE = 0.1
FOREGROUND_MARGIN = 3  # voxels


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", choices=("phantom", "colin27", "tptbox-ct"), default="phantom")
    parser.add_argument("--rounds", type=int, default=4, help="slices added after the first one")
    parser.add_argument("--steps", type=int, default=200, help="retraining steps per round")
    parser.add_argument(
        "--initial-steps",
        type=int,
        default=None,
        help="stage-iii steps of the initial model (default: the cpu preset's)",
    )
    parser.add_argument("--warmup", type=int, nargs=2, default=None, metavar=("STAGE1", "STAGE2"))
    parser.add_argument("--supervised-start", type=int, default=None, help="default: the cpu preset's")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--method", choices=("action", "supervised", "mean-teacher"), default="action")
    parser.add_argument("--strategies", nargs="+", choices=STRATEGIES, default=["ranked", "random"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-active"))
    return parser.parse_args(argv)


def make_config(ds: Dataset, args, seed: int) -> TrainConfig:
    overrides = dict(method=args.method, seed=seed, device=args.device, axis=ds.axis, num_threads=args.threads)
    if args.initial_steps is not None:
        overrides["steps_stage3"] = args.initial_steps
    if args.warmup is not None:
        overrides["steps_stage1"], overrides["steps_stage2"] = args.warmup
    if args.supervised_start is not None:
        overrides["steps_supervised_start"] = args.supervised_start
    return TrainConfig.preset("cpu", **overrides)


def predict(trainer: Trainer) -> tuple[np.ndarray, np.ndarray]:
    """Labels and normalised entropy of the whole volume (the plugin's Predict all)."""
    update = next(u for u in trainer.predict_volume(0) if u.done)
    return update.labels, update.entropy


def unseen_dice(ds: Dataset, pred: np.ndarray, annotated: list[int]) -> float:
    """Mean Dice over the classes, on the slices never annotated in this run."""
    keep = np.setdiff1d(np.arange(ds.truth.shape[ds.axis]), annotated)
    scores = dice_per_class(np.take(pred, keep, axis=ds.axis), np.take(ds.truth, keep, axis=ds.axis), ds.class_values)
    return float(np.nanmean(list(scores.values())))


def near_foreground(pred: np.ndarray) -> np.ndarray:
    """Voxels within ``FOREGROUND_MARGIN`` of a predicted structure."""
    return ndimage.binary_dilation(pred > 0, iterations=FOREGROUND_MARGIN)


def pick(strategy: str, pred: np.ndarray, entropy: np.ndarray, ds: Dataset, annotated: list[int], rng) -> tuple:
    """(slice, reason) chosen by ``strategy``; random picks when a strategy finds nothing."""
    if strategy.startswith("ranked"):
        masks = [near_foreground(pred)] if strategy == "ranked-foreground" else None
        return suggest_slices([entropy], {0: annotated}, ds.axis, k=1, masks=masks)[0].slice_index, "score"
    if strategy in NEXT_SLICE_STRATEGIES or strategy == "gap-share":
        painted = sparse_from_truth(ds.truth, ds.axis, annotated)
        interpolation = interpolate_labels(painted, ds.axis) if strategy == "disagreement" else None
        found = next_slices(
            "gap" if strategy == "gap-share" else strategy,
            pred,
            ds.axis,
            annotated,
            np.unique(painted),
            k=1,
            entropy=entropy,
            interpolation=interpolation,
            class_names=ds.class_names,
            min_area_share=GAP_AREA_SHARE if strategy == "gap-share" else 0.0,
        )
        if found:
            return found[0].slice_index, found[0].reason
    free = np.setdiff1d(np.arange(ds.truth.shape[ds.axis]), annotated)
    return int(rng.choice(free)), "random"


def corrected_voxels(ds: Dataset, pred: np.ndarray, index: int) -> int:
    """Voxels the simulated user changes to turn the prediction on a slice into the truth."""
    return int(np.count_nonzero(np.take(pred, index, axis=ds.axis) != np.take(ds.truth, index, axis=ds.axis)))


def labels_for(ds: Dataset, annotated: list[int]) -> tuple[list[np.ndarray], dict[int, list[int]]]:
    # Annotated slices are explicit labeled slices, so a background-only slice counts too.
    return [sparse_from_truth(ds.truth, ds.axis, annotated)], {0: list(annotated)}


def run_strategy(ds: Dataset, args, seed: int, strategy: str, start: dict) -> dict:
    """Rounds of pick → annotate → retrain from the shared initial model."""
    annotated = [start["slice"]]
    labels, labeled = labels_for(ds, annotated)
    trainer = Trainer(
        [ds.image],
        labels,
        make_config(ds, args, seed),
        labeled_slices=labeled,
        class_names=ds.class_names,
        init=start["checkpoint"],
    )
    pred, entropy, dice = start["pred"], start["entropy"], [start["dice"]]
    rng = np.random.default_rng(seed)
    began = time.perf_counter()
    changed, reasons = [], []
    for round_index in range(1, args.rounds + 1):
        index, reason = pick(strategy, pred, entropy, ds, annotated, rng)
        # The user corrects the prediction shown on that slice rather than painting it from scratch.
        changed.append(corrected_voxels(ds, pred, index))
        reasons.append(reason)
        annotated.append(index)
        trainer.update_annotation(*labels_for(ds, annotated))
        trainer.train(args.steps)
        pred, entropy = predict(trainer)
        dice.append(unseen_dice(ds, pred, annotated))
        logger.info(
            "seed %d %-12s round %d: slice %3d (%s, %d voxels changed) -> Dice %.3f",
            seed,
            strategy,
            round_index,
            index,
            reason,
            changed[-1],
            dice[-1],
        )
    return {
        "seed": seed,
        "strategy": strategy,
        "slices": annotated,
        "reasons": reasons,
        "voxels_changed": changed,
        "dice": dice,
        "seconds": time.perf_counter() - began,
    }


def initial_model(ds: Dataset, args, seed: int) -> dict:
    """The one-slice model both strategies start from."""
    first = evenly_spaced_slices(ds.truth, ds.axis, 1)[0]
    labels, labeled = labels_for(ds, [first])
    trainer = Trainer(
        [ds.image], labels, make_config(ds, args, seed), labeled_slices=labeled, class_names=ds.class_names
    )
    trainer.train()
    pred, entropy = predict(trainer)
    dice = unseen_dice(ds, pred, [first])
    logger.info("seed %d initial model (slice %d, %d steps): Dice %.3f", seed, first, trainer.step, dice)
    return {"slice": first, "checkpoint": trainer.checkpoint(), "pred": pred, "entropy": entropy, "dice": dice}


def earlier_runs(path: Path, runs: list[dict]) -> list[dict]:
    """Runs of an earlier invocation in the same ``--out-dir`` that this one did not repeat."""
    if not path.is_file():
        return []
    done = {(r["seed"], r["strategy"]) for r in runs}
    return [r for r in json.loads(path.read_text())["runs"] if (r["seed"], r["strategy"]) not in done]


def summarize(runs: list[dict]) -> dict[str, dict[str, list[float]]]:
    """Mean and standard deviation of the Dice per round, per strategy (over seeds)."""
    summary = {}
    for strategy in STRATEGIES:
        chosen = [r for r in runs if r["strategy"] == strategy]
        if not chosen:
            continue
        curves = np.array([r["dice"] for r in chosen])
        summary[strategy] = {"mean": curves.mean(axis=0).tolist(), "std": curves.std(axis=0).tolist()}
        costs = [sum(r["voxels_changed"]) for r in chosen if "voxels_changed" in r]
        if costs:
            gains = [(r["dice"][-1] - r["dice"][0]) / max(sum(r["voxels_changed"]), 1) * 1000 for r in chosen]
            summary[strategy]["voxels_changed"] = {"mean": float(np.mean(costs)), "std": float(np.std(costs))}
            summary[strategy]["dice_per_1000_voxels"] = {"mean": float(np.mean(gains)), "std": float(np.std(gains))}
    return summary


def plot(summary: dict, ds: Dataset, args, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    colours = (
        "tab:red",
        "tab:blue",
        "tab:grey",
        "tab:green",
        "tab:orange",
        "tab:purple",
        "tab:brown",
        "black",
        "tab:olive",
    )
    for strategy, colour in zip(STRATEGIES, colours, strict=True):
        if strategy not in summary:
            continue
        mean, std = np.array(summary[strategy]["mean"]), np.array(summary[strategy]["std"])
        x = np.arange(1, mean.size + 1)
        ax.plot(x, mean, "o-", color=colour, label=f"{strategy} (mean ± sd, {len(args.seeds)} seeds)")
        ax.fill_between(x, mean - std, mean + std, color=colour, alpha=0.2)
    ax.set_xlabel("annotated slices")
    ax.set_ylabel("mean Dice on never-annotated slices")
    ax.set_title(f"{ds.name}: {args.method}, {args.steps} steps per round")
    ax.set_xticks(np.arange(1, args.rounds + 2))
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> None:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.threads:
        torch.set_num_threads(args.threads)
    ds = load_dataset(args.dataset)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    runs = []
    for seed in args.seeds:
        start = initial_model(ds, args, seed)
        runs += [run_strategy(ds, args, seed, strategy, start) for strategy in args.strategies]
    runs = earlier_runs(args.out_dir / f"active_{ds.name}.json", runs) + runs
    summary = summarize(runs)
    options = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    result = {
        "dataset": ds.name,
        "axis": ds.axis,
        "options": options,
        "summary": summary,
        "runs": runs,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
    }
    (args.out_dir / f"active_{ds.name}.json").write_text(json.dumps(result, indent=1))
    plot(summary, ds, args, args.out_dir / f"active_{ds.name}.png")
    for strategy, values in summary.items():
        cost = values.get("voxels_changed", {}).get("mean", float("nan"))
        logger.info(
            "%-12s Dice per round: %s; voxels changed %.0f",
            strategy,
            " ".join(f"{m:.3f}" for m in values["mean"]),
            cost,
        )


if __name__ == "__main__":
    main()

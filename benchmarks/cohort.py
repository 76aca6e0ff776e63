"""The cohort protocol (issue #22): paint k slices of one subject, segment every other subject.

For each cohort (``cohort_subjects.py``: Colin27 + AAL warped into ``--subjects`` synthetic
subjects, the demo's cardiac phantoms, and ``brains``: Colin27 painted beside the MNI152 template,
a real second brain) and each training seed:

1. paint ``k`` slices of the first subject (``--painted 2``: of the first two) from its truth,
   evenly spaced over the structures along its superior-inferior array axis, as
   ``sparse_slices.py`` does;
2. train each network method (``--methods``: ``action``, ``supervised``) on all subjects, the
   others as unlabeled volumes, and predict every subject;
3. the atlas route (``atlas`` in ``--methods``, SimpleITK, ``cohort_atlas.py``): register the
   painted subject to every other subject once (affine, then B-spline, Mattes mutual
   information) and carry over (a) its full truth, the route's upper bound, and (b) each
   network's 3D result on it, the best a user gets from that one volume;
4. score Dice (and HD95) per subject and class against the truth; the painted subject is scored
   on its unpainted slices only, as an upper reference;
5. rate every network prediction as ``napari-action predict`` rates a cohort
   (``napari_action/inference/quality.py``) and check the rating against the truth: Spearman's rho
   between quality score and Dice over the unpainted subjects, and whether the subject with the
   lowest Dice is among the first 3 of the list (worst first).

Results accumulate in ``--out-dir`` (``results.json``, ``results.md``). Full run, both cohorts
of 12 subjects, 3 seeds, the cpu budget (hours on 2 CPU cores; see ``docs/benchmarks.md``)::

    .venv/bin/python benchmarks/cohort.py --threads 2 --cache-dir bench-out/cohort-cache --out-dir bench-out/cohort

Smoke run (a few minutes; checks the plumbing, measures nothing)::

    .venv/bin/python benchmarks/cohort.py --subjects 4 --seeds 1337 --steps 5 --set steps_supervised_start=5 \\
        --reg-iterations 5,2 --threads 1 --out-dir bench-out/cohort-smoke

Extra dependencies: SimpleITK (atlas route), psutil.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from cohort_atlas import RegistrationSettings, register, set_itk_threads, vote, warp_labels
from cohort_results import add_run, load_runs, machine, quality_ranking, ranking_text, summary_table
from cohort_subjects import Cohort, Subject, load_cohort, reoriented_like
from peak_memory import PeakRss
from sparse_slices import add_training_options, network_config, read_run_lists, train_timed

from napari_action.config import BUDGETS, ENDING_RULES
from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.evaluation.metrics import dice_per_class, evaluate
from napari_action.inference.postprocess import trim_beyond_extents
from napari_action.inference.quality import QualityAccumulator, rate_cohort
from napari_action.io.geometry import voxel_volume_ml
from napari_action.training.trainer import Trainer

NETWORK_METHODS = ("action", "supervised")
ALL_METHODS = (*NETWORK_METHODS, "atlas")


# --------------------------------------------------------------------------- the cohort as the protocol sees it


class Protocol:
    """One cohort split into painted and unpainted subjects, with the painted slices and the slicing axis."""

    def __init__(self, cohort: Cohort, args):
        self.cohort = cohort
        subjects = cohort.subjects
        if args.orientation == "canonical":
            # The trainer slices every volume along one array axis; a pipeline that reorients its
            # files first (exact transposes and flips) gives the network one view of the anatomy.
            subjects = [reoriented_like(s, subjects[0]) for s in subjects]
        self.painted, self.others = subjects[: args.painted], subjects[args.painted :]
        # The training axis, in the first painted subject's voxel order (the trainer reads the others in it).
        self.axis = self.painted[0].axis
        # Each painted subject's axial slices along its own array axis, as a user paints them.
        self.slices = {s.name: evenly_spaced_slices(s.labels, s.axis, args.k) for s in self.painted}
        self.stored_orientation = {s.name: s.orientation for s in cohort.subjects}

    @property
    def subjects(self) -> list[Subject]:
        return self.painted + self.others

    def sparse_labels(self) -> list[np.ndarray | None]:
        """The painted slices from the truth; ``None``: an unlabeled volume."""
        painted = [sparse_from_truth(s.labels, s.axis, self.slices[s.name]) for s in self.painted]
        return painted + [None] * len(self.others)

    def score(self, subject: Subject, prediction: np.ndarray, surface: bool) -> dict:
        """Dice (and HD95) per class; a painted subject on its unpainted slices only."""
        excluded = self.slices.get(subject.name, [])
        if surface:
            dice, hd95 = self._evaluate(subject, prediction, excluded)
        else:
            dice, hd95 = self._dice_only(subject, prediction, excluded), None
        finite = [d for d in dice.values() if d is not None]
        return {
            "mean_dice": float(np.mean(finite)) if finite else None,
            "dice": dice,
            "mean_hd95_mm": hd95,
            "stored_orientation": self.stored_orientation[subject.name],
            "orientation": subject.orientation,
            "spacing_mm": [round(s, 3) for s in subject.spacing],
            "shape": list(subject.image.shape),
        }

    def _evaluate(self, subject: Subject, prediction: np.ndarray, excluded: list[int]) -> tuple[dict, float | None]:
        result = evaluate(
            prediction,
            subject.labels,
            subject.spacing,
            class_values=self.cohort.class_values,
            class_names=self.cohort.class_names,
            exclude_slices=excluded or None,
            axis=subject.axis if excluded else None,
        ).to_dict()
        return {row["name"]: row["dice"] for row in result["rows"]}, result["mean_hd95_mm"]

    def _dice_only(self, subject: Subject, prediction: np.ndarray, excluded: list[int]) -> dict:
        """Dice without surface distances (those take most of the scoring time on whole volumes)."""
        kept_prediction = np.delete(prediction, excluded, axis=subject.axis)
        kept_truth = np.delete(subject.labels, excluded, axis=subject.axis)
        dice = dice_per_class(kept_prediction, kept_truth, self.cohort.class_values)
        # evaluate()'s rule: a class absent from both is left out of the means (NaN, written None).
        return {self.cohort.class_names[v]: (None if np.isnan(d) else d) for v, d in dice.items()}


# --------------------------------------------------------------------------- networks


def train_and_predict(protocol: Protocol, method: str, args) -> tuple[dict[str, np.ndarray], dict]:
    """Train one network on every subject (the unpainted ones unlabeled) and predict each subject."""
    subjects = protocol.subjects
    config = network_config(SimpleNamespace(axis=protocol.axis), method, args)
    with PeakRss() as memory:
        start = time.perf_counter()
        trainer = Trainer(
            [s.image for s in subjects],
            protocol.sparse_labels(),
            config,
            labeled_slices={i: protocol.slices[s.name] for i, s in enumerate(protocol.painted)},
            class_names=protocol.cohort.class_names,
            spacings=[s.spacing for s in subjects],
            affines=[s.affine for s in subjects],
        )
        timing = {"setup_s": time.perf_counter() - start} | train_timed(trainer)
        predictor = trainer.predictor()
        predictions, predict_s, quality = {}, {}, {}
        for index, subject in enumerate(subjects):
            start = time.perf_counter()
            # A painted subject keeps its prior from the painted slices; the others the prior carried
            # onto them by registration (TrainConfig.unpainted_prior), if any; each structure within
            # the slices the painted propagation reaches, registered onto the unpainted ones.
            update = last_update(trainer.predict_volume(index))
            predictions[subject.name] = update.labels
            predict_s[subject.name] = time.perf_counter() - start
            # What napari-action predict and the widget record for each volume (not timed: it is not prediction).
            # Counted in the training voxel order (the trainer reads a subject stored otherwise turned), as predict.
            record = QualityAccumulator(predictor.class_values, predictor.axis, voxel_volume_ml(subject.affine))
            record.add_volume(
                trainer.turns.to_training(index, update.labels), trainer.turns.to_training(index, update.entropy)
            )
            quality[subject.name] = record.finish()
        carried = carried_maps(trainer, protocol)
        unfused = network_alone(trainer, predictor, protocol) if carried is not None else None
        other_ends = other_structure_ends(trainer, protocol)
    timing |= {"predict_s": predict_s, "peak_rss_delta_mb": memory.delta_mb, "config": config.to_dict()}
    timing["carried"], timing["unfused"], timing["other_ends"] = carried, unfused, other_ends
    return predictions, timing, quality


def other_structure_ends(trainer: Trainer, protocol: Protocol) -> dict[str, dict[str, np.ndarray]]:
    """Every subject predicted under the other ``structure_ends`` rules than the configured one (what it is
    measured against): the prediction with no structure ended, then each rule applied to it."""
    config = trainer.config
    shipped, config.structure_ends = config.structure_ends, "network"
    try:
        unended = {s.name: last_update(trainer.predict_volume(i)).labels for i, s in enumerate(protocol.subjects)}
    finally:
        config.structure_ends = shipped
    found = {"network": unended}
    for rule in (r for r in ENDING_RULES if r not in ("network", shipped)):
        found[rule] = {}
        for index, subject in enumerate(protocol.subjects):
            # The extents are in the training voxel order, the predictions in each subject's stored one.
            extents, turns = trainer.structure_extents(index), trainer.turns
            labels = turns.to_training(index, unended[subject.name]).copy()
            trim_beyond_extents(np.moveaxis(labels, protocol.axis, 0), extents, trainer.class_values, rule)
            found[rule][subject.name] = turns.to_stored(index, labels)
    return found


def network_alone(trainer: Trainer, predictor, protocol: Protocol) -> dict[str, np.ndarray]:
    """The unpainted subjects predicted without their carried prior mixed in: what the network itself learned."""
    turns = trainer.turns  # the network sees each subject in the training voxel order
    return {
        subject.name: turns.to_stored(
            index,
            predictor.predict(
                trainer.images[index].whole(), normalized=True, spacing=turns.spacing(index, subject.spacing)
            )[0],
        )
        for index, subject in enumerate(protocol.subjects)
        if subject not in protocol.painted
    }


def last_update(updates):
    """The final update of a whole-volume prediction (labels and entropy)."""
    for update in updates:
        if update.done:
            return update
    raise RuntimeError("prediction ended without a result")


def rate_subjects(protocol: Protocol, quality: dict) -> dict[str, dict]:
    """Each subject's quality score, flags and worst slice, rated as ``napari-action predict`` rates a cohort.

    Every subject is rated, the painted ones too, as a user predicting the whole cohort would; the
    raw record stays beside it so that other scores can be tried from ``results.json`` alone.
    """
    rated = rate_cohort(list(quality.items()), protocol.cohort.class_names)
    return {
        q.name: {
            "quality_score": q.score,
            "flags": list(q.flags),
            "worst_slice": q.worst_slice,
            "quality_stats": quality[q.name].to_dict(),
        }
        for q in rated
    }


def carried_maps(trainer: Trainer, protocol: Protocol) -> dict[str, np.ndarray] | None:
    """The prior carried onto each unpainted subject (the product's atlas route, its preview there); label values."""
    maps = {}
    for index, subject in enumerate(protocol.subjects):
        prior = trainer.prior(index)
        if subject in protocol.painted or prior is None:
            continue
        # The prior lies in the training voxel order; the map goes back to the subject's stored one.
        classes = np.stack([prior.classes_at(z) for z in range(trainer.images[index].shape[protocol.axis])])
        values = np.where(classes >= 0, trainer.class_values[np.clip(classes, 0, None)], 0)
        stored = trainer.turns.to_stored(index, np.moveaxis(values, 0, protocol.axis))
        maps[subject.name] = stored.astype(subject.labels.dtype)
    return maps or None


# --------------------------------------------------------------------------- atlas route


class AtlasRoute:
    """Registrations of every painted subject to every other subject, computed once and reused for each seed."""

    def __init__(self, protocol: Protocol, settings: RegistrationSettings):
        self.protocol = protocol
        self.transforms: dict[tuple[str, str], object] = {}
        self.seconds: dict[str, float] = {}
        for target in protocol.others:
            start = time.perf_counter()
            for atlas in protocol.painted:
                transform, _ = register(target.image, target.affine, atlas.image, atlas.affine, settings)
                self.transforms[atlas.name, target.name] = transform
            self.seconds[target.name] = time.perf_counter() - start
            print(f"  registered to {target.name} in {self.seconds[target.name]:.0f} s", flush=True)

    def carry(self, atlas_labels: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], float]:
        """Each painted subject's 3D labels on every other subject (a vote when several are painted)."""
        start = time.perf_counter()
        carried = {}
        for target in self.protocol.others:
            maps = [
                warp_labels(
                    atlas_labels[a.name],
                    a.affine,
                    self.transforms[a.name, target.name],
                    target.labels.shape,
                    target.affine,
                )
                for a in self.protocol.painted
            ]
            carried[target.name] = vote(maps)
        return carried, time.perf_counter() - start


# --------------------------------------------------------------------------- records


def make_record(protocol: Protocol, method: str, seed: int | None, scores: dict, timing: dict, args) -> dict:
    dice = [s["mean_dice"] for s in scores.values() if s["mean_dice"] is not None]
    hd95 = [s["mean_hd95_mm"] for s in scores.values() if s["mean_hd95_mm"] is not None]
    return {
        "machine": machine(),
        "cohort": protocol.cohort.name,
        "n_subjects": len(protocol.subjects),
        "cohort_seed": args.cohort_seed,
        "orientation": args.orientation,
        "painted": [s.name for s in protocol.painted],
        "k": args.k,
        "axis": protocol.axis,
        "slices": protocol.slices,
        "method": method,
        "seed": seed,
        "mean_dice": float(np.mean(dice)) if dice else None,
        "mean_hd95_mm": float(np.mean(hd95)) if hd95 else None,
        "per_subject": scores,
        "timing": timing,
        "registration": dataclasses.asdict(args.registration) if method.startswith("atlas") else None,
    }


def save(record: dict, args) -> None:
    add_run(args.out_dir, record)
    ranking = record.get("quality_ranking")
    rated = f", quality {ranking_text(ranking)}" if ranking else ""
    print(
        f"  {record['method']} seed {record['seed']}: Dice {record['mean_dice']:.3f}{rated}, "
        f"{record['timing']['total_s']:.0f} s",
        flush=True,
    )


def run_network(protocol: Protocol, method: str, seed: int, atlas: AtlasRoute | None, args) -> None:
    """One network: its scores on the unpainted subjects, on the painted one, and carried by the atlas route."""
    predictions, timing, quality = train_and_predict(protocol, method, args)
    carried = timing.pop("carried")
    if carried is not None and not getattr(args, "carried_saved", False):
        # The same for every network and seed: the painted subject's propagation registered, no training.
        scores = {s.name: protocol.score(s, carried[s.name], args.surface) for s in protocol.others}
        save(make_record(protocol, "carried:propagation", None, scores, {"total_s": timing["setup_s"]}, args), args)
        args.carried_saved = True
    for rule, labels in timing.pop("other_ends").items():
        for group, suffix in ((protocol.others, ""), (protocol.painted, ":painted")):
            scores = {s.name: protocol.score(s, labels[s.name], args.surface) for s in group}
            name = f"{method}:ends-{rule}{suffix}"
            save(make_record(protocol, name, seed, scores, {"total_s": timing["train_s"]}, args), args)
    unfused = timing.pop("unfused")
    if unfused is not None:
        scores = {s.name: protocol.score(s, unfused[s.name], args.surface) for s in protocol.others}
        save(make_record(protocol, f"{method}:unfused", seed, scores, {"total_s": timing["train_s"]}, args), args)
    painted_predict_s = sum(timing["predict_s"][s.name] for s in protocol.painted)
    others_predict_s = sum(timing["predict_s"][s.name] for s in protocol.others)
    own = timing["setup_s"] + timing["train_s"]
    rated = rate_subjects(protocol, quality)
    others = {s.name: protocol.score(s, predictions[s.name], args.surface) | rated[s.name] for s in protocol.others}
    record = make_record(protocol, method, seed, others, timing | {"total_s": own + others_predict_s}, args)
    save(record | {"quality_ranking": quality_ranking(others)}, args)
    painted = {s.name: protocol.score(s, predictions[s.name], args.surface) for s in protocol.painted}
    painted_timing = {"total_s": own + painted_predict_s}
    save(make_record(protocol, f"{method}:painted", seed, painted, painted_timing, args), args)
    if atlas is None:
        return
    carried, warp_s = atlas.carry({s.name: predictions[s.name] for s in protocol.painted})
    scores = {s.name: protocol.score(s, carried[s.name], args.surface) for s in protocol.others}
    registration_s = sum(atlas.seconds.values())
    atlas_timing = {"network_s": own + painted_predict_s, "registration_s": registration_s, "warp_s": warp_s}
    atlas_timing["total_s"] = own + painted_predict_s + registration_s + warp_s
    save(make_record(protocol, f"atlas:{method}", seed, scores, atlas_timing, args), args)


def run_atlas_truth(protocol: Protocol, args) -> AtlasRoute:
    atlas = AtlasRoute(protocol, args.registration)
    carried, warp_s = atlas.carry({s.name: s.labels for s in protocol.painted})
    scores = {s.name: protocol.score(s, carried[s.name], args.surface) for s in protocol.others}
    timing = {"registration_s": atlas.seconds, "warp_s": warp_s, "total_s": sum(atlas.seconds.values()) + warp_s}
    save(make_record(protocol, "atlas:truth", None, scores, timing, args), args)
    return atlas


def run_cohort(name: str, args) -> None:
    start = time.perf_counter()
    cohort = load_cohort(name, args.subjects, args.cohort_seed, args.cache_dir)
    protocol = Protocol(cohort, args)
    print(
        f"{name}: {len(cohort.subjects)} subjects made in {time.perf_counter() - start:.0f} s; painted "
        f"{protocol.slices} along axes {[s.axis for s in protocol.painted]} (training axis {protocol.axis})",
        flush=True,
    )
    atlas = run_atlas_truth(protocol, args) if "atlas" in args.methods else None
    args.carried_saved = False
    for seed in args.seeds:
        args.seed = seed
        for method in (m for m in args.methods if m in NETWORK_METHODS):
            run_network(protocol, method, seed, atlas, args)


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", default="colin27,phantom", help="comma-separated: colin27, phantom, brains")
    parser.add_argument("--subjects", type=int, default=12, help="subjects per cohort (painted ones included)")
    parser.add_argument("--painted", type=int, default=1, choices=(1, 2), help="painted subjects")
    parser.add_argument("--k", type=int, default=3, help="painted slices per painted subject")
    parser.add_argument("--methods", default="action,supervised,atlas", help=f"comma-separated from {ALL_METHODS}")
    parser.add_argument("--seeds", default="1337,1,2", help="training seeds")
    parser.add_argument("--cohort-seed", type=int, default=0, help="seed of the synthetic subjects")
    parser.add_argument(
        "--orientation",
        choices=("canonical", "stored"),
        default="canonical",
        help="canonical: every subject transposed/flipped into the first subject's axis codes (exact); "
        "stored: the arrays as generated, in their own storage orientations",
    )
    parser.add_argument("--budget", choices=BUDGETS, default="cpu")
    add_training_options(parser)
    parser.add_argument(
        "--deformable", choices=("bspline", "none"), default="bspline", help="atlas route's second stage"
    )
    parser.add_argument("--reg-iterations", default=None, help="affine,bspline iterations (default 200,50)")
    parser.add_argument("--no-surface", dest="surface", action="store_false", help="Dice only, no HD95 (faster)")
    parser.add_argument("--threads", type=int, default=2, help="torch and SimpleITK threads")
    parser.add_argument("--cache-dir", type=Path, default=None, help="keep the subjects as NIfTI here and reuse them")
    parser.add_argument("--out-dir", type=Path, default=Path("bench-out/cohort"))
    args = parser.parse_args(argv)
    args.cohorts = args.cohorts.split(",")
    read_run_lists(parser, args, ALL_METHODS)
    if args.subjects <= args.painted:
        parser.error("--subjects must exceed --painted: someone has to be predicted")
    args.registration = registration_settings(args)
    return args


def registration_settings(args: argparse.Namespace) -> RegistrationSettings:
    affine, bspline = (200, 50) if args.reg_iterations is None else map(int, args.reg_iterations.split(","))
    return RegistrationSettings(affine_iterations=affine, bspline_iterations=bspline, deformable=args.deformable)


def set_threads(threads: int, need_itk: bool) -> None:
    torch.set_num_threads(threads)
    if need_itk:
        set_itk_threads(threads)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    set_threads(args.threads, "atlas" in args.methods)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    for name in args.cohorts:
        run_cohort(name, args)
    print(summary_table(load_runs(args.out_dir)))
    print(f"done in {time.perf_counter() - start:.0f} s; tables in {args.out_dir / 'results.md'}")


if __name__ == "__main__":
    main()

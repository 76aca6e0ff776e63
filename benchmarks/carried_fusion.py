"""What a 3D result on the painted brain adds to the network's prediction on a second brain (issue #22).

The ``brains`` cohort of ``cohort.py`` (Colin27 painted on 3 slices, the MNI152 template opened
unlabeled): ACTION is trained once per seed, then the template is predicted with a prior carried
from Colin27 by napari-action's own registration (``data/carried_prior.py``) and mixed in at several
shares (``fuse_prior``: the carried class gets ``share × confidence`` of the vote). Three sources are
carried: ACTION's own 3D result on Colin27 (its confidence the softmax maximum), the propagation of
the painted slices (what ``unpainted_prior = registration`` carries today), and Colin27's full truth
(the bound). Mean Dice on the template per source and share, next to the network alone::

    cd benchmarks
    ../.venv/bin/python carried_fusion.py --seed 1337 --out ../bench-out/carried-fusion-s1337.json

The trained model is kept beside ``--out`` (``.pt``) and reused on a second call.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import torch
from cohort import Protocol, last_update, parse_args
from cohort_subjects import load_cohort
from sparse_slices import network_config

from napari_action.data.carried_prior import CarriedPrior, CarrySource
from napari_action.training.trainer import Trainer

SHARES = (1.0, 0.6, 0.4, 0.25)


class MapPrior:
    """A class-id map and its confidence, slicing axis first, read as a prior of every slice."""

    def __init__(self, classes: np.ndarray, confidence: np.ndarray):
        self.classes, self.confidence = classes, confidence
        self.covered = np.ones(classes.shape[0], bool)
        self.distance = np.zeros(classes.shape[0], np.int64)

    def classes_at(self, z: int) -> np.ndarray:
        return self.classes[z]

    def confidence_at(self, z: int) -> np.ndarray:
        return self.confidence[z]


def trained(protocol: Protocol, args, model: Path) -> Trainer:
    """ACTION trained on both brains (or the model of an earlier call, loaded without training)."""
    subjects = protocol.subjects
    trainer = Trainer(
        [s.image for s in subjects],
        protocol.sparse_labels(),
        network_config(SimpleNamespace(axis=protocol.axis), "action", args),
        labeled_slices={i: protocol.slices[s.name] for i, s in enumerate(protocol.painted)},
        class_names=protocol.cohort.class_names,
        spacings=[s.spacing for s in subjects],
        affines=[s.affine for s in subjects],
        init=model if model.exists() else None,
    )
    if not model.exists():
        start = time.perf_counter()
        trainer.train()
        print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
        trainer.save_checkpoint(model)
    return trainer


def sources(trainer: Trainer, painted) -> dict[str, object]:
    """The three priors carried from the painted brain, slicing axis first."""
    axis, class_ids = trainer.axis, trainer.annotation.to_class_ids
    update = last_update(trainer.predict_volume(0))
    truth = np.moveaxis(class_ids(painted.labels), axis, 0)
    return {
        "action": MapPrior(np.moveaxis(class_ids(update.labels), axis, 0), np.moveaxis(update.confidence, axis, 0)),
        "propagation": trainer.prior(0),
        "truth": MapPrior(truth, np.ones(truth.shape, np.float32)),
    }, update.labels


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--out", type=Path, required=True)
    own = parser.parse_args()
    torch.set_num_threads(1)
    args = parse_args(["--cohorts", "brains", "--threads", "1", "--methods", "action", "--seeds", str(own.seed)])
    args.seed = own.seed
    protocol = Protocol(load_cohort("brains", args.subjects), args)
    painted, target = protocol.subjects
    trainer = trained(protocol, args, own.out.with_suffix(".pt"))
    found: dict[str, float] = {"seed": own.seed}

    def score(name: str, labels: np.ndarray, subject=target) -> None:
        found[name] = protocol.score(subject, labels, False)["mean_dice"]
        print(f"{name}: {found[name]:.3f}", flush=True)
        own.out.write_text(json.dumps(found, indent=1))

    extents = trainer.structure_extents(1)
    predictor, whole = trainer.predictor(), trainer.images[1].whole()
    score("network", predictor.predict(whole, normalized=True, spacing=target.spacing, extents=extents)[0])
    carried_sources, painted_labels = sources(trainer, painted)
    score("painted_self", painted_labels, painted)
    carried = None
    for name, prior in carried_sources.items():
        source = CarrySource(trainer.images[0], painted.affine, prior, trainer.axis)
        for share in SHARES:
            # The same two images every time: register once, and carry every source and share through it.
            carried = CarriedPrior(
                trainer.images[1],
                target.affine,
                trainer.axis,
                [source],
                len(trainer.class_values),
                confidence_scale=share,
                reuse=carried,
            )
            labels, _ = predictor.predict(
                whole, normalized=True, spacing=target.spacing, extents=extents, prior=carried
            )
            score(f"fused_{name}_{share}", labels)


if __name__ == "__main__":
    main()

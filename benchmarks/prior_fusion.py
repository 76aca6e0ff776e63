"""Predict a saved sparse-slice model again with other uses of the prior at prediction time.

The fusion with the prior (``predict_prior_decay_mm``) and how a structure is
ended beyond its propagated slices (``structure_ends``) change prediction only,
so a model saved by ``sparse_slices.py --save-models`` is scored again under
each without training again::

    .venv/bin/python benchmarks/prior_fusion.py bench-out/c27/models/colin27_k3_action_s1337.pt \\
        --shift 0 --decays 0,1,3,6,12 --ends network,taper,cut

The painted slices are rebuilt from the protocol (``--k``, ``--shift``); the
prior comes from the checkpoint's own configuration (its ``prior_source``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from sparse_slices import by_distance, load_dataset, score  # the sibling benchmark (run as a script)

from napari_action.data.samples import evenly_spaced_slices, sparse_from_truth
from napari_action.io.checkpoint import load_checkpoint
from napari_action.training.trainer import Trainer


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--dataset", default="colin27")
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--shift", type=int, default=0)
    parser.add_argument("--decays", default="0,1,3,6,12", help="comma-separated decays in mm (0: no fusion)")
    parser.add_argument("--ends", default="taper", help="comma-separated structure_ends rules: taper, cut, network")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    ds = load_dataset(args.dataset)
    n = ds.truth.shape[ds.axis]
    slices = [min(max(s + args.shift, 0), n - 1) for s in evenly_spaced_slices(ds.truth, ds.axis, args.k)]
    checkpoint = load_checkpoint(args.model)
    sparse = sparse_from_truth(ds.truth, ds.axis, slices)
    trainer = Trainer(
        [ds.image],
        [sparse],
        checkpoint.config,
        labeled_slices={0: slices},
        class_names=ds.class_names,
        spacings=[ds.spacing],
        init=checkpoint,
    )
    predictor, prior = trainer.predictor(), trainer.prior(0)
    for decay in (float(x) for x in args.decays.split(",")):
        for ends in args.ends.split(","):
            predictor.prior_decay_mm = decay
            predictor.structure_ends = ends
            pred = predictor.predict(trainer.volumes[0], normalized=True, prior=prior, spacing=ds.spacing)[0]
            result = score(ds, pred, slices)
            classes = " ".join(f"{row['dice']:.3f}" for row in result["rows"])
            bands = {band: None if v is None else round(v, 2) for band, v in by_distance(ds, pred, slices).items()}
            print(  # noqa: T201
                f"{args.model.name} decay {decay:g} mm, ends {ends}: Dice {result['mean_dice']:.3f} "
                f"(classes {classes}) by distance {bands}",
                flush=True,
            )


if __name__ == "__main__":
    main()

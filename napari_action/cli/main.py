"""Command line: ``napari-action train | predict | evaluate | demo``.

Everything here is a thin shell over the core, so what the command line does
the napari widget does too, and vice versa.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

from napari_action.config import BUDGETS, METHODS, TrainConfig

logger = logging.getLogger("napari_action")


def _int_list(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="napari-action",
        description="ACTION semi-supervised segmentation from a few painted slices.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", required=True)

    train = sub.add_parser("train", help="train a model from sparse labels")
    train.add_argument(
        "--image",
        action="append",
        required=True,
        type=Path,
        help="NIfTI image; repeat for several. Images beyond the labels are unlabeled data.",
    )
    train.add_argument(
        "--labels", action="append", default=[], type=Path, help="sparse labels of the k-th --image (0 = not painted)"
    )
    train.add_argument("--axis", type=int, default=None, help="slicing axis (default: inferred)")
    train.add_argument(
        "--labeled-slices",
        type=_int_list,
        default=None,
        help="extra slices of the first image that count as labeled (truly background)",
    )
    train.add_argument("--method", choices=METHODS, default="action")
    train.add_argument("--budget", choices=BUDGETS, default="cpu")
    train.add_argument("--steps", type=int, default=None, help="length of the final stage (stage iii)")
    train.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 or mps")
    train.add_argument("--seed", type=int, default=1337)
    train.add_argument("--out", required=True, type=Path, help="checkpoint file to write (.pt)")

    predict = sub.add_parser("predict", help="segment images with a trained model")
    predict.add_argument("--model", required=True, type=Path)
    predict.add_argument("--image", action="append", required=True, type=Path)
    predict.add_argument("--out-dir", required=True, type=Path)
    predict.add_argument("--device", default="auto")
    predict.add_argument("--tta", action="store_true", help="average over flips (slower, smoother)")
    predict.add_argument("--overwrite", action="store_true", help="replace existing output files")
    predict.add_argument(
        "--largest-components",
        type=int,
        default=0,
        metavar="N",
        help="keep only the N largest 3D pieces of each label (2 for left+right structures)",
    )

    evaluate = sub.add_parser("evaluate", help="Dice, HD95 and ASD (mm) of a prediction")
    evaluate.add_argument("--pred", required=True, type=Path)
    evaluate.add_argument("--truth", required=True, type=Path)
    evaluate.add_argument(
        "--exclude-slices", type=_int_list, default=None, help="slices left out of the scores (e.g. the annotated ones)"
    )
    evaluate.add_argument("--axis", type=int, default=None, help="axis of --exclude-slices")
    evaluate.add_argument("--json", type=Path, default=None, help="also write the scores as JSON")

    demo = sub.add_parser("demo", help="the whole loop on built-in sample data, headless")
    demo.add_argument("--out-dir", type=Path, default=Path("napari-action-demo"))
    demo.add_argument("--steps", type=int, default=None, help="stage-iii steps (default: the cpu preset's)")
    demo.add_argument(
        "--warmup", type=int, default=None, help="steps of each warm-up stage (i and ii; default: the cpu preset's)"
    )
    demo.add_argument("--slices", type=int, default=3, help="number of painted slices")
    demo.add_argument("--method", choices=METHODS, default="action")
    demo.add_argument("--device", default="auto")
    demo.add_argument("--seed", type=int, default=1337)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-action`` command."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    from napari_action.cli import commands

    handlers = {
        "train": commands.train,
        "predict": commands.predict,
        "evaluate": commands.evaluate,
        "demo": commands.demo,
    }
    try:
        return handlers[args.command](args)
    except (ValueError, OSError) as error:
        print(f"napari-action {args.command}: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"napari-action {args.command}: interrupted", file=sys.stderr)
        return 130


def config_from_args(args: argparse.Namespace, **extra) -> TrainConfig:
    """The training config the command-line options describe."""
    overrides = {"method": args.method, "device": args.device, "seed": args.seed, **extra}
    if getattr(args, "axis", None) is not None:
        overrides["axis"] = args.axis
    if getattr(args, "steps", None) is not None:
        overrides["steps_stage3"] = args.steps
    return TrainConfig.preset(getattr(args, "budget", "cpu"), **overrides)


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

"""Command-line options shared by several ``napari-action`` sub-commands."""

from __future__ import annotations

import argparse
from typing import Any

from napari_action.config import TrainConfig


def int_list(text: str) -> list[int]:
    """Parse ``"10,40"`` into ``[10, 40]`` (an ``argparse`` type)."""
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def config_from_args(args: argparse.Namespace, **extra: Any) -> TrainConfig:
    """The training config that the command-line options describe.

    Parameters
    ----------
    args : argparse.Namespace
        Parsed options; ``method``, ``device`` and ``seed`` are required, ``axis``,
        ``steps``, ``threads`` and ``budget`` (default ``"cpu"``) are used where the command has them.
    **extra
        Further :class:`~napari_action.config.TrainConfig` overrides.

    Returns
    -------
    TrainConfig
        The budget's preset with the overrides applied.
    """
    overrides = {"method": args.method, "device": args.device, "seed": args.seed, **extra}
    if getattr(args, "axis", None) is not None:
        overrides["axis"] = args.axis
    if getattr(args, "steps", None) is not None:
        overrides["steps_stage3"] = args.steps
    if getattr(args, "threads", None) is not None:
        overrides["num_threads"] = args.threads
    return TrainConfig.preset(getattr(args, "budget", "cpu"), **overrides)


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads (two trainings sharing the cores each slow down several-fold)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: torch's choice, usually all cores)",
    )


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (an ``argparse`` type)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value

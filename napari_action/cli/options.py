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
        ``steps`` and ``budget`` (default ``"cpu"``) are used where the command has them.
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
    return TrainConfig.preset(getattr(args, "budget", "cpu"), **overrides)

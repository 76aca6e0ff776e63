"""Command-line options shared by several ``napari-action`` sub-commands."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np

from napari_action.config import STRUCTURE_ENDS, TrainConfig
from napari_action.io.nifti import NonFiniteVoxelsError, load_volume
from napari_action.io.volume_meta import VolumeMeta


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
        Parsed options; ``method``, ``device`` and ``seed`` are required, ``axis``, ``steps``,
        ``warmup``, ``supervised_start``, ``threads``, ``prior``, ``unpainted_prior``, ``structure_ends``, ``precision``
        and ``budget`` (default ``"cpu"``) are used where the command has them.
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
    if getattr(args, "warmup", None) is not None:
        overrides["steps_stage1"] = overrides["steps_stage2"] = args.warmup
    if getattr(args, "supervised_start", None) is not None:
        overrides["steps_supervised_start"] = args.supervised_start
    if getattr(args, "threads", None) is not None:
        overrides["num_threads"] = args.threads
    if getattr(args, "prior", None) is not None:
        overrides["prior_source"] = args.prior
    if getattr(args, "unpainted_prior", None) is not None:
        overrides["unpainted_prior"] = args.unpainted_prior
    if getattr(args, "structure_ends", None) is not None:
        overrides["structure_ends"] = args.structure_ends
    if getattr(args, "precision", None) is not None:
        overrides["amp"] = overrides["cpu_bfloat16"] = PRECISIONS[args.precision]
    return TrainConfig.preset(getattr(args, "budget", "cpu"), **overrides)


def add_schedule_options(
    parser: argparse.ArgumentParser,
    budget: str = "the budget's",
    steps: int | None = None,
    warmup: int | None = None,
    supervised_start: int | None = None,
    images: str = "--image",
) -> None:
    """``--steps N`` (the final stage), ``--warmup N`` (each of ACTION's two warm-up stages) and
    ``--supervised-start N`` (plain supervised steps before them).

    ``steps``, ``warmup`` and ``supervised_start`` are the command's own defaults (None: the budget's, which
    ``budget`` names); ``images`` is what the command calls its volumes.
    """
    cpu = TrainConfig.preset("cpu") if steps is None else TrainConfig.preset("cpu", steps_stage3=steps)
    parser.add_argument(
        "--steps",
        type=positive_int,
        default=steps,
        metavar="N",
        help=f"steps of the final stage (ACTION's stage iii; default: {budget if steps is None else steps}); "
        f"the supervised start and the warm-ups come on top; {cpu.cohort_lengthening_text(images)}",
    )
    parser.add_argument(
        "--warmup",
        type=non_negative_int,
        default=warmup,
        metavar="N",
        help="steps of each ACTION warm-up stage, i and ii "
        f"(0 skips them; default: {budget if warmup is None else warmup})",
    )
    parser.add_argument(
        "--supervised-start",
        type=non_negative_int,
        default=supervised_start,
        metavar="N",
        help="plain supervised steps before ACTION's stages "
        f"(default: {budget if supervised_start is None else supervised_start}); the cpu preset runs "
        f"{TrainConfig.preset('cpu').steps_supervised_start} in place of the two warm-ups, so that the "
        "network draws the painted structures sooner",
    )


def add_structure_ends_option(parser: argparse.ArgumentParser) -> None:
    """``--structure-ends auto|taper|cut|network``: how prediction ends a structure past its propagated slices."""
    parser.add_argument(
        "--structure-ends",
        choices=STRUCTURE_ENDS,
        default=None,
        help="past the last slice the painted labels are propagated to (registered, on unpainted images): "
        "auto (default) is cut where the painted images' slices are 3 or more times thicker than their pixels, "
        "taper otherwise; taper keeps a predicted structure while it narrows and ends it where it grows again; cut "
        "ends it there (structures about as long as wide, e.g. the heart); network keeps what the network "
        "predicts (structures far wider than their painted outline, e.g. vertebrae on sagittal slices)",
    )


#: ``--precision`` choices: mixed precision on CUDA and on a CPU (``TrainConfig.amp``, ``cpu_bfloat16``).
PRECISIONS = {"float32": False, "bfloat16": True}


def add_precision_option(parser: argparse.ArgumentParser) -> None:
    """``--precision float32|bfloat16``: the arithmetic of training (and of its predictions)."""
    parser.add_argument(
        "--precision",
        choices=tuple(PRECISIONS),
        default=None,
        help="float32 or bfloat16; by default bfloat16 on a CPU that computes it natively (AVX512-BF16, AMX: "
        "about 1.5x faster steps at the same Dice), float32 on other CPUs (bfloat16 is emulated there, and "
        "slower) and on GPUs",
    )


def add_threads_option(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: torch's CPU threads (two trainings sharing the cores each slow down several-fold)."""
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=None,
        metavar="N",
        help="CPU threads for torch (default: every core this process may use: its CPU affinity, held to a "
        "container's CPU quota and to SLURM_CPUS_PER_TASK)",
    )


#: What a command-line user can do about NaN or infinite voxels in an image.
NAN_TO_ZERO_ADVICE = "Fix the file, or pass --nan-to-zero to replace them by 0."


def add_nan_to_zero_option(parser: argparse.ArgumentParser) -> None:
    """``--nan-to-zero``: replace NaN and infinite voxels of the images by 0 instead of stopping."""
    parser.add_argument(
        "--nan-to-zero",
        action="store_true",
        help="replace NaN and infinite voxels of the images by 0 (default: stop and name the file)",
    )


def load_image(path: Path, *, nan_to_zero: bool) -> tuple[np.ndarray, VolumeMeta]:
    """Load an image volume; its NaN advice names ``--nan-to-zero``, the remedy a command-line user has.

    Parameters
    ----------
    path : pathlib.Path
        A NIfTI image.
    nan_to_zero : bool
        Replace non-finite voxels by 0 (with a logged warning) instead of refusing the file.

    Returns
    -------
    tuple of numpy.ndarray and VolumeMeta
        As :func:`~napari_action.io.nifti.load_volume`.
    """
    try:
        return load_volume(path, nan_policy="zero" if nan_to_zero else "raise")
    except NonFiniteVoxelsError as error:
        raise error.with_advice(NAN_TO_ZERO_ADVICE) from None


#: The largest seed torch's generator takes (numpy's takes any integer >= 0).
LARGEST_SEED = 2**64 - 1


def add_seed_option(parser: argparse.ArgumentParser) -> None:
    """``--seed N``: the seed of every random generator of training, checked here for what they accept."""
    parser.add_argument("--seed", type=seed_int, default=1337, metavar="N", help="random seed (default: 1337)")


def seed_int(text: str) -> int:
    """Parse a seed, 0 to :data:`LARGEST_SEED` (an ``argparse`` type)."""
    value = _int_at_least(text, 0)
    if value > LARGEST_SEED:
        raise argparse.ArgumentTypeError(f"must be at most {LARGEST_SEED}, got {value}")
    return value


def positive_int(text: str) -> int:
    """Parse an integer >= 1 (an ``argparse`` type)."""
    return _int_at_least(text, 1)


def non_negative_int(text: str) -> int:
    """Parse an integer >= 0 (an ``argparse`` type)."""
    return _int_at_least(text, 0)


def _int_at_least(text: str, lowest: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < lowest:
        raise argparse.ArgumentTypeError(f"must be at least {lowest}, got {value}")
    return value

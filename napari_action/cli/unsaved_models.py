"""Where ``train`` keeps a trained model that ``--out`` cannot take: beside it when training was interrupted, else
in a folder of the user's (``~/.napari-action/unsaved-models/``, then the system's temporary folder).

Training can run for hours; a full disk, a folder removed meanwhile, another job writing the same ``--out`` or
Ctrl-C must not lose the model with the process. Every message says where the model is and what to do with it.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from napari_action.io.atomic import make_folder_for
from napari_action.io.errors import describe_error


def save_trained_model(save: Callable[[Path, bool], Path], args: argparse.Namespace) -> Path:
    """``save(--out, --overwrite)``; if that fails, the model goes to a folder of the user's, and the error says where.

    The disk of --out can fill, or its folder be removed or locked, while the model trains: the error alone
    ended the process and the trained model, minutes or hours of work, with it.

    Raises
    ------
    OSError
        --out could not be written; its message ends with where the model was saved instead (or that it
        could be saved nowhere).
    """
    try:
        return save(args.out, args.overwrite)
    except FileExistsError as error:
        # Checked before training: another job with the same --out finished first. Its model stays; the
        # writer's own words asked for ``overwrite=True``, which the command line does not have.
        written = f"{args.out} was written by another process while this model trained (two jobs with the same --out?)"
        raise FileExistsError(
            f"{written}; it is left as it is. {keep_elsewhere(save, args.out, taken=True)}"
        ) from error
    except OSError as error:
        raise OSError(f"{describe_error(error, args.out)} {keep_elsewhere(save, args.out)}") from error


def keep_interrupted(save: Callable[[Path, bool], Path], step: int, first_step: int, args: argparse.Namespace) -> str:
    """``save`` the model of a run stopped at ``step`` beside ``--out`` (never over it); say where and what to do.

    A batch job that reached its time limit lost hours of training with it. The weights are whole between
    any two Python statements (a signal never lands inside a tensor operation), so the model as it was at
    the interruption predicts, and ``--init`` trains on from it.
    """
    if step == first_step:  # stopped before its first step (while propagating the labels): nothing new
        return str(args.interrupted)
    out = Path(args.out)
    target = out.with_name(f"{out.stem}-interrupted-step{step}{out.suffix or '.pt'}")
    stopped = f"stopped at step {step}"
    try:
        kept = save(target, False)
    except OSError as error:
        return f"{stopped} ({describe_error(error, target)}). {keep_elsewhere(save, target, taken=True)}"
    return (
        f"{stopped}: the model as it was then is kept in {kept} (--out is as it was); "
        f"predict with it, or train on from it with --init {kept}"
    )


def keep_elsewhere(save: Callable[[Path, bool], Path], out: Path, *, taken: bool = False) -> str:
    """Save the model in the first of :func:`fallback_folders` that takes it; say where (or that none did).

    ``taken``: ``out`` holds another model, so the user is not told to move this one there.
    """
    failures = []
    for folder in fallback_folders():
        target = folder / f"{out.stem}-{time.strftime('%Y%m%d-%H%M%S')}{out.suffix or '.pt'}"
        try:
            make_folder_for(target)
            kept = save(target, False)
        except OSError as failure:
            failures.append(f"{folder}: {describe_error(failure)}")
            continue
        where = "wherever you want it" if taken else f"{out} (or wherever you want it)"
        return f"The trained model is kept in {kept} instead: move it to {where}."
    return f"The trained model could not be saved anywhere else either ({'; '.join(failures)})."


def fallback_folders() -> list[Path]:
    """Where a model that --out could not take is saved: the user's napari-action folder, else the temporary one."""
    return [Path.home() / ".napari-action" / "unsaved-models", Path(tempfile.gettempdir())]

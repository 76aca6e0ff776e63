"""What the trainer does when a step fails, in the user's words.

A diverging loss puts the last good weights back and ends training with an
error that says what to change; a full accelerator halves the batches and
training carries on, until a batch is a single crop
(the mechanics live in :mod:`napari_action.training.safeguards`).
"""

from __future__ import annotations

import logging

import torch

from napari_action.config import TrainConfig
from napari_action.runtime import device_label, release_cached_memory
from napari_action.training.safeguards import TrainingDivergedError, WeightSnapshot, describe_batches, halve_batches

logger = logging.getLogger(__name__)

__all__ = ["diverged_error", "smaller_batches"]


def diverged_error(
    snapshot: WeightSnapshot, nets: torch.nn.Module, *, loss: float, step: int, stage: str
) -> TrainingDivergedError:
    """Put the last good weights back into ``nets``; return the error that stops training.

    Parameters
    ----------
    snapshot : WeightSnapshot
        The weights of the last step whose loss was finite.
    nets : torch.nn.Module
        The networks to restore.
    loss : float
        The non-finite loss.
    step : int
        Steps completed before the failing one.
    stage : str
        Name of the stage the failing step belongs to.
    """
    if snapshot.restore(nets):
        kept = f"the model is back to its weights after step {snapshot.step}, ready to predict or save"
    else:
        kept = "no earlier weights fit the current classes, so the model is not usable"
    logger.error("loss %s at step %d (%s); %s", loss, step, stage, kept)
    return TrainingDivergedError(
        f"Training stopped: the loss became {loss} at step {step + 1} ({stage}); {kept}. "
        "Lower the learning rate, or check the image for extreme values."
    )


def smaller_batches(config: TrainConfig, device: torch.device, error: BaseException) -> tuple[TrainConfig, str]:
    """The configuration with halved batches after ``device`` ran out of memory, and a notice saying so.

    Raises
    ------
    MemoryError
        The batches were single crops already: only another device (or smaller crops) can help.
    """
    release_cached_memory(device)
    smaller = halve_batches(config)
    if smaller is None:
        raise MemoryError(
            f"{device_label(device)} ran out of memory even with one crop per batch. Train on the CPU "
            "(device cpu), close other programs that use the GPU, or lower crop_size."
        ) from error
    notice = (
        f"{device.type.upper()} memory was full: training goes on with smaller batches, {describe_batches(smaller)}."
    )
    logger.warning(notice)
    return smaller, notice

"""What training does when a step goes wrong: a diverging loss or a full GPU.

Neither may cost the user the model they have watched improve for minutes.
A diverging loss puts the networks back to the last weights that gave a
finite loss and stops with a message; a full GPU halves the batches and
carries on, and only gives up (saying to use the CPU) once a batch is a
single crop.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from napari_action.config import TrainConfig

logger = logging.getLogger(__name__)

__all__ = ["TrainingDivergedError", "WeightSnapshot", "describe_batches", "halve_batches"]

BATCH_FIELDS = ("batch_labeled", "batch_unlabeled", "batch_labeled_stage3", "batch_unlabeled_stage3")


class TrainingDivergedError(FloatingPointError):
    """The loss became NaN or infinite; the networks hold the last good weights again."""


class WeightSnapshot:
    """A copy of a module's weights, in CPU memory, from a step whose loss was finite.

    Copying the networks of a 2D U-Net takes a few milliseconds, so taking one
    every ``every`` steps costs nothing noticeable, and a divergence loses at
    most ``every`` steps of training.
    """

    def __init__(self, every: int = 50):
        self.every = every
        self.step: int | None = None
        self._state: dict[str, torch.Tensor] | None = None

    def take(self, module: nn.Module, step: int) -> None:
        """Keep a copy of ``module``'s weights, as they are after ``step`` steps, if they are all finite."""
        state = {name: value.detach().to("cpu", copy=True) for name, value in module.state_dict().items()}
        # A step can leave infinite weights behind a still-finite loss; such a copy would restore nothing.
        if any(value.is_floating_point() and not torch.isfinite(value).all() for value in state.values()):
            logger.warning("weights at step %d are not finite; keeping the snapshot of step %s", step, self.step)
            return
        self._state = state
        self.step = step

    def maybe_take(self, module: nn.Module, step: int) -> None:
        """Take a snapshot when ``step`` is a multiple of ``every``."""
        if step % self.every == 0:
            self.take(module, step)

    def restore(self, module: nn.Module) -> bool:
        """Put the kept weights back into ``module``; False when there are none or they no longer fit."""
        if self._state is None:
            return False
        current = module.state_dict()
        if current.keys() != self._state.keys() or any(
            current[name].shape != value.shape for name, value in self._state.items()
        ):
            # Classes were added since the snapshot: these weights belong to another model.
            return False
        module.load_state_dict(self._state)
        return True


def halve_batches(config: TrainConfig) -> TrainConfig | None:
    """``config`` with every batch size halved (at least 1); None when they are all 1 already."""
    sizes = {name: getattr(config, name) for name in BATCH_FIELDS}
    if all(size == 1 for size in sizes.values()):
        return None
    return config.replace(**{name: max(1, size // 2) for name, size in sizes.items()})


def describe_batches(config: TrainConfig) -> str:
    """``"2 labeled + 2 unlabeled crops (stage iii: 4 + 4)"``."""
    return (
        f"{config.batch_labeled} labeled + {config.batch_unlabeled} unlabeled crops "
        f"(stage iii: {config.batch_labeled_stage3} + {config.batch_unlabeled_stage3})"
    )

"""A trainer's networks to and from a :class:`~napari_action.io.checkpoint.Checkpoint`.

Continuing from a saved model ("continue from your own model") rebuilds the
student/teacher pair with the checkpoint's classes, then grows it by the
classes the new labels add; saving copies the weights to the CPU, so the
checkpoint stays valid while training goes on.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from napari_action.config import ModelConfig, TrainConfig
from napari_action.data.pixel_size import PIXEL_MM_KEY
from napari_action.io.checkpoint import Checkpoint
from napari_action.networks.teacher import StudentTeacher

__all__ = ["checkpoint_from_nets", "nets_from_checkpoint"]


def nets_from_checkpoint(checkpoint: Checkpoint, num_classes: int, model: ModelConfig) -> StudentTeacher:
    """Student and teacher with the checkpoint's weights, grown to ``num_classes`` outputs.

    Raises
    ------
    ValueError
        The checkpoint knows more classes than ``num_classes``.
    """
    missing = num_classes - checkpoint.num_classes
    if missing < 0:
        raise ValueError("The checkpoint has more classes than these labels know; pass its class values.")
    nets = StudentTeacher(model.in_channels, checkpoint.num_classes, model)
    nets.student.load_state_dict(checkpoint.student)
    nets.teacher.load_state_dict(checkpoint.teacher)
    if missing:
        # Added after loading, so that the saved classes keep their weights.
        nets.add_classes(missing)
    return nets


def checkpoint_from_nets(
    nets: StudentTeacher,
    config: TrainConfig,
    *,
    class_values: Sequence[int],
    axis: int,
    class_names: Mapping[int, str],
    step: int,
    pixel_mm: Sequence[float] | None = None,
) -> Checkpoint:
    """The networks' current weights, copied to the CPU, with what a prediction needs to use them
    (``pixel_mm``: the in-plane voxel size of the painted slices, when known)."""
    return Checkpoint(
        config=config,
        class_values=[int(v) for v in class_values],
        axis=axis,
        student=_cpu_copy(nets.student),
        teacher=_cpu_copy(nets.teacher),
        class_names=dict(class_names),
        step=step,
        extra={} if pixel_mm is None else {PIXEL_MM_KEY: [float(x) for x in pixel_mm]},
    )


def _cpu_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.detach().cpu().clone() for name, value in module.state_dict().items()}

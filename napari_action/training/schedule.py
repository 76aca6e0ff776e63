"""The stage schedule: which stages a training round runs, with which optimiser and learning rate.

ACTION's first round warms the network up before stage iii: a supervised start
(the cpu preset's), then stage i, global distillation of the encoder, and stage ii,
local distillation (the paper preset's), each skipped at 0 steps; later rounds
("Retrain", "Update once") and the baselines run their final stage only (docs/method.md, "Schedule").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from napari_action.checks import as_int
from napari_action.config import TrainConfig
from napari_action.training import stages

__all__ = ["Stage", "build_schedule", "make_optimizer", "poly_learning_rate"]

#: Exponent of the poly learning-rate decay within a stage.
POLY_POWER = 0.9


@dataclass(frozen=True)
class Stage:
    """One block of the schedule: a name, a length and the loss of a step."""

    name: str
    steps: int
    compute: stages.StepFn
    encoder_only: bool = False
    nesterov: bool = False


def build_schedule(config: TrainConfig, rounds: int, steps: int | None = None) -> list[Stage]:
    """The stages of the next training round.

    Parameters
    ----------
    config : TrainConfig
        Method, stage lengths and which losses are on.
    rounds : int
        Rounds completed so far; after the first, only the final stage runs.
    steps : int, optional
        Length of the final stage instead of the configured one: a whole number, 0 or more.

    Returns
    -------
    list of Stage
        In the order they run.

    Raises
    ------
    ValueError
        ``steps`` is negative or not a whole number.
    """
    final = _final_stage(config, steps)
    if rounds > 0 or config.method != "action":
        return [final]
    return [*_warmup_stages(config), final]


def _final_stage(config: TrainConfig, steps: int | None) -> Stage:
    final = {
        "action": Stage("stage iii: ACTION", config.steps_stage3, stages.action, nesterov=True),
        "supervised": Stage("supervised", config.steps_stage3, stages.supervised),
        "mean-teacher": Stage("mean teacher", config.steps_stage3, stages.mean_teacher),
    }[config.method]
    if steps is None:
        return final
    # -1 ran no step of it and counted the warm-up done; 2.5 ran 2.
    count = as_int(steps, "steps")
    if count < 0:
        raise ValueError(f"steps must be 0 or more (the length of the last stage), got {count}.")
    return Stage(final.name, count, final.compute, nesterov=final.nesterov)


def _warmup_stages(config: TrainConfig) -> list[Stage]:
    """The stages before ACTION's first stage iii; a stage of length 0 or without its loss is left out."""
    loss = config.loss
    warmup = []
    if config.steps_supervised_start:
        warmup.append(Stage("supervised start", config.steps_supervised_start, stages.supervised))
    if loss.use_global and config.steps_stage1:
        # Stage i distils only the global latent: the decoder and the other heads stay frozen.
        warmup.append(
            Stage("stage i: global distillation", config.steps_stage1, stages.global_distillation, encoder_only=True)
        )
    if (loss.use_global or loss.use_local) and config.steps_stage2:
        warmup.append(Stage("stage ii: local distillation", config.steps_stage2, stages.local_distillation))
    return warmup


def make_optimizer(student: torch.nn.Module, stage: Stage, config: TrainConfig) -> torch.optim.Optimizer:
    """A fresh optimiser over the parameters ``stage`` trains (the encoder's only, for stage i)."""
    params = student.encoder_parameters() if stage.encoder_only else student.parameters()
    params = [p for p in params if p.requires_grad]
    if config.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    return torch.optim.SGD(
        params, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, nesterov=stage.nesterov
    )


def poly_learning_rate(base: float, step_in_stage: int, stage_steps: int) -> float:
    """The poly schedule of a stage: ``base * (1 - t / T) ** 0.9`` at its step ``t`` of ``T``."""
    return base * (1.0 - step_in_stage / max(stage_steps, 1)) ** POLY_POWER

"""Tests for napari_action.training.stages: the loss of one step of each stage and baseline.

Each step function gets a :class:`StepInputs` bundle built the way the trainer builds it, from a
real :class:`SlicePool` (one painted disc volume, one unlabeled) and a real
:class:`StudentTeacher` at the tiny sizes of tests/helpers/engine.py. It returns ``(loss, logs)``;
backward and the EMA update are the trainer's, so here the teacher must come out untouched.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.intensity import normalize_volume
from napari_action.data.slice_pool import SlicePool
from napari_action.networks.teacher import LOCAL_WINDOWS, EmbeddingQueue, StudentTeacher, local_queue
from napari_action.training import stages
from tests.helpers.engine import AXIS, PAINTED, disc_volume, sparse, tiny_config, tiny_overrides

# Each step function and the loss terms it logs.
TERMS = {
    stages.global_distillation: {"global"},
    stages.local_distillation: {"sup", "global", "local"},
    stages.action: {"sup", "unsup", "anco"},
    stages.supervised: {"sup"},
    stages.mean_teacher: {"sup", "consistency"},
}
STEPS = pytest.mark.parametrize("step", list(TERMS), ids=lambda step: step.__name__)


def with_loss(**loss) -> TrainConfig:
    """The tiny configuration with some loss settings changed."""
    return tiny_config(loss={**tiny_overrides()["loss"], **loss})


def normalized_volumes() -> list[np.ndarray]:
    """The painted disc volume and an unlabeled one, normalised as the trainer does."""
    return [normalize_volume(disc_volume(0)[0]), normalize_volume(disc_volume(1)[0])]


def step_inputs(config: TrainConfig | None = None, volumes: list[np.ndarray] | None = None) -> stages.StepInputs:
    """What the trainer hands a step function: slices 2 and 7 of volume 0 painted, volume 1 unlabeled."""
    config = config or tiny_config()
    volumes = normalized_volumes() if volumes is None else volumes
    annotation = SparseAnnotation([sparse(disc_volume(0)[1]), None], [v.shape for v in volumes], axis=AXIS)
    pool = SlicePool(volumes, annotation, context=config.model.context, prior=config.loss.prior != "none")
    torch.manual_seed(0)
    nets = StudentTeacher(config.model.in_channels, annotation.num_classes, config.model)
    nets.train()
    return stages.StepInputs(
        config=config,
        nets=nets,
        pool=pool,
        global_queue=EmbeddingQueue(config.loss.queue_size, config.model.global_dim),
        local_queue=local_queue(config.loss.queue_size, annotation.num_classes),
        device=torch.device("cpu"),
        rng=np.random.default_rng(0),
        generator=torch.Generator().manual_seed(0),
        stage_steps=4,
    )


def primed() -> stages.StepInputs:
    """Step inputs whose distillation queues already hold anchors (see :func:`spread_anchors`)."""
    inputs = step_inputs()
    spread_anchors(inputs.global_queue)
    spread_anchors(inputs.local_queue)
    return inputs


def spread_anchors(queue: EmbeddingQueue) -> None:
    """Fill ``queue`` with random anchors.

    An untrained teacher in eval mode gives every crop nearly the same global embedding, so
    anchors enqueued by a first step would make the distillation terms almost exactly 0.
    A queue's worth of entries replaces whatever it held.
    """
    queue.enqueue(torch.randn(queue.size, queue.dim, generator=torch.Generator().manual_seed(3)))


def has_gradient(module: torch.nn.Module) -> bool:
    return any(p.grad is not None and bool(p.grad.abs().sum() > 0) for p in module.parameters())


@STEPS
def test_step_returns_a_finite_scalar_loss_and_logs_its_terms(step):
    loss, logs = step(step_inputs())
    assert loss.dim() == 0 and loss.requires_grad and torch.isfinite(loss)
    assert set(logs) == TERMS[step]
    assert all(isinstance(value, float) and math.isfinite(value) for value in logs.values())


@STEPS
def test_gradients_reach_the_student_and_the_teacher_is_left_untouched(step):
    inputs = primed()
    teacher = {name: value.clone() for name, value in inputs.nets.teacher.state_dict().items()}
    loss, _ = step(inputs)
    loss.backward()
    assert has_gradient(inputs.nets.student.unet.encoder)
    if "sup" in TERMS[step]:  # the segmentation output is trained too
        assert has_gradient(inputs.nets.student.unet.out_conv)
    assert all(p.grad is None and not p.requires_grad for p in inputs.nets.teacher.parameters())
    assert not inputs.nets.teacher.training
    after = inputs.nets.teacher.state_dict()
    assert all(torch.equal(after[name], value) for name, value in teacher.items())  # weights and BN statistics


def test_global_distillation_trains_the_encoder_and_the_global_head_only():
    inputs = primed()
    loss, _ = stages.global_distillation(inputs)
    loss.backward()
    student = inputs.nets.student
    assert has_gradient(student.unet.encoder) and has_gradient(student.global_head)
    assert has_gradient(student.global_predictor)
    assert all(p.grad is None for p in student.unet.decoder.parameters())
    assert all(p.grad is None for p in student.local_head.parameters())


def test_global_distillation_is_zero_until_the_queue_holds_anchors():
    inputs = step_inputs()
    first, _ = stages.global_distillation(inputs)
    assert first.item() == 0.0  # nothing to distil against yet...
    assert len(inputs.global_queue) == inputs.config.batch_labeled + inputs.config.batch_unlabeled  # ...until now
    spread_anchors(inputs.global_queue)
    second, logs = stages.global_distillation(inputs)
    assert second.item() > 1e-3 and logs["global"] == pytest.approx(second.item())


def test_local_distillation_adds_the_distillation_terms_once_the_queues_hold_anchors():
    inputs = step_inputs()
    _, first = stages.local_distillation(inputs)
    assert first["global"] == 0.0 and first["local"] == 0.0 and first["sup"] > 0.0
    images = inputs.config.batch_labeled + inputs.config.batch_unlabeled
    assert len(inputs.global_queue) == images and len(inputs.local_queue) == images * LOCAL_WINDOWS
    spread_anchors(inputs.global_queue)
    spread_anchors(inputs.local_queue)
    loss, logs = stages.local_distillation(inputs)
    assert logs["global"] > 1e-3 and logs["local"] > 1e-3
    assert loss.item() == pytest.approx(logs["sup"] + logs["global"] + logs["local"], rel=1e-5)


def test_action_loss_is_supervised_plus_pseudo_labels_plus_weighted_contrast():
    inputs = step_inputs()
    loss, logs = stages.action(inputs)
    weight = inputs.config.loss.anco_weight
    assert loss.item() == pytest.approx(logs["sup"] + logs["unsup"] + weight * logs["anco"], rel=1e-5)


def test_supervised_loss_is_its_only_term():
    loss, logs = stages.supervised(step_inputs())
    assert loss.item() == pytest.approx(logs["sup"], rel=1e-6) and logs["sup"] > 0.0


@pytest.mark.parametrize(("step_in_stage", "weight"), [(0, 0.1 * math.exp(-5.0)), (1, 0.1), (3, 0.1)])
def test_mean_teacher_consistency_weight_ramps_up_over_the_first_quarter(step_in_stage, weight):
    inputs = step_inputs()
    inputs.step_in_stage = step_in_stage  # stage_steps = 4: the ramp-up lasts one step
    loss, logs = stages.mean_teacher(inputs)
    assert logs["consistency"] > 0.0
    assert loss.item() == pytest.approx(logs["sup"] + weight * logs["consistency"], rel=1e-5)


@pytest.mark.parametrize(
    ("step", "switched_off", "terms"),
    [
        (stages.action, {"use_unsup": False}, {"sup", "anco"}),
        (stages.action, {"use_anco": False}, {"sup", "unsup"}),
        (stages.local_distillation, {"use_global": False}, {"sup", "local"}),
        (stages.local_distillation, {"use_local": False}, {"sup", "global"}),
    ],
    ids=["action-no-unsup", "action-no-anco", "local-no-global", "local-no-local"],
)
def test_switched_off_terms_are_left_out(step, switched_off, terms):
    loss, logs = step(step_inputs(with_loss(**switched_off)))
    assert set(logs) == terms and torch.isfinite(loss)


@pytest.mark.parametrize("prior", ["vote", "target"])
def test_action_with_the_interpolation_prior(prior):
    inputs = step_inputs(with_loss(prior=prior))
    assert inputs.pool.use_prior and inputs.pool.between  # unlabeled slices 3-6 lie between 2 and 7
    loss, logs = stages.action(inputs)
    assert torch.isfinite(loss) and set(logs) == TERMS[stages.action]


def with_unlabeled_slices_replaced(volumes: list[np.ndarray]) -> list[np.ndarray]:
    """Copies of ``volumes`` in which every voxel off the painted slices is random."""
    rng = np.random.default_rng(5)
    low, high = volumes[0].min(), volumes[0].max()
    changed = [v.copy() for v in volumes]
    unpainted = [s for s in range(volumes[0].shape[AXIS]) if s not in PAINTED]
    slices = np.moveaxis(changed[0], AXIS, 0)  # a view: writing to it writes to changed[0]
    slices[unpainted] = rng.uniform(low, high, slices[unpainted].shape)
    changed[1][...] = rng.uniform(low, high, changed[1].shape)
    return changed


@pytest.mark.parametrize(
    ("step", "uses_unlabeled"),
    [(stages.supervised, False), (stages.action, True), (stages.mean_teacher, True)],
    ids=lambda value: getattr(value, "__name__", str(value)),
)
def test_supervised_step_ignores_the_unlabeled_slices_the_others_learn_from(step, uses_unlabeled):
    volumes = normalized_volumes()
    losses = []
    for data in (volumes, with_unlabeled_slices_replaced(volumes)):
        inputs = step_inputs(volumes=data)
        torch.manual_seed(1)  # the same dropout in both runs
        losses.append(step(inputs)[0])
    assert torch.equal(losses[0], losses[1]) is not uses_unlabeled


@pytest.mark.parametrize("prior", ["vote", "target"])
def test_the_prior_decides_pseudo_labels_where_it_is_trusted_and_nowhere_else(prior):
    inputs = step_inputs(with_loss(prior=prior))
    images = torch.from_numpy(inputs.pool.image(0, 4)[None])  # a slice between the painted slices 2 and 7
    prior_map = torch.full(images.shape[-2:], 1, dtype=torch.int64)[None]  # "class 1 everywhere"
    prior_map[..., :4] = -1  # no prior in the first columns
    weight = torch.ones_like(prior_map, dtype=torch.float32)
    inputs.nets.teacher.eval()
    with torch.no_grad():
        teacher = torch.softmax(inputs.nets.teacher(images).logits.float(), dim=1)
    mixed = stages._teacher_probabilities(inputs, images, prior_map, weight)
    assert torch.equal(mixed[..., :4], teacher[..., :4])  # no prior: the teacher alone
    assert torch.all(mixed[:, 1, :, 4:] == 1.0)  # full weight: the prior's class, certainly
    half = stages._teacher_probabilities(inputs, images, prior_map, weight * 0.5)
    if prior == "vote":
        torch.testing.assert_close(
            half[..., 4:], 0.5 * teacher[..., 4:] + 0.5 * (torch.arange(3) == 1).view(1, 3, 1, 1)
        )
    else:  # "target": trusted whatever the weight
        assert torch.all(half[:, 1, :, 4:] == 1.0)


def test_prior_crops_come_from_between_painted_slices_with_weights_falling_with_distance():
    inputs = step_inputs(with_loss(prior="vote", prior_share=1.0))
    _, prior, weight = inputs.pool.sample_unlabeled_with_prior(8, 32, np.random.default_rng(1), 1.0, 4.0)
    assert (prior >= 0).any(dim=(1, 2)).all()  # share 1: every crop from a slice between 2 and 7
    assert ((weight > 0) == (prior >= 0)).all() and weight.max() <= np.exp(-1 / 4.0) + 1e-6


@pytest.mark.parametrize("step", [stages.action, stages.supervised], ids=lambda step: step.__name__)
def test_the_final_stage_shows_the_labeled_crops_in_a_noisy_strong_view_only_when_asked(step):
    seen = []

    def student_input(config: TrainConfig) -> torch.Tensor:
        inputs = step_inputs(config)
        first = inputs.nets.student.unet.encoder[0]
        hook = first.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        torch.manual_seed(1)
        step(inputs)
        hook.remove()
        return seen[-1][: config.batch_labeled_stage3]

    clean = student_input(tiny_config())
    again = student_input(tiny_config())
    strong = student_input(tiny_config(noise_sigma=0.3, photometric_labeled=True))
    torch.testing.assert_close(clean, again)
    # Same crops and geometry (drawn first), then jitter, blur and noise: a difference of up to ~0.3 sd.
    difference = (strong - clean).flatten(1).std(dim=1)
    assert difference.max() > 0.05 and difference.max() < 1.0


def test_the_zoom_spread_setting_reaches_the_labeled_crops_geometry():
    def student_input(config: TrainConfig) -> torch.Tensor:
        seen = []
        inputs = step_inputs(config)
        first = inputs.nets.student.unet.encoder[0]
        hook = first.register_forward_pre_hook(lambda module, args: seen.append(args[0].detach().clone()))
        torch.manual_seed(1)
        stages.supervised(inputs)
        hook.remove()
        return seen[-1]

    default = student_input(tiny_config())
    torch.testing.assert_close(student_input(tiny_config(zoom_spread=0.1)), default)  # the default is 0.9-1.1
    wider = student_input(tiny_config(zoom_spread=0.5))
    assert wider.shape == default.shape and not torch.allclose(wider, default)

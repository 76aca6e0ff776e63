"""The loss of one training step for each stage of ACTION and each baseline.

Every function here takes a :class:`StepInputs` bundle, samples its own batch
and returns ``(loss, logs)``; the trainer does backward, the optimiser step
and the single EMA update per step, uniformly for all stages.

The student runs once per step, through :attr:`StepInputs.student_pass`,
which returns every student output the loss needs (heads included): under
``torchrun`` that call is the DistributedDataParallel forward, whose gradient
synchronisation must see all of the step's student computation
(:class:`~napari_action.networks.teacher.StudentPass`). Teacher embeddings go
through :attr:`StepInputs.gather` before they enter a queue, so that every
rank's queue holds the embeddings of all ranks.

Stages (You et al., IPMI 2023; docs/method.md, "Schedule"):

* ``global_distillation`` (stage i): encoder + global head, ``L_glob`` only.
* ``local_distillation`` (stage ii): everything, ``L_sup + L_glob + L_loc``.
* ``action`` (stage iii): ``L_sup + L_unsup + λ·L_anco``.
* ``supervised`` and ``mean_teacher``: the baselines, same network and batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from napari_action.config import TrainConfig
from napari_action.data.augment import cutmix, random_geometric, strong_photometric
from napari_action.data.slice_pool import SlicePool
from napari_action.networks.teacher import EmbeddingQueue, StudentPass, StudentTeacher
from napari_action.training import losses

Logs = dict[str, float]
StepFn = Callable[["StepInputs"], tuple[torch.Tensor, Logs]]


@dataclass
class StepInputs:
    """Everything a step function reads; owned and updated by the trainer."""

    config: TrainConfig
    nets: StudentTeacher
    pool: SlicePool
    global_queue: EmbeddingQueue
    local_queue: EmbeddingQueue
    device: torch.device
    rng: np.random.Generator
    generator: torch.Generator
    step_in_stage: int = 0
    stage_steps: int = 1
    # The student's one call per step: a StudentPass, wrapped in DistributedDataParallel under torchrun.
    student_pass: torch.nn.Module | None = None
    # Teacher embeddings of all ranks, in rank order (the identity in a single process).
    gather: Callable[[torch.Tensor], torch.Tensor] = lambda embeddings: embeddings

    def __post_init__(self) -> None:
        if self.student_pass is None:
            self.student_pass = StudentPass(self.nets.student)


def _labeled_batch(inp: StepInputs, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    cfg = inp.config
    images, targets = inp.pool.sample_labeled(
        batch,
        cfg.crop_size,
        inp.rng,
        cfg.foreground_crop_prob,
        cfg.background_slice_share,
        prior_share=cfg.loss.prior_labeled_share,
        prior_confidence=cfg.loss.prior_labeled_confidence,
    )
    images, targets = images.to(inp.device), targets.to(inp.device)
    images, targets, _ = random_geometric(images, targets, None, inp.generator, **_geometry(inp.config))
    return images, targets


def _final_stage_labeled_batch(inp: StepInputs, batch: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Labeled crops of the last stage (and the baselines): with ``photometric_labeled`` in a strong view."""
    images, targets = _labeled_batch(inp, batch)
    if inp.config.photometric_labeled:
        images = strong_photometric(images, inp.generator, noise_sigma=_noise(inp.config))
    return images, targets


def _noise(config: TrainConfig) -> float:
    # None is "from the data", which the trainer decides before the first step; unresolved: none.
    return config.noise_sigma or 0.0


def _unlabeled_batch(inp: StepInputs, batch: int) -> torch.Tensor:
    images = inp.pool.sample_unlabeled(batch, inp.config.crop_size, inp.rng).to(inp.device)
    images, _, _ = random_geometric(images, None, None, inp.generator, **_geometry(inp.config))
    return images


def _geometry(config: TrainConfig) -> dict[str, object]:
    zoom = (1.0 - config.zoom_spread, 1.0 + config.zoom_spread)
    return {"p_flip": config.flip_prob, "p_rot90": config.rot90_prob, "scale_range": zoom}


def _supervised(logits: torch.Tensor, targets: torch.Tensor, config: TrainConfig) -> torch.Tensor:
    return losses.supervised_loss(logits, targets, dice_present_only=config.loss.dice_present_classes_only)


def _distillation_views(inp: StepInputs, batch_l: int, batch_u: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Labeled + unlabeled images, one geometry, two photometric views.

    The teacher sees the weak (clean) view and the student the strong one
    (the paper's best pairing); sharing the geometry keeps the 36 local
    windows of both views aligned.
    """
    images_l, targets = _labeled_batch(inp, batch_l)
    images_u = _unlabeled_batch(inp, batch_u)
    weak = torch.cat([images_l, images_u])
    strong = strong_photometric(weak, inp.generator, noise_sigma=_noise(inp.config))
    return weak, strong, targets


def _kl_or_zero(student: torch.Tensor, teacher: torch.Tensor, queue: EmbeddingQueue, inp: StepInputs) -> torch.Tensor:
    """Distillation against the queue, then enqueue; zero while the queue is empty."""
    cfg = inp.config.loss
    entries = queue.entries()
    if entries.shape[0] == 0:
        loss = student.sum() * 0.0
    else:
        loss = losses.distillation_kl(
            student, teacher, entries, tau_student=cfg.tau_student, tau_teacher=cfg.tau_teacher
        )
    queue.enqueue(inp.gather(teacher))
    return loss


def global_distillation(inp: StepInputs) -> tuple[torch.Tensor, Logs]:
    """Stage i: iterative contrastive distillation of the global latent."""
    cfg = inp.config
    weak, strong, _ = _distillation_views(inp, cfg.batch_labeled, cfg.batch_unlabeled)
    teacher = inp.nets.teacher
    # Only the global embedding: the decoder and the other heads stay out of stage i's gradients.
    s = inp.student_pass(strong, logits=False, global_embedding=True)["global"]
    with torch.no_grad():
        t = teacher.global_embedding(teacher(weak).bottleneck, predict=False)
    loss = _kl_or_zero(s, t, inp.global_queue, inp)
    return loss, {"global": float(loss.detach())}


def local_distillation(inp: StepInputs) -> tuple[torch.Tensor, Logs]:
    """Stage ii: supervised loss plus global and local distillation."""
    cfg = inp.config
    weak, strong, targets = _distillation_views(inp, cfg.batch_labeled, cfg.batch_unlabeled)
    teacher = inp.nets.teacher
    out_s = inp.student_pass(strong, global_embedding=cfg.loss.use_global, local_embedding=cfg.loss.use_local)
    with torch.no_grad():
        out_t = teacher(weak)
    n_lab = targets.shape[0]
    sup = _supervised(out_s["logits"][:n_lab], targets, inp.config)
    loss, logs = sup, {"sup": float(sup.detach())}
    if cfg.loss.use_global:
        s = out_s["global"]
        with torch.no_grad():
            t = teacher.global_embedding(out_t.bottleneck, predict=False)
        glob = _kl_or_zero(s, t, inp.global_queue, inp)
        loss, logs["global"] = loss + glob, float(glob.detach())
    if cfg.loss.use_local:
        s = out_s["local"].flatten(0, 1)
        with torch.no_grad():
            t = teacher.local_embedding(out_t.logits, predict=False).flatten(0, 1)
        loc = _kl_or_zero(s, t, inp.local_queue, inp)
        loss, logs["local"] = loss + loc, float(loc.detach())
    return loss, logs


def _prior_batch(inp: StepInputs, batch: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unlabeled crops with the interpolation prior, one joint geometry for all three."""
    cfg = inp.config
    images, prior, weight = inp.pool.sample_unlabeled_with_prior(
        batch, cfg.crop_size, inp.rng, cfg.loss.prior_share, cfg.loss.prior_decay
    )
    images, prior, weight = (x.to(inp.device) for x in (images, prior, weight))
    return random_geometric(images, prior, weight, inp.generator, **_geometry(cfg))


def _teacher_probabilities(
    inp: StepInputs, images: torch.Tensor, prior: torch.Tensor | None, weight: torch.Tensor | None
) -> torch.Tensor:
    with torch.no_grad():
        probs = torch.softmax(inp.nets.teacher(images).logits.float(), dim=1)
    if prior is None:
        return probs
    has_prior = (prior >= 0).unsqueeze(1)
    onehot = F.one_hot(prior.clamp(min=0), probs.shape[1]).movedim(-1, 1).to(probs.dtype)
    if inp.config.loss.prior == "target":
        # Where the prior exists it is the pseudo-label, fully trusted.
        return torch.where(has_prior, onehot, probs)
    alpha = weight.unsqueeze(1)
    return torch.where(has_prior, (1 - alpha) * probs + alpha * onehot, probs)


def _pseudo_labeled_batch(inp: StepInputs, batch_u: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Unlabeled images with teacher pseudo-labels, mixed and perturbed jointly.

    The teacher runs in eval mode on clean images (no dropout, running BN
    statistics); with ``loss.prior`` its probabilities are mixed with the
    interpolation between labeled slices first (docs/method.md, "Using the third
    dimension"); CutMix moves image, labels and confidences together; only
    then is the image alone photometrically perturbed.
    """
    if inp.config.loss.prior != "none" and inp.pool.use_prior:
        images, prior, weight = _prior_batch(inp, batch_u)
    else:
        images, prior, weight = _unlabeled_batch(inp, batch_u), None, None
    pseudo, confidence = losses.pseudo_labels(_teacher_probabilities(inp, images, prior, weight))
    images, pseudo, confidence = cutmix(images, pseudo, confidence, inp.generator)
    # Stage iii's stronger jitter: contrast/brightness factors in 0.75-1.25.
    images = strong_photometric(images, inp.generator, jitter=0.25, noise_sigma=_noise(inp.config))
    return images, pseudo, confidence


def _contrast_labels(
    targets: torch.Tensor, pseudo: torch.Tensor, confidence: torch.Tensor, threshold: float
) -> torch.Tensor:
    trusted = torch.where(confidence >= threshold, pseudo, torch.full_like(pseudo, -1))
    return torch.cat([targets, trusted])


def _subsample(x: torch.Tensor, stride: int) -> torch.Tensor:
    """Pixel centres of the representation grid (nearest, so labels stay labels)."""
    if stride == 1:
        return x
    offset = stride // 2
    return x[..., offset::stride, offset::stride]


def _anco_tau(inp: StepInputs) -> float:
    cfg = inp.config.loss
    if not cfg.temperature_schedule:
        return cfg.anco_tau
    return losses.cosine_temperature(inp.step_in_stage, inp.stage_steps, cfg.tau_min, cfg.tau_max, cfg.schedule_cycles)


def _anatomical_contrast(inp: StepInputs, out: dict[str, torch.Tensor], labels: torch.Tensor) -> torch.Tensor:
    cfg = inp.config
    stride = cfg.model.rep_stride
    rep = out["representation"]
    probs = _subsample(torch.softmax(out["logits"].detach().float(), dim=1), stride)
    return losses.anatomical_contrast(
        rep.float(),
        _subsample(labels, stride),
        probs,
        num_queries=cfg.loss.anco_queries,
        num_negatives=cfg.loss.anco_negatives,
        tau=_anco_tau(inp),
        hard_threshold=cfg.loss.anco_hard_threshold,
        generator=inp.generator,
    )


def action(inp: StepInputs) -> tuple[torch.Tensor, Logs]:
    """Stage iii: supervised + confidence-weighted pseudo-labels + anatomical contrast."""
    cfg = inp.config
    images_l, targets = _final_stage_labeled_batch(inp, cfg.batch_labeled_stage3)
    n_lab = images_l.shape[0]
    images_u, pseudo, confidence = _pseudo_labeled_batch(inp, cfg.batch_unlabeled_stage3)
    stride = cfg.model.rep_stride if cfg.loss.use_anco else None
    out = inp.student_pass(torch.cat([images_l, images_u]), representation_stride=stride)
    sup = _supervised(out["logits"][:n_lab], targets, inp.config)
    loss, logs = sup, {"sup": float(sup.detach())}
    if cfg.loss.use_unsup:
        unsup = losses.pseudo_label_loss(out["logits"][n_lab:], pseudo, confidence, cfg.loss.unsup_threshold)
        loss, logs["unsup"] = loss + unsup, float(unsup.detach())
    if cfg.loss.use_anco:
        labels = _contrast_labels(targets, pseudo, confidence, cfg.loss.anco_unlabeled_threshold)
        anco = _anatomical_contrast(inp, out, labels)
        loss, logs["anco"] = loss + cfg.loss.anco_weight * anco, float(anco.detach())
    return loss, logs


def supervised(inp: StepInputs) -> tuple[torch.Tensor, Logs]:
    """Baseline: the same U-Net on the painted slices only."""
    images, targets = _final_stage_labeled_batch(inp, inp.config.batch_labeled_stage3)
    loss = _supervised(inp.student_pass(images)["logits"], targets, inp.config)
    return loss, {"sup": float(loss.detach())}


def _sigmoid_rampup(step: int, length: int) -> float:
    """Laine & Aila's ramp-up, used by Mean Teacher for the consistency weight."""
    if length <= 0:
        return 1.0
    phase = 1.0 - min(step, length) / length
    return float(np.exp(-5.0 * phase * phase))


def mean_teacher(inp: StepInputs) -> tuple[torch.Tensor, Logs]:
    """Baseline: Mean Teacher (Tarvainen & Valpola 2017) with a softmax-MSE consistency."""
    cfg = inp.config
    images_l, targets = _final_stage_labeled_batch(inp, cfg.batch_labeled_stage3)
    images_u = _unlabeled_batch(inp, cfg.batch_unlabeled_stage3)
    n_lab = images_l.shape[0]
    noisy = strong_photometric(images_u, inp.generator, noise_sigma=_noise(cfg))
    logits = inp.student_pass(torch.cat([images_l, noisy]))["logits"]
    with torch.no_grad():
        target_probs = torch.softmax(inp.nets.teacher(images_u).logits.float(), dim=1)
    sup = _supervised(logits[:n_lab], targets, inp.config)
    consistency = F.mse_loss(torch.softmax(logits[n_lab:].float(), dim=1), target_probs)
    weight = 0.1 * _sigmoid_rampup(inp.step_in_stage, inp.stage_steps // 4)
    loss = sup + weight * consistency
    return loss, {"sup": float(sup.detach()), "consistency": float(consistency.detach())}

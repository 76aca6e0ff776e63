"""Loss functions of ACTION, each a small, separately tested unit.

From *Bootstrapping Semi-supervised Medical Image Segmentation with
Anatomical-aware Contrastive Distillation* (You et al., IPMI 2023) and its
reference code, with the choices described in docs/method.md (the "Losses" paragraph and
"Where we deliberately differ"), and one option of ACTION++ (You et al., MICCAI 2023):

* :func:`supervised_loss` — ½ (cross-entropy + Dice) with an ignore index;
* :func:`distillation_kl` — ISD-style relational distillation against a queue
  (global and local);
* :func:`pseudo_labels` / :func:`pseudo_label_loss` — teacher pseudo-labels
  with the per-image confidence weight;
* :func:`anatomical_contrast` — ReCo-style anatomical contrast with hard
  queries and class-relation negative sampling, vectorised on the device;
* :func:`cosine_temperature` — ACTION++ adaptive temperature schedule.

All functions take class ids with ``-1`` (or ``ignore_index``) for pixels
without a label, and return a scalar tensor that stays in the autograd graph
even when it is zero, so callers can always ``backward()`` the total.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor

from napari_action.runtime import autocast_paused
from napari_action.training.negative_similarity import negative_similarity


def _as_float32(value: object) -> object:
    if isinstance(value, Tensor) and value.dtype in (torch.bfloat16, torch.float16):
        return value.float()
    return value


def in_float32(loss: Callable[..., Tensor]) -> Callable[..., Tensor]:
    """``loss`` computed in float32 under any autocast (half-precision tensors cast, autocast paused)."""

    @functools.wraps(loss)
    def compute(*args: object, **kwargs: object) -> Tensor:
        first = next(value for value in (*args, *kwargs.values()) if isinstance(value, Tensor))
        with autocast_paused(first):
            return loss(*map(_as_float32, args), **{name: _as_float32(v) for name, v in kwargs.items()})

    return compute


def _check_dense(scores: Tensor, target: Tensor, name: str, ignore_index: int | None = None) -> None:
    """Raise ``ValueError`` unless scores ``(B, C, *S)`` and target ``(B, *S)`` match."""
    if scores.dim() < 3:
        raise ValueError(f"{name}: scores must be (B, C, *spatial), got shape {tuple(scores.shape)}.")
    if target.shape != scores.shape[:1] + scores.shape[2:]:
        raise ValueError(
            f"{name}: target shape {tuple(target.shape)} does not match scores {tuple(scores.shape)}; "
            "expected (B, *spatial)."
        )
    if target.is_floating_point():
        raise ValueError(f"{name}: target must hold integer class ids, got {target.dtype}.")
    labeled = target if ignore_index is None else target[target != ignore_index]
    if labeled.numel() and (labeled.min() < 0 or labeled.max() >= scores.shape[1]):
        raise ValueError(
            f"{name}: class ids must be in [0, {scores.shape[1]}) or {ignore_index}, "
            f"got range [{int(labeled.min())}, {int(labeled.max())}]."
        )


def _zero_like_graph(x: Tensor) -> Tensor:
    """A scalar 0 attached to ``x``'s graph, so that ``backward()`` still works."""
    return x.sum() * 0.0


def dice_loss(
    probs: Tensor, target: Tensor, ignore_index: int = -1, eps: float = 1e-5, present_only: bool = False
) -> Tensor:
    """Soft Dice loss, background included (Milletari et al., 2016).

    ``mean_c [1 − (2 Σ p_c g_c + ε) / (Σ p_c² + Σ g_c² + ε)]``, sums over the
    batch and all pixels, as in the ACTION reference code (SSL4MIS ``DiceLoss``);
    pixels with ``target == ignore_index`` are left out of every sum. With
    ``present_only`` the mean runs over the classes present in the (valid)
    target only: an absent class then gets no Dice push towards zero, which
    the reference's all-class mean gives it in every crop that misses it.

    Parameters
    ----------
    probs : Tensor
        Softmax probabilities ``(B, C, *spatial)``.
    target : Tensor
        Class ids ``(B, *spatial)``.
    ignore_index : int
        Label of pixels to ignore.
    eps : float
        Smoothing term.
    present_only : bool
        Average over the classes present in ``target`` instead of all classes.

    Returns
    -------
    Tensor
        Scalar loss.
    """
    _check_dense(probs, target, "dice_loss", ignore_index)
    valid = (target != ignore_index).unsqueeze(1).to(probs.dtype)
    onehot = F.one_hot(target.clamp(min=0).long(), probs.shape[1]).movedim(-1, 1).to(probs.dtype) * valid
    probs = probs * valid
    dims = [0, *range(2, probs.dim())]
    intersection = (probs * onehot).sum(dims)
    truth = onehot.sum(dims)
    per_class = 1.0 - (2.0 * intersection + eps) / ((probs * probs).sum(dims) + truth + eps)
    if present_only and bool((truth > 0).any()):
        return per_class[truth > 0].mean()
    return per_class.mean()


@in_float32
def supervised_loss(logits: Tensor, target: Tensor, ignore_index: int = -1, dice_present_only: bool = False) -> Tensor:
    """Supervised loss ``½ (CE + Dice)`` of ACTION on labelled pixels.

    Parameters
    ----------
    logits : Tensor
        ``(B, C, *spatial)``.
    target : Tensor
        Class ids ``(B, *spatial)``; ``ignore_index`` pixels are masked out of
        both terms.
    ignore_index : int
        Label of unlabelled pixels.
    dice_present_only : bool
        Dice over the classes present in ``target`` (see :func:`dice_loss`).

    Returns
    -------
    Tensor
        Scalar; 0 (still differentiable) when every pixel is ignored.
    """
    _check_dense(logits, target, "supervised_loss", ignore_index)
    target = target.long()
    if not bool((target != ignore_index).any()):
        return _zero_like_graph(logits)
    ce = F.cross_entropy(logits, target, ignore_index=ignore_index)
    dice = dice_loss(torch.softmax(logits, dim=1), target, ignore_index, present_only=dice_present_only)
    return 0.5 * (ce + dice)


@in_float32
def distillation_kl(
    student: Tensor,
    teacher: Tensor,
    queue: Tensor,
    tau_student: float = 0.1,
    tau_teacher: float = 0.01,
) -> Tensor:
    """Relational distillation ``KL(P_t ‖ P_s)`` against a queue of anchors (ISD).

    ``P_t(j) = softmax_j(⟨t, a_j⟩ / τ_t)``, ``P_s(j) = softmax_j(⟨s, a_j⟩ / τ_s)``
    with cosine similarities (ISD: Tejankar et al., ICCV 2021; You et al.,
    IPMI 2023, global and local distillation). The teacher side and the queue are detached.

    Parameters
    ----------
    student, teacher : Tensor
        Embeddings ``(..., D)`` of the same shape; ``(B, D)`` for the global
        loss, ``(B, 36, D)`` (or ``(B·36, D)``) for the local one. Normalised here.
    queue : Tensor
        Anchors ``(K, D)``.
    tau_student, tau_teacher : float
        Temperatures ``τ_s`` and ``τ_t``.

    Returns
    -------
    Tensor
        Mean KL over all embeddings.
    """
    if student.shape != teacher.shape or student.dim() < 2:
        raise ValueError(
            f"distillation_kl: student {tuple(student.shape)} and teacher {tuple(teacher.shape)} "
            "must have the same shape (..., D)."
        )
    dim = student.shape[-1]
    if queue.dim() != 2 or queue.shape[1] != dim or queue.shape[0] == 0:
        raise ValueError(f"distillation_kl: queue must be (K >= 1, {dim}), got {tuple(queue.shape)}.")
    if tau_student <= 0 or tau_teacher <= 0:
        raise ValueError("distillation_kl: temperatures must be > 0.")
    anchors = F.normalize(queue.detach(), dim=1)
    s = F.normalize(student.reshape(-1, dim), dim=1)
    t = F.normalize(teacher.detach().reshape(-1, dim), dim=1)
    log_p_s = F.log_softmax(s @ anchors.T / tau_student, dim=1)
    log_p_t = F.log_softmax(t @ anchors.T / tau_teacher, dim=1)
    return (log_p_t.exp() * (log_p_t - log_p_s)).sum(dim=1).mean()


@torch.no_grad()
def pseudo_labels(teacher_probs: Tensor) -> tuple[Tensor, Tensor]:
    """Hard pseudo-labels and confidences from teacher class probabilities ``(B, C, *spatial)``.

    The probabilities may already hold a prior (the interpolation between
    labeled slices, see ``training/stages.py``); without one they are the
    teacher's softmax.

    Returns
    -------
    labels : Tensor
        ``argmax`` class ids ``(B, *spatial)``, int64.
    confidence : Tensor
        Maximum probability ``(B, *spatial)``.
    """
    if teacher_probs.dim() < 3:
        raise ValueError(f"pseudo_labels expects (B, C, *spatial), got {tuple(teacher_probs.shape)}.")
    confidence, labels = teacher_probs.detach().float().max(dim=1)
    return labels, confidence


@in_float32
def pseudo_label_loss(
    student_logits: Tensor,
    pseudo: Tensor,
    confidence: Tensor,
    threshold: float = 0.97,
    valid: Tensor | None = None,
) -> Tensor:
    """Unsupervised loss: cross-entropy to pseudo-labels, weighted per image.

    ``w_b = |{c ≥ threshold}| / |valid|`` for image ``b`` (an image-level
    weight, not a pixel mask — as in the ACTION and ReCo code) and the loss is
    the mean of ``w_b · CE`` over the valid pixels.

    Parameters
    ----------
    student_logits : Tensor
        ``(B, C, *spatial)`` on the augmented unlabeled images.
    pseudo : Tensor
        Pseudo-labels ``(B, *spatial)``; ``-1`` marks invalid pixels.
    confidence : Tensor
        Teacher confidence ``(B, *spatial)``.
    threshold : float
        Confidence counted as reliable.
    valid : Tensor, optional
        Boolean ``(B, *spatial)`` mask of usable pixels (e.g. not padding).

    Returns
    -------
    Tensor
        Scalar; 0 (differentiable) without valid pixels.
    """
    _check_dense(student_logits, pseudo, "pseudo_label_loss", ignore_index=-1)
    if confidence.shape != pseudo.shape:
        raise ValueError(
            f"pseudo_label_loss: confidence {tuple(confidence.shape)} must match pseudo {tuple(pseudo.shape)}."
        )
    mask = pseudo >= 0
    if valid is not None:
        if valid.shape != pseudo.shape:
            raise ValueError(f"pseudo_label_loss: valid {tuple(valid.shape)} must match {tuple(pseudo.shape)}.")
        mask = mask & valid.bool()
    if not bool(mask.any()):
        return _zero_like_graph(student_logits)
    batch = pseudo.shape[0]
    flat_mask = mask.reshape(batch, -1).float()
    reliable = ((confidence.detach() >= threshold) & mask).reshape(batch, -1).float()
    weight = reliable.sum(1) / flat_mask.sum(1).clamp(min=1.0)
    ce = F.cross_entropy(student_logits, pseudo.long().clamp(min=0), reduction="none").reshape(batch, -1)
    return (weight[:, None] * ce * flat_mask).sum() / flat_mask.sum()


class _ContrastSample(NamedTuple):
    """Indices drawn by the anatomical-contrast sampler (flat pixel indices).

    ``classes`` (M,) present class ids; ``prototypes`` (M, D) unit class means;
    ``queries`` (M, Q) hard-query pixels; ``has_queries`` (M,) whether the
    class had any hard pixel (else its row of ``queries`` is filler);
    ``negatives`` (M, Q, N) negative-key pixels.
    """

    classes: Tensor
    prototypes: Tensor
    queries: Tensor
    has_queries: Tensor
    negatives: Tensor


def _class_pools(pixels: Tensor, classes: Tensor, num_classes: int) -> tuple[Tensor, Tensor, Tensor]:
    """Group ``pixels`` by class: sorted pool, start offset and count per class."""
    order = torch.argsort(classes, stable=True)
    counts = torch.bincount(classes, minlength=num_classes)
    starts = torch.cumsum(counts, 0) - counts
    return pixels[order], starts, counts


def _draw_from_pools(pool: Tensor, starts: Tensor, counts: Tensor, generator: torch.Generator | None) -> Tensor:
    """One uniform draw from each class pool; ``starts``/``counts`` give the pool of every draw."""
    u = torch.rand(starts.shape, generator=generator, device=pool.device)
    offset = torch.minimum((u * counts).long(), (counts - 1).clamp(min=0))
    # Filler draws for empty pools are clamped into range and masked by the caller.
    return pool[(starts + offset).clamp(max=pool.numel() - 1)]


def _sample_contrast(
    features: Tensor,
    labels: Tensor,
    own_prob: Tensor,
    num_classes: int,
    num_queries: int,
    num_negatives: int,
    tau: float,
    hard_threshold: float,
    generator: torch.Generator | None,
) -> _ContrastSample | None:
    """Draw queries and negatives for :func:`anatomical_contrast` (no Python loop over samples).

    ``features`` (P, D) unit vectors, ``labels`` (P,) class ids or -1,
    ``own_prob`` (P,) student probability of the pixel's own class. Returns
    ``None`` when fewer than two classes are present or no pixel is hard.
    """
    pixels = torch.nonzero(labels >= 0).squeeze(1)
    classes = labels[pixels]
    pool, starts, counts = _class_pools(pixels, classes, num_classes)
    present = torch.nonzero(counts).squeeze(1)
    hard = own_prob[pixels] < hard_threshold
    if present.numel() < 2 or not bool(hard.any()):
        return None
    sums = torch.zeros(num_classes, features.shape[1], device=features.device, dtype=features.dtype)
    sums.index_add_(0, classes, features[pixels].detach())
    prototypes = F.normalize(sums[present], dim=1)

    hard_pool, hard_starts, hard_counts = _class_pools(pixels[hard], classes[hard], num_classes)
    m = present.numel()
    query_starts = hard_starts[present, None].expand(m, num_queries)
    query_counts = hard_counts[present, None].expand(m, num_queries)
    queries = _draw_from_pools(hard_pool, query_starts, query_counts, generator)

    # Class-relation graph: a negative class v is drawn with probability
    # softmax over v != k of <r_k+, r_v+> / tau, so the classes most easily
    # confused with k supply most of its negatives (ReCo, Liu et al., ICLR 2022).
    relation = (prototypes @ prototypes.T) / tau
    relation.fill_diagonal_(float("-inf"))
    draws = torch.multinomial(
        torch.softmax(relation, dim=1), num_queries * num_negatives, replacement=True, generator=generator
    )
    negative_class = present[draws].reshape(m, num_queries, num_negatives)
    negatives = _draw_from_pools(pool, starts[negative_class], counts[negative_class], generator)
    return _ContrastSample(present, prototypes, queries, hard_counts[present] > 0, negatives)


@in_float32
def anatomical_contrast(
    rep: Tensor,
    labels: Tensor,
    probs: Tensor,
    *,
    num_queries: int = 256,
    num_negatives: int = 512,
    tau: float = 0.5,
    hard_threshold: float = 0.97,
    generator: torch.Generator | None = None,
) -> Tensor:
    """Anatomical contrastive loss of ACTION (ReCo-style; You et al., IPMI 2023).

    For each present class ``k``: prototype ``r_k⁺`` = detached mean of its
    valid embeddings; ``num_queries`` hard queries (class-``k`` pixels with
    ``p_k < hard_threshold``) drawn with replacement; per query
    ``num_negatives`` detached negatives, each from a class ``v ≠ k`` drawn
    with probability ``softmax_v(⟨r_k⁺, r_v⁺⟩ / τ)`` and then a uniform valid
    pixel of ``v``. ``L_k = mean_q −log[e^{⟨r_q, r_k⁺⟩/τ} / (e^{⟨r_q, r_k⁺⟩/τ}
    + Σ_n e^{⟨r_q, r_n⟩/τ})]``. Sampling is batched on ``rep``'s device
    (no per-query Python loop; docs/method.md, difference 7); the gathered negatives are held
    a chunk at a time (:mod:`~napari_action.training.negative_similarity`).

    Parameters
    ----------
    rep : Tensor
        Embeddings ``(N, D, *spatial)``, normalised here (cosine similarity).
    labels : Tensor
        Class ids ``(N, *spatial)``; ``-1`` marks invalid pixels (unlabelled
        or low-confidence pseudo-labels).
    probs : Tensor
        Student softmax ``(N, C, *spatial)``; only used to select hard queries.
    num_queries, num_negatives : int
        Queries per class and negatives per query.
    tau : float
        Temperature.
    hard_threshold : float
        Pixels with own-class probability below this are hard queries.
    generator : torch.Generator, optional
        On ``rep``'s device, for reproducible sampling.

    Returns
    -------
    Tensor
        ``Σ_k L_k / M`` over the ``M`` present classes (a class without hard
        queries adds 0 but still counts, as in ReCo); 0 (differentiable) when
        fewer than two classes are present.
    """
    _check_contrast_inputs(rep, labels, probs)
    if num_queries < 1 or num_negatives < 1 or tau <= 0:
        raise ValueError("anatomical_contrast: num_queries, num_negatives and tau must be positive.")
    if generator is not None and generator.device.type != rep.device.type:
        # Sampling happens on rep's device; a generator elsewhere would force
        # host/device copies of every index tensor.
        raise ValueError(
            f"anatomical_contrast: generator is on {generator.device}, rep on {rep.device}; "
            "create the generator on rep's device."
        )
    dim, num_classes = rep.shape[1], probs.shape[1]
    features = F.normalize(rep.movedim(1, -1).reshape(-1, dim), dim=1)
    flat_labels = labels.reshape(-1).long()
    flat_probs = probs.detach().movedim(1, -1).reshape(-1, num_classes)
    own_prob = flat_probs.gather(1, flat_labels.clamp(min=0)[:, None]).squeeze(1)
    sample = _sample_contrast(
        features,
        flat_labels,
        own_prob,
        num_classes,
        num_queries,
        num_negatives,
        tau,
        hard_threshold,
        generator,
    )
    if sample is None:
        return _zero_like_graph(rep)
    queries = features[sample.queries]  # (M, Q, D), carries the gradient
    positive = (queries * sample.prototypes[:, None, :]).sum(-1, keepdim=True)
    # Not the (M, Q, N, D) negatives at once: 268 MB a class at the paper preset.
    negative = negative_similarity(queries, features, sample.negatives)
    logits = torch.cat([positive, negative], dim=-1) / tau
    per_query = torch.logsumexp(logits, dim=-1) - logits[..., 0]
    per_class = per_query.mean(dim=1) * sample.has_queries.to(per_query.dtype)
    return per_class.sum() / sample.classes.numel()


def _check_contrast_inputs(rep: Tensor, labels: Tensor, probs: Tensor) -> None:
    """Raise ``ValueError`` unless rep ``(N, D, *S)``, labels ``(N, *S)``, probs ``(N, C, *S)`` agree."""
    if rep.dim() < 3:
        raise ValueError(f"anatomical_contrast: rep must be (N, D, *spatial), got {tuple(rep.shape)}.")
    spatial = rep.shape[:1] + rep.shape[2:]
    if labels.shape != spatial:
        raise ValueError(f"anatomical_contrast: labels {tuple(labels.shape)} must be (N, *spatial) = {tuple(spatial)}.")
    if probs.dim() != rep.dim() or probs.shape[:1] + probs.shape[2:] != spatial:
        raise ValueError(
            f"anatomical_contrast: probs {tuple(probs.shape)} must be (N, C, *spatial) with "
            f"(N, *spatial) = {tuple(spatial)}."
        )
    _check_dense(probs, labels, "anatomical_contrast", ignore_index=-1)
    if bool((labels < -1).any()):
        raise ValueError("anatomical_contrast: labels must be class ids or -1.")


def cosine_temperature(
    step: int, total_steps: int, tau_min: float = 0.1, tau_max: float = 1.0, cycles: int = 1
) -> float:
    """ACTION++ adaptive temperature ``τ(t) = τ⁻ + ½ (τ⁺ − τ⁻)(1 + cos(2π·cycles·t / T))``.

    (ACTION++, You et al., MICCAI 2023.) Starts at ``tau_max``, reaches
    ``tau_min`` at ``T / (2·cycles)`` and returns to ``tau_max`` after each cycle.

    Parameters
    ----------
    step : int
        Current iteration ``t``.
    total_steps : int
        Period length ``T`` (total iterations).
    tau_min, tau_max : float
        Range of the temperature.
    cycles : int
        Number of cosine periods within ``total_steps``.
    """
    if total_steps <= 0 or cycles < 1:
        raise ValueError("cosine_temperature: total_steps and cycles must be >= 1.")
    if not 0 < tau_min <= tau_max:
        raise ValueError(f"cosine_temperature: need 0 < tau_min <= tau_max, got {tau_min}, {tau_max}.")
    phase = 2.0 * math.pi * cycles * step / total_steps
    return tau_min + 0.5 * (tau_max - tau_min) * (1.0 + math.cos(phase))

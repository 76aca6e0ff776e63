"""Tests for napari_action.training.losses against independently computed values."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_action.training.losses import (
    _sample_contrast,
    anatomical_contrast,
    cosine_temperature,
    dice_loss,
    distillation_kl,
    pseudo_label_loss,
    pseudo_labels,
    supervised_loss,
)

pytestmark = pytest.mark.usefixtures("torch_seed")

EPS = 1e-5


# --- supervised ---------------------------------------------------------------------------------


def test_dice_loss_by_hand():
    probs = torch.tensor([[[0.8, 0.3], [0.2, 0.7]]])  # (B=1, C=2, 2 pixels)
    target = torch.tensor([[0, 1]])
    class0 = 1 - (2 * 0.8 + EPS) / (0.8**2 + 0.3**2 + 1 + EPS)
    class1 = 1 - (2 * 0.7 + EPS) / (0.2**2 + 0.7**2 + 1 + EPS)
    assert dice_loss(probs, target).item() == pytest.approx((class0 + class1) / 2, rel=1e-6)


def test_dice_loss_present_only_skips_absent_classes_by_hand():
    probs = torch.tensor([[[0.6, 0.5], [0.1, 0.3], [0.3, 0.2]]])  # (B=1, C=3, 2 pixels)
    target = torch.tensor([[0, 2]])  # class 1 is absent from this crop
    class0 = 1 - (2 * 0.6 + EPS) / (0.6**2 + 0.5**2 + 1 + EPS)
    class1 = 1 - EPS / (0.1**2 + 0.3**2 + EPS)  # ~1 however small its probabilities are
    class2 = 1 - (2 * 0.2 + EPS) / (0.3**2 + 0.2**2 + 1 + EPS)
    assert dice_loss(probs, target, present_only=True).item() == pytest.approx((class0 + class2) / 2, rel=1e-6)
    assert dice_loss(probs, target).item() == pytest.approx((class0 + class1 + class2) / 3, rel=1e-6)


def test_supervised_loss_present_only_gives_absent_classes_no_dice_gradient():
    logits = torch.randn(1, 3, 4, 4, requires_grad=True)
    target = torch.zeros(1, 4, 4, dtype=torch.long)  # a background-only crop
    full = supervised_loss(logits, target)
    present = supervised_loss(logits, target, dice_present_only=True)
    ce = F.cross_entropy(logits, target)
    dice_background = dice_loss(torch.softmax(logits, 1)[:, :1], target)
    torch.testing.assert_close(present, 0.5 * (ce + dice_background))
    assert full > present  # the all-class mean adds ~1 per absent class


def test_dice_loss_perfect_prediction_is_zero():
    target = torch.randint(0, 3, (2, 8, 8))
    target[0, 0, 0] = 0  # class 2 may be absent: still scores 0 thanks to eps
    probs = F.one_hot(target, 3).movedim(-1, 1).float()
    assert dice_loss(probs, target).item() == pytest.approx(0.0, abs=1e-6)


def test_dice_loss_ignores_masked_pixels():
    probs = torch.softmax(torch.randn(1, 3, 4, 4), dim=1)
    target = torch.randint(0, 3, (1, 4, 4))
    target[0, :2] = -1
    changed = probs.clone()
    changed[0, :, :2] = torch.tensor([1.0, 0.0, 0.0])[:, None, None]
    expected = dice_loss(probs[:, :, 2:], target[:, 2:])
    torch.testing.assert_close(dice_loss(probs, target), expected)
    torch.testing.assert_close(dice_loss(changed, target), expected)


def test_supervised_loss_by_hand():
    logits = torch.tensor([[[2.0, 0.0], [0.0, 1.0]]])  # (1, 2, 2)
    target = torch.tensor([[0, 1]])
    p = [[math.exp(2) / (math.exp(2) + 1), 1 / (1 + math.e)], [1 / (math.exp(2) + 1), math.e / (1 + math.e)]]
    ce = -(math.log(p[0][0]) + math.log(p[1][1])) / 2
    dice0 = 1 - (2 * p[0][0] + EPS) / (p[0][0] ** 2 + p[0][1] ** 2 + 1 + EPS)
    dice1 = 1 - (2 * p[1][1] + EPS) / (p[1][0] ** 2 + p[1][1] ** 2 + 1 + EPS)
    expected = 0.5 * (ce + (dice0 + dice1) / 2)
    assert supervised_loss(logits, target).item() == pytest.approx(expected, rel=1e-6)


def test_supervised_loss_masks_ignored_pixels():
    logits = torch.randn(2, 3, 4, 4)
    target = torch.randint(0, 3, (2, 4, 4))
    target[:, :, :2] = -1
    expected = supervised_loss(logits[..., 2:], target[..., 2:])
    torch.testing.assert_close(supervised_loss(logits, target), expected)


def test_supervised_loss_all_ignored_is_differentiable_zero():
    logits = torch.randn(1, 2, 4, 4, requires_grad=True)
    loss = supervised_loss(logits, torch.full((1, 4, 4), -1))
    loss.backward()
    assert loss.item() == 0.0 and torch.count_nonzero(logits.grad) == 0


@pytest.mark.parametrize(
    "logits, target",
    [
        (torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long)),
        (torch.zeros(1, 2, 4, 4), torch.full((1, 4, 4), 2)),
        (torch.zeros(1, 2, 4, 4), torch.zeros(1, 4, 4)),
        (torch.zeros(2, 4), torch.zeros(2, dtype=torch.long)),
    ],
    ids=["shape", "class-out-of-range", "float-target", "no-spatial"],
)
def test_supervised_loss_rejects_bad_input(logits, target):
    with pytest.raises(ValueError, match="supervised_loss"):
        supervised_loss(logits, target)


# --- distillation -------------------------------------------------------------------------------


def _slow_kl(student, teacher, queue, tau_s, tau_t):
    """KL(P_t || P_s) with explicit loops over plain floats."""

    def unit(v):
        norm = math.sqrt(sum(x * x for x in v))
        return [x / norm for x in v]

    def softmax(sims, tau):
        exps = [math.exp(s / tau) for s in sims]
        return [e / sum(exps) for e in exps]

    anchors = [unit(a) for a in queue.tolist()]
    total = 0.0
    for s, t in zip(student.tolist(), teacher.tolist(), strict=True):
        s, t = unit(s), unit(t)
        p_s = softmax([sum(x * y for x, y in zip(s, a, strict=True)) for a in anchors], tau_s)
        p_t = softmax([sum(x * y for x, y in zip(t, a, strict=True)) for a in anchors], tau_t)
        total += sum(pt * math.log(pt / ps) for pt, ps in zip(p_t, p_s, strict=True))
    return total / len(student)


@pytest.mark.parametrize("tau_s, tau_t", [(0.1, 0.04), (0.5, 0.5)])
def test_distillation_kl_matches_loop(tau_s, tau_t):
    student, teacher, queue = torch.randn(2, 3), torch.randn(2, 3), torch.randn(4, 3)
    value = distillation_kl(student.double(), teacher.double(), queue.double(), tau_s, tau_t)
    assert value.item() == pytest.approx(_slow_kl(student, teacher, queue, tau_s, tau_t), rel=1e-9)


def test_distillation_kl_zero_for_identical_views_and_equal_temperatures():
    x = torch.randn(3, 4)
    assert distillation_kl(x, x, torch.randn(5, 4), 0.2, 0.2).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_kl_gradient_only_into_student():
    student = torch.randn(4, 6, requires_grad=True)
    teacher = torch.randn(4, 6, requires_grad=True)
    queue = torch.randn(5, 6, requires_grad=True)
    distillation_kl(student, teacher, queue).backward()
    assert student.grad is not None and torch.count_nonzero(student.grad) > 0
    assert teacher.grad is None and queue.grad is None


def test_distillation_kl_local_layout_is_per_window():
    student, teacher, queue = torch.randn(2, 36, 8), torch.randn(2, 36, 8), torch.randn(10, 8)
    flat = distillation_kl(student.reshape(72, 8), teacher.reshape(72, 8), queue)
    torch.testing.assert_close(distillation_kl(student, teacher, queue), flat)


@pytest.mark.parametrize(
    "student, teacher, queue",
    [
        (torch.zeros(2, 3), torch.zeros(2, 4), torch.zeros(5, 3)),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(5, 4)),
        (torch.zeros(2, 3), torch.zeros(2, 3), torch.zeros(0, 3)),
    ],
    ids=["student-teacher", "queue-dim", "empty-queue"],
)
def test_distillation_kl_rejects_bad_shapes(student, teacher, queue):
    with pytest.raises(ValueError, match="distillation_kl"):
        distillation_kl(student, teacher, queue)


# --- pseudo-labels ------------------------------------------------------------------------------


def test_pseudo_labels_are_argmax_and_max_probability():
    logits = torch.tensor([[[[3.0, 0.0]], [[1.0, 0.5]]]])  # (1, 2, 1, 2)
    labels, confidence = pseudo_labels(torch.softmax(logits, dim=1))
    assert labels.tolist() == [[[0, 1]]]
    expected = [math.exp(3) / (math.exp(3) + math.e), math.exp(0.5) / (1 + math.exp(0.5))]
    assert confidence.flatten().tolist() == pytest.approx(expected, rel=1e-6)


def test_pseudo_label_loss_weights_each_image():
    logits = torch.randn(2, 3, 2, 2)
    pseudo = torch.randint(0, 3, (2, 2, 2))
    confidence = torch.tensor([[[0.99, 0.5], [0.98, 0.1]], [[0.5, 0.5], [0.96, 0.2]]])
    valid = torch.ones(2, 2, 2, dtype=torch.bool)
    valid[0, 1, 1] = False  # image 0: 3 valid pixels, 2 reliable -> w = 2/3; image 1: w = 0
    weights = [2 / 3, 0.0]
    terms = []
    for b in range(2):
        for i in range(2):
            for j in range(2):
                if valid[b, i, j]:
                    log_p = torch.log_softmax(logits[b, :, i, j], dim=0)
                    terms.append(-weights[b] * log_p[pseudo[b, i, j]].item())
    value = pseudo_label_loss(logits, pseudo, confidence, threshold=0.97, valid=valid)
    assert value.item() == pytest.approx(sum(terms) / len(terms), rel=1e-6)


def test_pseudo_label_loss_negative_labels_are_invalid():
    logits = torch.randn(1, 2, 2, 2)
    pseudo = torch.tensor([[[0, 1], [-1, -1]]])
    confidence = torch.ones(1, 2, 2)
    expected = F.cross_entropy(logits[:, :, 0], pseudo[:, 0])
    torch.testing.assert_close(pseudo_label_loss(logits, pseudo, confidence), expected)


def test_pseudo_label_loss_without_valid_pixels_is_differentiable_zero():
    logits = torch.randn(1, 2, 2, 2, requires_grad=True)
    pseudo = torch.zeros(1, 2, 2, dtype=torch.long)
    loss = pseudo_label_loss(logits, pseudo, torch.ones(1, 2, 2), valid=torch.zeros(1, 2, 2, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0


def test_pseudo_label_loss_rejects_mismatched_confidence():
    with pytest.raises(ValueError, match="confidence"):
        pseudo_label_loss(torch.randn(1, 2, 2, 2), torch.zeros(1, 2, 2, dtype=torch.long), torch.ones(1, 2, 3))


# --- anatomical contrast ------------------------------------------------------------------------


def _unit_vectors(angles_deg):
    """(1, 2, 1, P) embeddings at the given angles."""
    angles = torch.tensor(angles_deg, dtype=torch.float64) * math.pi / 180
    return torch.stack([angles.cos(), angles.sin()])[None, :, None, :]


def _probs_with_own(labels, own, num_classes):
    """Softmax-like probabilities giving each pixel probability ``own`` for its label."""
    flat = labels.flatten().clamp(min=0)
    rest = (1 - own) / (num_classes - 1)
    probs = rest[:, None].repeat(1, num_classes)
    probs[torch.arange(flat.numel()), flat] = own
    return probs.T.reshape(1, num_classes, *labels.shape[1:])


def test_anatomical_contrast_single_hard_query_analytic():
    rep = _unit_vectors([0.0, 20.0, -40.0, 90.0])
    labels = torch.tensor([[[0, 0, 0, 1]]])
    own = torch.tensor([0.5, 0.99, 0.99, 0.99], dtype=torch.float64)  # only pixel 0 is hard
    probs = _probs_with_own(labels, own, 2)
    tau, n_neg = 0.5, 7
    f = rep[0, :, 0].T
    proto = F.normalize(f[:3].mean(0), dim=0)
    pos, neg = (f[0] @ proto).item() / tau, (f[0] @ f[3]).item() / tau
    class0 = -math.log(math.exp(pos) / (math.exp(pos) + n_neg * math.exp(neg)))
    value = anatomical_contrast(rep, labels, probs, num_queries=5, num_negatives=n_neg, tau=tau)
    assert value.item() == pytest.approx(class0 / 2, rel=1e-9)  # class 1 has no hard query


def _random_case(n=2, dim=4, size=6, num_classes=3):
    rep = F.normalize(torch.randn(n, dim, size, size, dtype=torch.float64), dim=1)
    labels = torch.randint(-1, num_classes, (n, size, size))
    probs = torch.softmax(torch.randn(n, num_classes, size, size, dtype=torch.float64) * 2, dim=1)
    return rep, labels, probs


def _sample_for(rep, labels, probs, seed, queries, negatives, tau=0.5, threshold=0.97):
    num_classes = probs.shape[1]
    features = F.normalize(rep.movedim(1, -1).reshape(-1, rep.shape[1]), dim=1)
    flat = labels.reshape(-1)
    own = probs.movedim(1, -1).reshape(-1, num_classes).gather(1, flat.clamp(min=0)[:, None]).squeeze(1)
    generator = torch.Generator().manual_seed(seed)
    sample = _sample_contrast(features, flat, own, num_classes, queries, negatives, tau, threshold, generator)
    return features, flat, own, sample


def test_anatomical_contrast_matches_slow_loop():
    rep, labels, probs = _random_case()
    tau, queries, negatives = 0.5, 4, 5
    features, flat, own, sample = _sample_for(rep, labels, probs, 3, queries, negatives, tau)
    f = features.tolist()
    present = sorted(set(flat[flat >= 0].tolist()))
    total = 0.0
    for k in present:
        members = [i for i in range(len(f)) if flat[i] == k]
        proto = [sum(f[i][d] for i in members) for d in range(len(f[0]))]
        norm = math.sqrt(sum(x * x for x in proto))
        proto = [x / norm for x in proto]
        row = present.index(k)
        if not any(own[i] < 0.97 for i in members):
            continue
        class_loss = 0.0
        for q in range(queries):
            query = f[sample.queries[row, q]]
            pos = math.exp(sum(a * b for a, b in zip(query, proto, strict=True)) / tau)
            neg = sum(
                math.exp(sum(a * b for a, b in zip(query, f[n], strict=True)) / tau)
                for n in sample.negatives[row, q].tolist()
            )
            class_loss += -math.log(pos / (pos + neg))
        total += class_loss / queries
    expected = total / len(present)
    generator = torch.Generator().manual_seed(3)
    value = anatomical_contrast(
        rep, labels, probs, num_queries=queries, num_negatives=negatives, tau=tau, generator=generator
    )
    assert value.item() == pytest.approx(expected, rel=1e-9)


def test_anatomical_contrast_sampler_respects_classes_and_hardness():
    rep, labels, probs = _random_case(size=8)
    _, flat, own, sample = _sample_for(rep, labels, probs, 0, 16, 32)
    for row, k in enumerate(sample.classes.tolist()):
        assert bool(sample.has_queries[row])
        assert (flat[sample.queries[row]] == k).all()
        assert (own[sample.queries[row]] < 0.97).all()
        negative_labels = flat[sample.negatives[row]]
        assert (negative_labels >= 0).all() and (negative_labels != k).all()


def test_anatomical_contrast_negative_classes_follow_class_relation():
    # Class 1 (30 deg from class 0) is much closer to class 0 than class 2 (120 deg).
    rep = _unit_vectors([0.0] * 4 + [30.0] * 4 + [120.0] * 4)
    labels = torch.tensor([[[0] * 4 + [1] * 4 + [2] * 4]])
    probs = torch.full((1, 3, 1, 12), 1 / 3, dtype=torch.float64)
    tau = 0.5
    _, flat, _, sample = _sample_for(rep, labels, probs, 0, 64, 128, tau)
    from_class1 = (flat[sample.negatives[0]] == 1).double().mean().item()
    sims = torch.tensor([math.cos(math.radians(30)), math.cos(math.radians(120))]) / tau
    expected = torch.softmax(sims, dim=0)[0].item()
    assert expected > 0.9
    assert from_class1 == pytest.approx(expected, abs=0.02)


def test_anatomical_contrast_gradient_only_into_queries():
    rep, labels, probs = _random_case()
    rep.requires_grad_(True)
    _, _, _, sample = _sample_for(rep, labels, probs, 5, 8, 16)
    generator = torch.Generator().manual_seed(5)
    anatomical_contrast(rep, labels, probs, num_queries=8, num_negatives=16, generator=generator).backward()
    has_grad = rep.grad.abs().sum(dim=1).flatten() > 0
    is_query = torch.zeros_like(has_grad)
    is_query[sample.queries[sample.has_queries].flatten()] = True
    assert torch.equal(has_grad, is_query)


def test_anatomical_contrast_is_reproducible_with_generator():
    rep, labels, probs = _random_case()
    values = [
        anatomical_contrast(
            rep, labels, probs, num_queries=8, num_negatives=8, generator=torch.Generator().manual_seed(1)
        )
        for _ in range(2)
    ]
    torch.testing.assert_close(values[0], values[1])


@pytest.mark.parametrize("case", ["one-class", "no-valid", "no-hard-pixel"])
def test_anatomical_contrast_zero_cases(case):
    rep = F.normalize(torch.randn(1, 4, 4, 4), dim=1).requires_grad_(True)
    labels = torch.randint(0, 2, (1, 4, 4))
    probs = torch.full((1, 2, 4, 4), 0.5)
    if case == "one-class":
        labels[labels == 1] = 0
    elif case == "no-valid":
        labels[:] = -1
    else:
        probs = F.one_hot(labels, 2).movedim(-1, 1).float()
    loss = anatomical_contrast(rep, labels, probs)
    loss.backward()
    assert loss.item() == 0.0 and rep.grad is not None


@pytest.mark.parametrize(
    "rep, labels, probs",
    [
        (torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 5, dtype=torch.long), torch.zeros(1, 2, 4, 4)),
        (torch.zeros(1, 4, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long), torch.zeros(1, 2, 4, 5)),
        (torch.zeros(1, 4, 4, 4), torch.full((1, 4, 4), 2), torch.zeros(1, 2, 4, 4)),
        (torch.zeros(1, 4, 4, 4), torch.full((1, 4, 4), -2), torch.zeros(1, 2, 4, 4)),
        (torch.zeros(4, 4), torch.zeros(4, dtype=torch.long), torch.zeros(2, 4)),
    ],
    ids=["labels-shape", "probs-shape", "class-out-of-range", "label-below-minus-one", "no-spatial"],
)
def test_anatomical_contrast_rejects_bad_input(rep, labels, probs):
    with pytest.raises(ValueError, match="anatomical_contrast"):
        anatomical_contrast(rep, labels, probs)


# --- ACTION++ temperature -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "step, total, cycles, expected",
    [(0, 100, 1, 1.0), (50, 100, 1, 0.1), (100, 100, 1, 1.0), (25, 100, 1, 0.55), (25, 100, 2, 0.1)],
)
def test_cosine_temperature(step, total, cycles, expected):
    assert cosine_temperature(step, total, 0.1, 1.0, cycles) == pytest.approx(expected)


@pytest.mark.parametrize("kwargs", [{"total_steps": 0}, {"tau_min": 2.0}, {"cycles": 0}])
def test_cosine_temperature_rejects_bad_arguments(kwargs):
    arguments = {"step": 0, "total_steps": 10, **kwargs}
    with pytest.raises(ValueError, match="cosine_temperature"):
        cosine_temperature(**arguments)

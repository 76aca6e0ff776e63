"""Tests for napari_action.networks.teacher: the EMA update, the frozen teacher, class growth and the queues."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from napari_action.networks.teacher import EmbeddingQueue, StudentTeacher, ema_update
from tests.helpers.engine import TINY_MODEL

pytestmark = pytest.mark.usefixtures("torch_seed")


def test_ema_update_matches_formula():
    student, teacher = torch.nn.BatchNorm1d(3), torch.nn.BatchNorm1d(3)
    with torch.no_grad():
        for module in (student, teacher):
            module.weight.normal_()
            module.bias.normal_()
            module.running_mean.normal_()
            module.running_var.uniform_(0.5, 2.0)
    student.num_batches_tracked.fill_(7)
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    ema_update(teacher, student, 0.9)
    for name in ("weight", "bias", "running_mean", "running_var"):
        expected = 0.9 * before[name] + 0.1 * student.state_dict()[name]
        torch.testing.assert_close(teacher.state_dict()[name], expected)
    assert int(teacher.num_batches_tracked) == 7


@pytest.mark.parametrize("momentum", [-0.1, 1.5])
def test_ema_update_rejects_bad_momentum(momentum):
    with pytest.raises(ValueError, match="momentum"):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2), momentum)


def test_ema_update_rejects_mismatched_modules():
    with pytest.raises(ValueError):
        ema_update(torch.nn.Linear(2, 2), torch.nn.Linear(2, 3), 0.9)


def test_teacher_stays_eval_and_frozen():
    pair = StudentTeacher(1, 2, TINY_MODEL)
    pair.train()
    assert pair.student.training and not pair.teacher.training
    assert not any(m.training for m in pair.teacher.modules())
    assert all(not p.requires_grad for p in pair.teacher.parameters())
    x = torch.randn(2, 1, 32, 32)
    pair.student(x).logits.sum().backward()
    assert all(p.grad is None for p in pair.teacher.parameters())
    # Eval mode: no dropout and running BN statistics, so repeated calls agree.
    torch.testing.assert_close(pair.teacher(x).logits, pair.teacher(x).logits)
    pair.eval()
    assert not pair.student.training and not pair.teacher.training


def test_student_teacher_ema_and_sync():
    pair = StudentTeacher(1, 2, TINY_MODEL)
    with torch.no_grad():
        for p in pair.student.parameters():
            p.add_(1.0)
    t0 = pair.teacher.unet.out_conv.weight.clone()
    s = pair.student.unet.out_conv.weight.detach()
    pair.ema_update(0.99)
    torch.testing.assert_close(pair.teacher.unet.out_conv.weight, 0.99 * t0 + 0.01 * s)
    pair.sync_teacher()
    for name, value in pair.student.state_dict().items():
        torch.testing.assert_close(pair.teacher.state_dict()[name], value)
    assert all(not p.requires_grad for p in pair.teacher.parameters())


def test_add_classes_keeps_old_outputs():
    pair = StudentTeacher(1, 2, TINY_MODEL).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        old = pair.student(x)
        old_local = pair.student.local_head(old.logits)
        old_pred = pair.student.local_predictor(old_local)
    assert pair.add_classes(2) == 4
    with torch.no_grad():
        new = pair.student(x)
        new_local = pair.student.local_head(new.logits)
        new_pred = pair.student.local_predictor(new_local)
    assert new.logits.shape == (2, 4, 32, 32)
    torch.testing.assert_close(new.logits[:, :2], old.logits)
    assert new_local.shape == (2, 36, 4 * 64)
    torch.testing.assert_close(new_local[..., : 2 * 64], old_local)
    torch.testing.assert_close(new_pred[..., : 2 * 64], old_pred)
    for name, value in pair.student.state_dict().items():
        torch.testing.assert_close(pair.teacher.state_dict()[name], value)
    assert not pair.teacher.training and all(not p.requires_grad for p in pair.teacher.parameters())
    with pytest.raises(ValueError, match="n_new"):
        pair.add_classes(0)


def test_queue_fifo_wraps_around():
    queue = EmbeddingQueue(size=4, dim=2)
    assert not queue.ready and len(queue) == 0
    vectors = F.normalize(torch.randn(7, 2), dim=1)
    queue.enqueue(vectors[:3])
    assert queue.ready and len(queue) == 3
    torch.testing.assert_close(queue.entries(), vectors[:3])
    queue.enqueue(vectors[3:6])  # 3 rows, only 1 free slot: wraps to the front
    torch.testing.assert_close(queue.entries(), vectors[[4, 5, 2, 3]])
    assert int(queue.ptr) == 2 and len(queue) == 4
    queue.enqueue(vectors[6:7])
    torch.testing.assert_close(queue.entries(), vectors[[4, 5, 6, 3]])


def test_queue_keeps_last_rows_of_oversized_batch_and_normalises():
    queue = EmbeddingQueue(size=3, dim=2)
    batch = torch.randn(2, 4, 2) * 5  # (..., dim) is flattened
    queue.enqueue(batch)
    stored = F.normalize(batch.reshape(-1, 2), dim=1)[-3:]
    assert set(map(tuple, queue.entries().tolist())) == set(map(tuple, stored.tolist()))
    torch.testing.assert_close(queue.entries().norm(dim=1), torch.ones(3))


def test_queue_state_dict_and_refused_embedding_size():
    queue = EmbeddingQueue(size=3, dim=2)
    queue.enqueue(torch.randn(2, 2))
    assert {"queue", "ptr", "count"} <= set(queue.state_dict())  # saved with the checkpoint
    with pytest.raises(ValueError, match="enqueue"):
        queue.enqueue(torch.randn(1, 5))

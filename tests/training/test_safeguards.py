"""A diverging loss and a full GPU do not cost the user their model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_action.training.safeguards import BATCH_FIELDS, TrainingDivergedError, WeightSnapshot, halve_batches
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, out_of_memory_hook, sparse, tiny_config


@pytest.fixture
def painted():
    image, truth = disc_volume(0)
    return image, sparse(truth)


def _weights(trainer: Trainer) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in trainer.nets.state_dict().items()}


def test_a_diverging_loss_stops_training_and_puts_the_last_good_weights_back(painted):
    image, labels = painted
    # A learning rate this large sends the weights to infinity within a few steps.
    trainer = Trainer([image], [labels], tiny_config(lr=1e4, steps_stage3=20))
    before = _weights(trainer)
    with pytest.raises(TrainingDivergedError, match=r"loss became nan .*back to its weights after step 0"):
        trainer.train()
    after = trainer.nets.state_dict()
    assert all(torch.equal(after[name], value) for name, value in before.items())
    labels_out, probabilities = trainer.predictor().predict(image)
    assert np.isfinite(probabilities).all() and labels_out.shape == image.shape


def test_a_snapshot_keeps_the_older_weights_when_the_new_ones_are_not_finite():
    module = torch.nn.Linear(2, 2)
    snapshot = WeightSnapshot(every=1)
    snapshot.take(module, 1)
    good = module.weight.detach().clone()
    with torch.no_grad():
        module.weight.fill_(float("inf"))
    snapshot.take(module, 2)
    assert snapshot.step == 1
    assert snapshot.restore(module) and torch.equal(module.weight, good)


def test_a_snapshot_does_not_restore_into_a_model_with_other_shapes():
    snapshot = WeightSnapshot()
    snapshot.take(torch.nn.Linear(2, 2), 0)
    assert not snapshot.restore(torch.nn.Linear(2, 3))


def test_running_out_of_gpu_memory_halves_the_batches_says_so_and_goes_on(painted):
    image, labels = painted
    config = tiny_config(steps_stage1=0, steps_stage2=0, steps_stage3=3, batch_labeled_stage3=4)
    trainer = Trainer([image], [labels], config)
    trainer.nets.student.register_forward_pre_hook(out_of_memory_hook(times=1))
    progress = trainer.train()
    assert [p.step for p in progress] == [1, 2, 3]
    assert "memory was full" in progress[0].notice and "stage iii: 2 + 1" in progress[0].notice
    assert all(p.notice is None for p in progress[1:])
    assert (trainer.config.batch_labeled_stage3, trainer.config.batch_unlabeled_stage3) == (2, 1)


def test_out_of_memory_with_single_crops_asks_for_the_cpu(painted):
    image, labels = painted
    trainer = Trainer([image], [labels], tiny_config(**dict.fromkeys(BATCH_FIELDS, 1)))
    trainer.nets.student.register_forward_pre_hook(out_of_memory_hook(times=100))
    with pytest.raises(MemoryError, match=r"even with one crop per batch\. Train on the CPU"):
        trainer.train()
    assert halve_batches(trainer.config) is None

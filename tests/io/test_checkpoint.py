"""Checkpoints: train -> save -> load -> predict, and clear errors on foreign files."""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import torch

from napari_action.inference.predictor import Predictor
from napari_action.io.checkpoint import CheckpointError, load_checkpoint
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config(), class_names={1: "core", 2: "ring"})
    trainer.train()
    path = trainer.save_checkpoint(tmp_path_factory.mktemp("ckpt") / "model.pt")
    return trainer, path, image


def test_saved_file_has_normal_permissions(trained):
    # Checkpoints share the atomic writer of label files; they used to be private (0600) files.
    _, path, _ = trained
    umask = os.umask(0o022)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask


def test_round_trip_keeps_everything(trained):
    trainer, path, image = trained
    ckpt = load_checkpoint(path)
    assert ckpt.class_values == [0, 1, 2]
    assert ckpt.class_names == {1: "core", 2: "ring"}
    assert ckpt.axis == trainer.axis and ckpt.step == trainer.step == 7
    assert ckpt.config.to_dict() == trainer.config.to_dict()
    expected, _ = trainer.predictor().predict(image)
    loaded, _ = Predictor.from_checkpoint(path, device="cpu").predict(image)
    np.testing.assert_array_equal(expected, loaded)


def test_resume_training_from_checkpoint(trained):
    _, path, image = trained
    _, truth = disc_volume(0)
    resumed = Trainer([image], [sparse(truth)], tiny_config(), init=path)
    progress = resumed.train()
    # A loaded model is past its warm-up: training continues with stage iii.
    assert {p.stage for p in progress} == {"stage iii: ACTION"}


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "other.pt"
    torch.save({"state_dict": {}}, path)
    with pytest.raises(CheckpointError, match="not a napari-action checkpoint"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "content",
    [np.random.default_rng(0).bytes(4096), b"not a model at all\n", pickle.dumps([1, 2, 3])],
    ids=["random bytes", "text", "pickled list"],
)
def test_any_other_file_gets_the_same_plain_refusal(tmp_path, content):
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    # The plain refusal with what to do, never the unpickler's internals.
    assert str(refused.value) == (
        f"{path} is not a napari-action checkpoint (save one with 'Save model…' "
        "or 'napari-action train --out MODEL.pt')."
    )


def test_truncated_file_is_refused(trained, tmp_path):
    _, path, _ = trained
    broken = tmp_path / "broken.pt"
    broken.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="damaged|truncated|cannot be read"):
        load_checkpoint(broken)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nothing.pt")


def test_failed_save_keeps_previous_file(trained, monkeypatch):
    trainer, path, _ = trained
    before = path.read_bytes()

    def explode(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", explode)
    with pytest.raises(OSError, match="disk full"):
        trainer.save_checkpoint(path)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]

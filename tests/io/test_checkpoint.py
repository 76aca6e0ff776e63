"""Checkpoints: train -> save -> load -> predict, and clear errors on foreign files."""

from __future__ import annotations

import errno
import os
import pickle
import shutil

import numpy as np
import pytest
import torch

from napari_action.inference.predictor import Predictor
from napari_action.io.atomic import STALE_AFTER_S
from napari_action.io.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config
from tests.helpers.os_limits import Outcome, kill_when, make_old, parts_of, read_only, run_save, start_save

# Child code: read the checkpoint args[0], one step further; with args[2] (a count) it
# carries that many 1 MiB tensors more, to take a while to write. Then save it to args[1].
_LOAD = """
import torch
from napari_action.io.checkpoint import load_checkpoint, save_checkpoint
ckpt = load_checkpoint(args[0])
ckpt.step += 1
if len(args) > 2:
    ckpt.extra["ballast"] = [torch.full((1 << 18,), float(i)) for i in range(int(args[2]))]
"""
_SAVE = "save_checkpoint(args[1], ckpt)"


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


def test_an_existing_file_is_kept_when_overwrite_is_off(trained):
    trainer, path, _ = trained
    before = path.read_bytes()
    with pytest.raises(FileExistsError, match=r"model\.pt already exists; choose another name"):
        save_checkpoint(path, trainer.checkpoint(), overwrite=False)
    assert path.read_bytes() == before


def test_saving_into_a_folder_that_is_not_writable_says_what_to_do(trained, tmp_path):
    _, path, _ = trained
    folder = tmp_path / "locked"
    folder.mkdir()
    target = shutil.copy(path, folder / "model.pt")
    with read_only(folder):
        outcome = run_save(_SAVE, path, target, setup=_LOAD, unwritable=True)
    assert outcome == Outcome(
        "PermissionError",
        errno.EACCES,
        f"cannot write {target}: the folder {folder} is not writable (Permission denied); "
        "choose another folder (or fix its permissions).",
    )
    assert target.read_bytes() == path.read_bytes() and list(folder.iterdir()) == [target]


def test_a_full_disk_says_so_and_keeps_the_previous_checkpoint(trained, tmp_path):
    _, path, _ = trained
    target = shutil.copy(path, tmp_path / "model.pt")
    # torch reports the refused write as a RuntimeError; the user still reads the plain cause.
    outcome = run_save(_SAVE, path, target, setup=_LOAD, file_size_limit=64 << 10)
    assert outcome == Outcome(
        "OSError",
        errno.EFBIG,
        f"could not write {target}: the disk is full or the file is too large (File too large); "
        f"free some space and save again — {target} is unchanged.",
    )
    assert target.read_bytes() == path.read_bytes() and list(tmp_path.iterdir()) == [target]


def test_a_save_killed_half_way_keeps_the_previous_checkpoint(trained, tmp_path):
    trainer, path, _ = trained
    target = shutil.copy(path, tmp_path / "model.pt")
    process = start_save(_SAVE, path, target, 128, setup=_LOAD)  # 128 MiB: killed after the first MiB
    kill_when(process, lambda: any(part.stat().st_size > 1 << 20 for part in parts_of(target)))
    assert target.read_bytes() == path.read_bytes()
    assert load_checkpoint(target).step == trainer.step
    [leftover] = parts_of(target)
    make_old(leftover, STALE_AFTER_S + 1)  # the user saves again a while later
    save_checkpoint(target, trainer.checkpoint())
    assert list(tmp_path.iterdir()) == [target]

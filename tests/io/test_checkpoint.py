"""Checkpoints: train -> save -> load -> predict, and plain refusals of every file that cannot be loaded."""

from __future__ import annotations

import errno
import os
import pickle
import shutil
import zipfile

import numpy as np
import pytest
import torch

from napari_action import __version__
from napari_action.inference.predictor import Predictor
from napari_action.io.atomic import STALE_AFTER_S
from napari_action.io.checkpoint import FORMAT_VERSION, CheckpointError, load_checkpoint, save_checkpoint
from napari_action.training.trainer import Trainer
from tests.helpers.engine import disc_volume, sparse, tiny_config, write_nifti
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
_IMPORT_LOAD = "from napari_action.io.checkpoint import load_checkpoint"


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


def test_saving_a_trainer_in_place_of_its_checkpoint_says_how_to_save_it(trained, tmp_path):
    # Raised AttributeError: 'Trainer' object has no attribute 'version', after making the folder.
    trainer, _, _ = trained
    target = tmp_path / "models" / "model.pt"
    with pytest.raises(
        TypeError, match=r"got a Trainer\. Save a trainer's model with trainer\.save_checkpoint\(path\)"
    ):
        save_checkpoint(target, trainer)
    assert not target.parent.exists()


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


def refusal(path, *, caused: bool = True) -> str:
    """The message :func:`load_checkpoint` refuses ``path`` with; torch's own words never reach it.

    ``caused``: the refusal comes from an error of torch or the OS, which stays its ``__cause__``
    for a debugger (False: napari-action itself refused what it read).
    """
    with pytest.raises(CheckpointError) as refused:
        load_checkpoint(path)
    message = str(refused.value)
    for internal in ("Errno", "PytorchStreamReader", "miniz", "zip archive", "Weights only load failed"):
        assert internal not in message, message
    assert (refused.value.__cause__ is not None) is caused
    return message


# 10 000 bytes: torch's zip reader seeks before the start of a file this short for the archive's directory, and
# the OS's "invalid argument" for that seek read as a bad path ("check the path and try again").
@pytest.mark.parametrize(
    "kept", [4, 1000, 10_000, 0.5, -1], ids=["4 bytes", "1000 bytes", "10000 bytes", "half", "all but 1 byte"]
)
def test_a_truncated_checkpoint_says_so_in_plain_words(trained, tmp_path, kept):
    _, path, _ = trained
    whole = path.read_bytes()
    broken = tmp_path / "broken.pt"
    broken.write_bytes(whole[: int(len(whole) * kept) if isinstance(kept, float) else kept])
    assert refusal(broken) == (
        f"{broken} is a damaged or truncated checkpoint (incomplete or corrupt, e.g. a copy or download "
        "that stopped early); copy or save the model again."
    )


def test_an_empty_file_is_named_as_such(tmp_path):
    empty = tmp_path / "model.pt"
    empty.touch()
    assert refusal(empty) == (
        f"{empty} is empty (0 bytes), not a checkpoint: the save or copy that made it did not finish; "
        "save or copy the model again."
    )


@pytest.mark.parametrize("name", ["scan.nii.gz", "scan.nii"])
def test_an_image_given_as_model_is_named_as_an_image(tmp_path, name):
    image = write_nifti(tmp_path / name, disc_volume(0)[0])
    assert refusal(image) == (
        f"{image} is a NIfTI image, not a napari-action checkpoint (save one with 'Save model…' "
        "or 'napari-action train --out MODEL.pt')."
    )


def test_another_programs_zip_archive_is_not_a_checkpoint(tmp_path):
    archive = tmp_path / "model.pt"
    with zipfile.ZipFile(archive, "w") as content:
        content.writestr("weights.txt", "0.1 0.2 0.3")
    assert refusal(archive).startswith(f"{archive} is not a napari-action checkpoint (save one with")


def test_missing_file_is_refused(tmp_path):
    missing = tmp_path / "nothing.pt"
    assert refusal(missing) == f"{missing} does not exist; check its name and the folder it is in."
    deeper = tmp_path / "runs" / "model.pt"
    assert refusal(deeper) == (
        f"{deeper} does not exist: there is no folder {tmp_path / 'runs'}; check the path (or create the folder)."
    )


def test_a_folder_given_as_checkpoint_is_refused(tmp_path):
    assert refusal(tmp_path) == f"{tmp_path} is a folder, but a file is needed there; give the path of a file."


def test_a_checkpoint_this_user_may_not_read_says_so(trained, tmp_path):
    _, path, _ = trained
    locked = shutil.copy(path, tmp_path / "model.pt")
    os.chmod(locked, 0)
    try:
        # A fresh process without root's override: the kernel itself refuses the read.
        outcome = run_save("load_checkpoint(args[0])", locked, setup=_IMPORT_LOAD, unwritable=True)
    finally:
        os.chmod(locked, 0o644)
    assert outcome == Outcome(
        "CheckpointError",
        None,
        f"cannot open {locked}: you do not have permission (Permission denied); fix its permissions, "
        "or use a copy you own.",
    )


def _rewrite_payload(source, target, **changes) -> None:
    """Save ``source``'s content with ``changes``, as another napari-action version would have written it."""
    payload = torch.load(source, map_location="cpu", weights_only=True)
    for key, value in changes.items():
        payload[key] = value(payload[key]) if callable(value) else value
    torch.save(payload, target)


def test_a_checkpoint_of_a_newer_format_asks_for_an_upgrade(trained, tmp_path):
    _, path, _ = trained
    newer = tmp_path / "newer.pt"
    _rewrite_payload(path, newer, format_version=FORMAT_VERSION + 1, version="9.0.0")
    assert refusal(newer, caused=False) == (
        f"{newer} was written by napari-action 9.0.0, newer than this one ({__version__}); "
        "upgrade napari-action (pip install --upgrade napari-action) to open it."
    )


def test_a_newer_release_with_settings_unknown_here_asks_for_an_upgrade_not_a_new_save(trained, tmp_path):
    _, path, _ = trained
    newer, edited = tmp_path / "newer.pt", tmp_path / "edited.pt"

    def with_new_setting(config: dict) -> dict:
        return {**config, "setting_of_a_later_release": 1}

    _rewrite_payload(path, newer, config=with_new_setting, version="9.0.0")
    assert refusal(newer).startswith(f"{newer} was written by napari-action 9.0.0, newer than this one")
    # The same unknown setting in a file of this very version: damaged, not newer.
    _rewrite_payload(path, edited, config=with_new_setting)
    assert refusal(edited) == (
        f"{edited} is a damaged or incomplete napari-action checkpoint (Unknown TrainConfig fields: "
        "['setting_of_a_later_release']); save the model again."
    )


def test_a_model_saved_with_settings_later_renamed_loads_with_them(trained, tmp_path):
    # A model of early December: smoothing in slices, the hard bound at the propagated extent,
    # amp = None for "bfloat16 where the CPU has it"; refused as "damaged, save again" before.
    _, path, image = trained
    earlier = tmp_path / "earlier.pt"

    def as_then(config: dict) -> dict:
        config = {**config, "predict_smoothing": 0.0, "predict_within_propagated_extent": False, "amp": None}
        for renamed in ("predict_smoothing_mm", "structure_ends", "cpu_bfloat16"):
            del config[renamed]
        return config

    _rewrite_payload(path, earlier, config=as_then)
    config = load_checkpoint(earlier).config
    assert (config.predict_smoothing_mm, config.structure_ends) == (0.0, "network")
    assert (config.amp, config.cpu_bfloat16) == (False, None)
    labels, _ = Predictor.from_checkpoint(earlier, device="cpu").predict(image)
    assert labels.shape == image.shape


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

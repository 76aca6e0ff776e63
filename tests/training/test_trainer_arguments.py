"""What the trainer refuses before training, and says how to give instead: images, labels, voxel sizes, config,
names, the model to continue, the steps."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.training.trainer import Trainer
from tests.helpers.engine import AXIS, PAINTED, disc_volume, sparse, tiny_config


@pytest.mark.parametrize(
    ("volumes", "labels", "message"),
    [
        ([np.zeros((8, 8))], [], "3D"),
        ([np.zeros((8, 8, 4))], [np.zeros((8, 8, 5), np.uint8)], "shape"),
        ([np.zeros((8, 8, 4))], [np.zeros((8, 8, 4), np.uint8)], "Paint"),
        ([np.zeros((8, 8, 4)), np.zeros((8, 8, 4))], [None, None, None], "label volumes"),
        ([], [], "at least one"),
    ],
)
def test_bad_input_is_explained(volumes, labels, message):
    with pytest.raises(ValueError, match=message):
        Trainer(volumes, labels, tiny_config())


@pytest.mark.parametrize("size", [np.nan, np.inf, 0.0])
def test_a_voxel_size_that_is_not_positive_and_finite_is_refused(size):
    # NaN trained on without a word (it passed "min(s) <= 0"), every distance in millimetres NaN.
    image, truth = disc_volume(0)
    with pytest.raises(ValueError, match=r"Give one positive, finite \(x, y, z\) voxel size in mm per image"):
        Trainer([image], [sparse(truth)], tiny_config(), spacings=[(0.8, size, 3.0)])


def test_torch_tensors_train_like_the_arrays_they_hold_and_are_left_as_they_were():
    # Raised "TypeError: Cannot interpret 'torch.float32' as a data type" for an image tensor and a TypeError
    # about torch's any() for a label tensor, where the predictor and evaluate take tensors.
    import torch

    image, truth = disc_volume(0)
    labels = sparse(truth)
    config = tiny_config(method="supervised", steps_stage3=2)
    image_tensor, label_tensor = torch.from_numpy(image.copy()), torch.from_numpy(labels.copy())
    from_tensors = Trainer([image_tensor], [label_tensor], config).train()
    from_arrays = Trainer([image], [labels], config).train()
    assert [p.losses for p in from_tensors] == [p.losses for p in from_arrays]
    assert torch.equal(image_tensor, torch.from_numpy(image)) and torch.equal(label_tensor, torch.from_numpy(labels))
    # numpy has no bfloat16: such an image is read as float32.
    assert Trainer([image_tensor.bfloat16()], [label_tensor], config).train()


def test_file_names_where_arrays_are_expected_are_refused_saying_how_to_read_them(tmp_path):
    # Said "Image 0 has shape (); ACTION trains on 3D volumes" (one name: each of its letters an image), or
    # "Labels of volume 0 have shape (), but the volume has shape (32, 32, 10)".
    image, truth = disc_volume(0)
    labels = sparse(truth)
    read_image = r"not file names \(got 'scan.nii.gz'\); read each file first: array, meta = load_volume\(path\)"
    with pytest.raises(TypeError, match="Give the images as arrays, " + read_image):
        Trainer(["scan.nii.gz"], [labels], tiny_config())
    with pytest.raises(TypeError, match="Give the images as arrays, " + read_image):
        Trainer("scan.nii.gz", [labels], tiny_config())
    with pytest.raises(TypeError, match=r"Give the labels as arrays, .* = load_labels\(path\)"):
        Trainer([image], [tmp_path / "painted.nii.gz"], tiny_config())
    trainer = Trainer((v for v in [image]), (v for v in [labels]), tiny_config())  # generators are read once
    with pytest.raises(TypeError, match=r"not a file name \('scan.nii.gz'\): read it with image, meta = load_volume"):
        next(trainer.predict_volume("scan.nii.gz"))


def test_one_array_where_a_list_is_expected_is_refused_saying_to_put_it_in_a_list():
    # Iterated, the 3D array became 32 two-dimensional images: "Image 0 has shape (32, 10); ACTION trains on
    # 3D volumes", or for the labels "Got 32 label volumes for 1 images".
    image, truth = disc_volume(0)
    labels = sparse(truth)
    put_in_a_list = r"got one array of shape \(32, 32, 10\): put it in a list: Trainer\(\[image\], \[labels\]\)"
    with pytest.raises(TypeError, match="Give the images as a list, one per image; " + put_in_a_list):
        Trainer(image, [labels], tiny_config())
    with pytest.raises(TypeError, match="Give the labels as a list, one per image; " + put_in_a_list):
        Trainer([image], labels, tiny_config())
    with pytest.raises(TypeError, match=r"one per image in the images' order; got a dict"):
        Trainer([image], {0: labels}, tiny_config())
    with pytest.raises(TypeError, match=r"got one: \(0.8, 0.8, 3.0\). Put it in a list: spacings=\[\(x, y, z\)\]"):
        Trainer([image], [labels], tiny_config(), spacings=(0.8, 0.8, 3.0))
    with pytest.raises(TypeError, match=r"Put it in a list: affines=\[affine\]"):
        Trainer([image], [labels], tiny_config(), affines=np.eye(4))
    # Any iterable of them is a list of them, read once: the labels' generator still gives the axis advice.
    stray = labels.copy()
    stray[:, 16, :] = 1  # a slice painted along axis 1 beside the ones along AXIS
    trainer = Trainer((v for v in [image]), (v for v in [stray]), tiny_config(axis=AXIS, method="supervised"))
    assert trainer.axis == AXIS and any("along axis 1" in advice for advice in trainer.advice)


@pytest.mark.parametrize(
    ("config", "how"),
    [({"steps_stage3": 3}, r"TrainConfig.preset\('cpu', \*\*settings\)"), ("paper", r"TrainConfig.preset\('paper'\)")],
)
def test_a_config_that_is_not_a_train_config_is_refused_saying_how_to_build_one(config, how):
    # Raised AttributeError: 'dict' object has no attribute 'validate' (an empty dict trained with the defaults).
    image, truth = disc_volume(0)
    with pytest.raises(TypeError, match=f"config must be a TrainConfig, got a {type(config).__name__}; .*{how}"):
        Trainer([image], [sparse(truth)], config)
    with pytest.raises(TypeError, match="got a dict"):
        Trainer([image], [sparse(truth)], {})


def test_nan_voxels_are_refused_with_a_count():
    image, truth = disc_volume(0)
    image[0, 0, :3] = np.nan
    with pytest.raises(ValueError, match="3"):
        Trainer([image], [sparse(truth)], tiny_config())
    # Which of several images holds them (the message named none).
    with pytest.raises(ValueError, match="^Image 1: The image contains 3 NaN and 0 infinite voxels"):
        Trainer([disc_volume(1)[0], image], [sparse(truth)], tiny_config())


@pytest.mark.parametrize("method", ["action", "mean-teacher"])
def test_every_slice_painted_is_refused_before_training_when_the_method_needs_unpainted_slices(method):
    # Failed after the supervised start with "No unlabeled slices to sample from." (an expert mask given whole).
    image, truth = disc_volume(0)
    with pytest.raises(ValueError, match=f"All {truth.shape[AXIS]} slices along axis {AXIS} are painted") as error:
        Trainer([image], [truth], tiny_config(method=method, axis=AXIS))
    assert "supervised" in str(error.value) and "a few slices" in str(error.value)


def test_every_slice_painted_because_of_a_slice_painted_along_another_axis_says_so():
    image, truth = disc_volume(0)
    labels = sparse(truth)
    labels[:, 16, :] = 1  # a slip in another view: slice 16 along axis 1 crosses every slice along AXIS
    with pytest.raises(ValueError, match="there are none") as error:
        Trainer([image], [labels], tiny_config(axis=AXIS))
    assert f"Paint on slice 16 along axis 1 crosses {truth.shape[AXIS] - len(PAINTED)} slices" in str(error.value)


def test_a_layer_of_countless_values_is_refused_before_training():
    # A scan converted to a Labels layer (or given as labels) trained one output per grey value, for hours.
    image, truth = disc_volume(0)
    labels = sparse(truth).astype(np.int32)
    labels[labels > 0] = np.arange(1, np.count_nonzero(labels) + 1)
    with pytest.raises(ValueError, match=r"The painted labels hold \d+ different values .* a scan, most likely"):
        Trainer([image], [labels], tiny_config(axis=AXIS))


def test_every_slice_painted_trains_supervised_or_beside_an_unpainted_image():
    image, truth = disc_volume(0)
    other, _ = disc_volume(1)
    assert len(Trainer([image], [truth], tiny_config(method="supervised", axis=AXIS)).train()) == 3
    assert Trainer([image, other], [truth], tiny_config(axis=AXIS)).train()[-1].stage == "stage iii: ACTION"


def test_labeled_slices_not_given_as_a_mapping_are_refused_showing_the_form_to_use():
    # A list of slices per image raised AttributeError: 'list' object has no attribute 'items', and one
    # slice given as a number TypeError: object of type 'int' has no len(), at Trainer() and at update_annotation.
    image, truth = disc_volume(0)
    labels = [sparse(truth)]
    form = r"e.g. \{0: \[3, 9\]\} for slices 3 and 9 of the first image"
    with pytest.raises(TypeError, match=r"Give labeled_slices as a mapping of image index to slice indices, " + form):
        Trainer([image], labels, tiny_config(), labeled_slices=[[1]])
    with pytest.raises(TypeError, match=r"labeled_slices\[0\] must list slice indices, " + form + "; got 1"):
        Trainer([image], labels, tiny_config(), labeled_slices={0: 1})
    trainer = Trainer([image], labels, tiny_config(), labeled_slices={0.0: np.array([1])})  # whole numbers of any kind
    assert 1 in trainer.annotation.labeled_slices(0)
    with pytest.raises(TypeError, match=r"Give labeled_slices as a mapping"):
        trainer.update_annotation(labels, labeled_slices=[[1]])


def test_names_not_one_per_image_are_refused():
    # One name for two images, the second with a NaN voxel: IndexError: list index out of range, where the
    # message about the NaN voxel was to name the image; one name as a string named images by its letters.
    image, truth = disc_volume(0)
    other = image.copy()
    other[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match=r"Give one name per image; got 1 names for 2 images"):
        Trainer([image, other], [sparse(truth)], tiny_config(), names=["scan"])
    with pytest.raises(TypeError, match=r"Give the names as a list, one per image; got one: 'scan'"):
        Trainer([image], [sparse(truth)], tiny_config(), names="scan")
    with pytest.raises(ValueError, match=r"^'other': The image contains 1 NaN"):
        Trainer([image, other], [sparse(truth)], tiny_config(), names=("scan", "other"))


def test_an_init_that_is_no_model_is_refused_saying_what_to_give(supervised_trainer):
    # init=trainer (continue the model trained above) raised AttributeError: 'Trainer' object has no attribute
    # 'config'; its checkpoint is what continues it.
    image, truth = disc_volume(0)
    with pytest.raises(TypeError, match=r"init must be a model file's path or a Checkpoint; got a Trainer\. .*"):
        Trainer([image], [sparse(truth)], tiny_config(), init=supervised_trainer)
    continued = Trainer([image], [sparse(truth)], tiny_config(), init=supervised_trainer.checkpoint())
    assert continued.rounds == 1


def test_an_init_along_another_axis_than_the_configured_one_is_refused_saying_which_to_drop(supervised_trainer):
    # The model's axis won without a word (the command line refuses it since; the Python API did not).
    image, truth = disc_volume(0)
    other_axis = (AXIS + 1) % 3
    with pytest.raises(
        ValueError, match=rf"config.axis is {other_axis}, but the model to continue \(init\) slices along "
    ):
        Trainer([image], [sparse(truth)], tiny_config(axis=other_axis), init=supervised_trainer.checkpoint())
    assert Trainer([image], [sparse(truth)], tiny_config(axis=AXIS), init=supervised_trainer.checkpoint()).axis == AXIS


@pytest.mark.parametrize(("steps", "refused"), [(-1, "steps must be 0 or more"), (2.5, "steps must be an integer")])
def test_a_last_stage_length_that_is_not_a_count_of_steps_is_refused(steps, refused):
    # steps=-1 ran the supervised start alone, no ACTION step, and counted the warm-up done; 2.5 ran 2 steps.
    image, truth = disc_volume(0)
    trainer = Trainer([image], [sparse(truth)], tiny_config())
    with pytest.raises(ValueError, match=refused):
        trainer.train(steps)
    assert trainer.step == 0 and trainer.rounds == 0

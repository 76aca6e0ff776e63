"""Tests for napari_action.data.augment: joint geometric transforms, photometric views and CutMix (no Qt)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from napari_action.data.augment import cutmix, cutmix_box, random_geometric, strong_photometric


def generator(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def block_labels(b: int = 3, size: int = 24) -> torch.Tensor:
    """Integer maps with large blocks of classes 0..3, different per sample."""
    y = torch.zeros(b, size, size, dtype=torch.int64)
    for i in range(b):
        y[i, 2 + i : 12 + i, 3:15] = 1
        y[i, 14:22, 5 + i : 20] = 2
        y[i, 4:9, 17:22] = 3
    return y


def test_flips_and_rot90_are_exact_and_joint():
    targets = block_labels(4)
    images = targets.unsqueeze(1).float()
    out_images, out_targets, _ = random_geometric(
        images,
        targets,
        None,
        generator(3),
        max_rotation_deg=0.0,
        scale_range=(1.0, 1.0),
        p_flip=0.5,
        p_rot90=1.0,
    )
    torch.testing.assert_close(out_images[:, 0], out_targets.float(), atol=1e-4, rtol=0)
    for i in range(4):  # every output is one of the 8 symmetries of its input
        variants = [torch.rot90(t, k, (0, 1)) for t in (targets[i], targets[i].flip(-1)) for k in range(4)]
        assert any(torch.equal(out_targets[i], v) for v in variants)
        assert not torch.equal(out_targets[i], targets[i])  # p_rot90=1: never the identity


def test_geometric_keeps_image_label_correspondence():
    targets = block_labels(3, size=48)
    flat = targets.unsqueeze(1).float()
    # 1 where the 3x3 neighbourhood holds one class: bilinear taps there all share it.
    interior = (F.max_pool2d(flat, 3, 1, 1) == -F.max_pool2d(-flat, 3, 1, 1)).float()
    images = torch.cat([flat, interior], dim=1)
    out_images, out_targets, out_conf = random_geometric(
        images, targets, targets.float() / 3, generator(7), max_rotation_deg=30.0, scale_range=(0.8, 1.2)
    )
    valid = out_targets >= 0
    assert (~valid).any()  # rotations expose ignored corners
    inside = out_images[:, 1] > 1 - 1e-4
    assert inside.sum() > 0.5 * valid.sum()
    torch.testing.assert_close(out_images[:, 0][inside], out_targets[inside].float(), atol=1e-4, rtol=0)
    torch.testing.assert_close(out_conf[inside] * 3, out_targets[inside].float(), atol=1e-4, rtol=0)
    assert (out_targets[inside] >= 0).all()
    assert (out_conf[~valid] < 1.0 / 3).all()


def test_geometric_pads_images_with_minimum():
    images = torch.full((2, 1, 16, 16), 5.0)
    images[:, :, 0, 0] = -2.0
    out, _, _ = random_geometric(images, None, None, generator(0), max_rotation_deg=45.0, p_rot90=0.0)
    assert out.min() >= -2.0 - 1e-5 and out.max() <= 5.0 + 1e-5


def test_augmentations_do_not_mutate_inputs():
    images = torch.randn(3, 2, 16, 16)
    labels = block_labels(3, 16)
    confidence = torch.rand(3, 16, 16)
    copies = [t.clone() for t in (images, labels, confidence)]
    outputs = [
        *random_geometric(images, labels, confidence, generator()),
        strong_photometric(images, generator(), p=1.0),
        *cutmix(images, labels, confidence, generator()),
    ]
    for original, copy in zip((images, labels, confidence), copies, strict=True):
        torch.testing.assert_close(original, copy)
    for out in outputs:
        for original in (images, labels, confidence):
            assert out.data_ptr() != original.data_ptr()


@pytest.mark.parametrize(
    "augment",
    [
        lambda x, g: random_geometric(x, None, None, g)[0],
        lambda x, g: strong_photometric(x, g),
        lambda x, g: cutmix(x, None, None, g)[0],
    ],
)
def test_augmentations_are_deterministic(augment):
    images = torch.randn(4, 1, 16, 16)
    torch.testing.assert_close(augment(images, generator(11)), augment(images, generator(11)))
    assert not torch.equal(augment(images, generator(11)), augment(images, generator(12)))


def test_strong_photometric_blur_and_jitter():
    images = torch.zeros(2, 1, 15, 15)
    images[:, :, 7, 7] = 1.0
    blurred = strong_photometric(images, generator(), jitter=0.0, blur_sigma=(1.0, 1.0), p=1.0)
    assert blurred[:, 0, 7, 7].max() < 0.5 and blurred[:, 0, 7, 8].min() > 0.0
    torch.testing.assert_close(blurred.sum(dim=(1, 2, 3)), torch.ones(2))  # a blur keeps total intensity
    torch.testing.assert_close(blurred[0], blurred[0].transpose(-1, -2))  # and is isotropic
    untouched = strong_photometric(images, generator(), p=0.0)
    torch.testing.assert_close(untouched, images)
    jittered = strong_photometric(torch.randn(8, 3, 8, 8), generator(), jitter=0.25, blur_sigma=(0.0, 0.0), p=1.0)
    assert torch.isfinite(jittered).all()
    with pytest.raises(ValueError, match="jitter"):
        strong_photometric(images, generator(), jitter=1.5)


def test_strong_photometric_adds_noise_up_to_its_sigma_after_jitter_and_blur():
    flat = torch.full((256, 1, 16, 16), 2.0)  # jitter and blur leave a constant image as it is
    noisy = strong_photometric(flat, generator(), p=1.0, noise_sigma=0.3)
    spread = (noisy - flat).std(dim=(1, 2, 3))
    assert spread.max() < 0.3 * 1.2 and spread.min() < 0.05  # sigma ~ U(0, 0.3) per sample
    assert 0.12 < spread.mean() < 0.18
    torch.testing.assert_close(strong_photometric(flat, generator(), p=0.0, noise_sigma=0.3), flat)
    images = torch.randn(64, 1, 16, 16)
    # Noise is drawn after jitter and blur: those stay what runs without noise draw, only noise is added.
    added = strong_photometric(images, generator(3), p=1.0, noise_sigma=0.3) - strong_photometric(
        images, generator(3), p=1.0
    )
    assert added.std(dim=(1, 2, 3)).max() < 0.3 * 1.2 and added.mean().abs() < 0.01
    with pytest.raises(ValueError, match="noise_sigma"):
        strong_photometric(images, generator(), noise_sigma=-0.1)


def test_jitter_treats_2p5d_channels_alike():
    image = torch.randn(1, 1, 8, 8)
    stacked = image.repeat(1, 3, 1, 1)
    out = strong_photometric(stacked, generator(4), jitter=0.25, p=1.0)
    torch.testing.assert_close(out[:, 0], out[:, 2])


def test_cutmix_box_area_and_joint_consistency():
    b, h, w = 4, 20, 28
    images = torch.arange(b, dtype=torch.float32).view(b, 1, 1, 1).expand(b, 2, h, w).clone()
    labels = torch.arange(b).view(b, 1, 1).expand(b, h, w).clone()
    confidence = labels.float() / 10
    out_images, out_labels, out_conf = cutmix(images, labels, confidence, generator(2))
    box = out_labels != labels
    for i in range(b):
        area = int(box[i].sum())
        assert abs(area - h * w / 2) <= 0.05 * h * w
        rows, cols = box[i].nonzero(as_tuple=True)
        assert area == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one rectangle
        assert (out_labels[i][box[i]] == (i + 1) % b).all()
    torch.testing.assert_close(out_images[:, 0], out_labels.float())
    torch.testing.assert_close(out_images[:, 1], out_labels.float())
    torch.testing.assert_close(out_conf, out_labels.float() / 10)


def test_cutmix_box_shape_and_size():
    box = cutmix_box(5, (16, 16), generator())
    assert box.shape == (5, 16, 16) and box.dtype == torch.bool
    side = round(16 / math.sqrt(2))
    assert (box.sum(dim=(1, 2)) == side * side).all()


def test_shape_errors():
    images = torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="targets must have shape"):
        random_geometric(images, torch.zeros(2, 8, 7, dtype=torch.long))
    with pytest.raises(ValueError, match="images must be a float tensor"):
        cutmix(torch.zeros(2, 8, 8), None, None)
    with pytest.raises(ValueError, match="confidence"):
        cutmix(images, None, torch.rand(3, 8, 8))

"""The painted volume's prior carried onto a volume nobody painted, through a real registration."""

from __future__ import annotations

import numpy as np
import pytest

from napari_action.config import TrainConfig
from napari_action.data.annotations import SparseAnnotation
from napari_action.data.carried_prior import CarriedPrior, axis_first_affine
from napari_action.data.normalized_volume import NormalizedVolume
from napari_action.data.priors import PropagationPrior, build_priors, iter_prior_runs
from napari_action.data.registration import AffineRegistration, RegistrationSettings
from napari_action.data.samples import evenly_spaced_slices, make_phantom, sparse_from_truth
from napari_action.evaluation.metrics import dice_per_class
from napari_action.inference.predictor import with_prior
from napari_action.training.prior_mix import CARRIED_SHARE, prior_share
from napari_action.training.stream_schedule import StreamCursor
from napari_action.training.trainer import Trainer
from tests.helpers.engine import tiny_config

AXIS = 2  # the phantom's short-axis slices
QUICK = RegistrationSettings(levels_mm=(6.0, 3.0), iterations=(40, 20), samples=3000)


def shifted(affine: np.ndarray, shift_mm) -> np.ndarray:
    moved = np.eye(4)
    moved[:3, 3] = shift_mm
    return moved @ affine


@pytest.fixture(scope="module")
def cohort():
    """One painted phantom and the same heart elsewhere in the world, stored with its rows and columns swapped."""
    subject = make_phantom(1, shape=(64, 64, 16))[0]
    affine = subject.meta.affine
    swap = np.eye(4)[[1, 0, 2, 3]]  # voxel (i, j, k) of the copy is voxel (j, i, k) of the original
    copy_image = np.ascontiguousarray(subject.image.transpose(1, 0, 2))
    copy_truth = np.ascontiguousarray(subject.labels.transpose(1, 0, 2))
    copy_affine = shifted(affine, (12.0, -9.0, 0.0)) @ swap
    painted = sparse_from_truth(subject.labels, AXIS, evenly_spaced_slices(subject.labels, AXIS, 3))
    annotation = SparseAnnotation([painted, None], [subject.image.shape, copy_image.shape], axis=AXIS)
    volumes = [NormalizedVolume.exact(subject.image), NormalizedVolume.exact(copy_image)]
    return annotation, volumes, [affine, copy_affine], subject, copy_truth


def carried_labels(prior, annotation, shape) -> np.ndarray:
    classes = np.stack([prior.classes_at(z) for z in range(shape[AXIS])])
    return np.moveaxis(annotation.class_values[classes], 0, AXIS)


def mean_dice(found, truth, values) -> float:
    return float(np.nanmean(list(dice_per_class(found, truth, values).values())))


def test_the_copy_gets_the_painted_volumes_prior_where_its_own_anatomy_is(cohort):
    annotation, volumes, affines, subject, copy_truth = cohort
    # A coarser, quicker registration for the test.
    priors = build_priors(annotation, volumes, "propagation", affines=affines, registration=QUICK)
    assert isinstance(priors[0], PropagationPrior) and isinstance(priors[1], CarriedPrior)
    values = annotation.class_values[1:]
    own = mean_dice(carried_labels(priors[0], annotation, subject.image.shape), subject.labels, values)
    carried = mean_dice(carried_labels(priors[1], annotation, copy_truth.shape), copy_truth, values)
    # World coordinates alone (no registration) put the labels 12 mm off.
    unregistered = CarriedPrior(volumes[1], affines[1], AXIS, priors[1].sources, annotation.num_classes)
    unregistered._registrations = {id(volumes[0]): AffineRegistration(np.eye(4), 0.0)}
    world_only = mean_dice(carried_labels(unregistered, annotation, copy_truth.shape), copy_truth, values)
    assert carried > own - 0.05
    assert carried > world_only + 0.2
    assert priors[1].covered.any() and not priors[1].distance.any()


def test_a_new_stroke_recarries_without_registering_again(cohort):
    annotation, volumes, affines, _, _ = cohort
    first = build_priors(annotation, volumes, "propagation", affines=affines, registration=QUICK)
    registration = first[1].registrations[0]
    again = build_priors(annotation, volumes, "propagation", previous=first, affines=affines)
    assert again[1] is not first[1] and again[1].registrations[0] is registration


def test_the_preview_of_a_carried_prior_comes_in_runs_with_its_confidence(cohort):
    annotation, volumes, affines, _, _ = cohort
    prior = build_priors(annotation, volumes, "propagation", affines=affines, registration=QUICK)[1]
    runs = list(iter_prior_runs(prior))
    covered = np.flatnonzero(prior.covered)
    assert runs[0].start == covered[0] and runs[-1].stop == covered[-1] + 1
    for run in runs:
        assert run.classes.min() >= 0  # "nothing" is background with confidence 0, never a negative class
        np.testing.assert_array_equal(run.confidence[0], prior.confidence_at(run.start))


def test_without_affines_an_unpainted_volume_has_no_prior(cohort):
    annotation, volumes, _, _, _ = cohort
    assert set(build_priors(annotation, volumes, "propagation")) == {0}


def test_axis_first_affine_puts_the_slicing_axis_first():
    affine = np.diag([1.0, 2.0, 3.0, 1.0])
    moved = axis_first_affine(affine, 1)
    np.testing.assert_allclose(moved @ [5, 7, 11, 1], affine @ [7, 5, 11, 1])


@pytest.mark.parametrize("setting", ["registration", "none"])
def test_the_trainer_carries_the_prior_unless_told_not_to(cohort, setting):
    annotation, _, affines, subject, copy_truth = cohort
    painted = sparse_from_truth(subject.labels, AXIS, annotation.labeled_slices(0))
    trainer = Trainer(
        [subject.image, subject.image.transpose(1, 0, 2)],
        [painted, None],
        tiny_config(axis=AXIS, unpainted_prior=setting),
        affines=affines,
    )
    assert isinstance(trainer.prior(1), CarriedPrior) == (setting == "registration")


@pytest.fixture(scope="module")
def trained_with_carried(cohort):
    """A few steps of training with the prior carried onto the copy: the network and the carried
    labels still disagree on many voxels, so a share of the carried vote shows in the mix."""
    annotation, _, affines, subject, _ = cohort
    painted = sparse_from_truth(subject.labels, AXIS, annotation.labeled_slices(0))
    images = [subject.image, subject.image.transpose(1, 0, 2)]
    trainer = Trainer(images, [painted, None], tiny_config(axis=AXIS, unpainted_prior="registration"), affines=affines)
    trainer.train()
    return trainer


def test_the_carried_prior_counts_for_a_share_of_its_confidence_in_the_prediction_of_its_volume(trained_with_carried):
    trainer = trained_with_carried
    predictor = trainer.predictor()

    def final(index: int) -> np.ndarray:
        *_, last = trainer.predict_volume(index)
        return last.confidence  # the mixed vote's maximum: where a labels' comparison may not tell

    def mixed(index: int, prior, share: float) -> np.ndarray:
        # In the training voxel order (the copy is stored transposed), then back in the copy's stored one.
        extents = trainer.structure_extents(index)
        volume, spacing = trainer.images[index].whole(), trainer.spacings[index]
        kwargs = {"prior": prior, "prior_share": share, "extents": extents, "spacing": spacing}
        return trainer.turns.to_stored(index, predictor.predict(volume, normalized=True, **kwargs)[1])

    carried = trainer.prior(1)
    assert prior_share(carried) == CARRIED_SHARE < 1.0
    predicted = final(1)
    np.testing.assert_allclose(predicted, mixed(1, carried, CARRIED_SHARE))
    assert not np.allclose(predicted, mixed(1, carried, 1.0)) and not np.allclose(predicted, mixed(1, None, 1.0))
    assert prior_share(trainer.prior(0)) == 1.0  # a painted volume's own propagation, as it is


def test_slices_streamed_over_a_carried_prior_mix_it_in_at_its_share(trained_with_carried):
    # stream_over_preview = "all": the streamed layer replaces the carried preview, mixed as Predict mixes it.
    trainer = trained_with_carried
    predictor, carried = trainer.predictor(), trainer.prior(1)
    z = int(np.flatnonzero(carried.covered)[np.flatnonzero(carried.covered).size // 2])
    cursor = StreamCursor([trainer.images[0].shape[AXIS], trainer.images[1].shape[AXIS]], chunk=1)
    cursor.focus(1, z)
    (streamed,) = cursor.predict(predictor, trainer.images, trainer.pool.priors, trainer.spacings)
    _, probs = predictor.predict_slices(trainer.images[1].block(AXIS, z, z + 1), 0, 1, pad=trainer.images[1].pad)
    decay = predictor.prior_decay_mm / trainer.spacings[1][AXIS]
    cut = predictor.extents_of(carried) if predictor.structure_ends == "cut" else None

    def confidence(share: float) -> np.ndarray:
        return with_prior(probs[0], carried, z, decay, cut, share).max(axis=0)

    np.testing.assert_allclose(streamed.confidence[0], confidence(CARRIED_SHARE), rtol=1e-5)
    assert not np.allclose(streamed.confidence[0], confidence(1.0))


def test_a_wrong_affine_is_refused_with_what_to_give(cohort):
    _, _, _, subject, _ = cohort
    painted = sparse_from_truth(subject.labels, AXIS, [5])
    with pytest.raises(ValueError, match="invertible 4 x 4"):
        Trainer(
            [subject.image, subject.image],
            [painted, None],
            tiny_config(axis=AXIS),
            affines=[np.eye(4), np.zeros((4, 4))],
        )
    with pytest.raises(ValueError, match="one affine per image"):
        Trainer([subject.image, subject.image], [painted, None], tiny_config(axis=AXIS), affines=[np.eye(4)])


def test_the_config_refuses_an_unknown_unpainted_prior():
    with pytest.raises(ValueError, match="unpainted_prior"):
        TrainConfig.preset("cpu", unpainted_prior="atlas").validate()


def test_the_confidence_scale_lowers_every_carried_confidence(cohort):
    annotation, volumes, affines, _, _ = cohort
    full = build_priors(annotation, volumes, "propagation", affines=affines, registration=QUICK)[1]
    registration = full.registrations[0]  # registered now, so that the second prior can reuse it
    sources = full.sources
    half = CarriedPrior(volumes[1], affines[1], AXIS, sources, annotation.num_classes, confidence_scale=0.5, reuse=full)
    z = int(np.flatnonzero(full.covered)[len(np.flatnonzero(full.covered)) // 2])
    np.testing.assert_allclose(half.confidence_at(z), 0.5 * full.confidence_at(z), rtol=1e-6)
    np.testing.assert_array_equal(half.classes_at(z), full.classes_at(z))
    assert half.registrations[0] is registration

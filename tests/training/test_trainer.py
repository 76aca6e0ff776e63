"""The trainer as a generator: schedule, determinism, stop, live labels, preview, continuing a model."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from napari_action.config import MAX_COHORT_STEPS_FACTOR, TrainConfig
from napari_action.progress import AnnotationUpdate, FocusRequest, TrainProgress
from napari_action.runtime import cpu_has_native_bfloat16
from napari_action.training.trainer import Trainer
from tests.helpers.engine import AXIS, PAINTED, disc_volume, sparse, tiny_config


@pytest.fixture
def data():
    image, truth = disc_volume(0)
    other, _ = disc_volume(1)
    return image, other, truth, sparse(truth)


def test_action_schedule_runs_every_stage(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    progress = trainer.train()
    assert [p.step for p in progress] == list(range(1, 8))
    assert all(isinstance(p, TrainProgress) and p.total_steps == 7 for p in progress)
    stages = [p.stage for p in progress]
    assert stages[:2] == ["stage i: global distillation"] * 2
    assert stages[2:4] == ["stage ii: local distillation"] * 2
    assert stages[4:] == ["stage iii: ACTION"] * 3
    assert {"sup", "unsup", "anco"} <= set(progress[-1].losses)
    assert all(math.isfinite(v) for p in progress for v in p.losses.values())
    assert trainer.axis == AXIS
    assert list(trainer.class_values) == [0, 1, 2]


@pytest.mark.parametrize("cpu_bfloat16", [True, None])
def test_training_in_bfloat16_runs_every_stage_and_says_so(data, cpu_bfloat16):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config(cpu_bfloat16=cpu_bfloat16))
    progress = trainer.train()
    # None is the default: bfloat16 exactly where this CPU computes it natively.
    mixed = cpu_bfloat16 or (cpu_bfloat16 is None and cpu_has_native_bfloat16())
    assert trainer.amp is mixed
    assert progress[-1].device.endswith(", bfloat16") is mixed
    assert [p.step for p in progress] == list(range(1, 8))
    assert all(math.isfinite(v) for p in progress for v in p.losses.values())
    predicted, confidence = trainer.predictor().predict(image)
    assert predicted.shape == image.shape and set(np.unique(predicted)) <= {0, 1, 2}
    assert confidence.dtype == np.float32 and np.isfinite(confidence).all()


def test_supervised_start_comes_first_and_the_teacher_follows_it(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config(steps_supervised_start=3))
    assert trainer.config.total_steps == trainer.round_steps() == 10
    teacher_before = [p.detach().clone() for p in trainer.nets.teacher.parameters()]
    progress = list(itertools.islice(trainer.iter_train(), 3))
    assert [p.stage for p in progress] == ["supervised start"] * 3
    assert set(progress[-1].losses) == {"sup", "total"}
    moved = [
        not np.allclose(a, b.detach()) for a, b in zip(teacher_before, trainer.nets.teacher.parameters(), strict=True)
    ]
    assert any(moved), "the EMA teacher must follow the student during the supervised start"


def test_supervised_start_is_not_repeated_in_later_rounds(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config(steps_supervised_start=3))
    assert [p.stage for p in trainer.train()][:4] == ["supervised start"] * 3 + ["stage i: global distillation"]
    assert {p.stage for p in trainer.train(steps=2)} == {"stage iii: ACTION"}


def test_a_run_left_suspended_after_a_break_ends_when_the_next_one_starts(data):
    # A notebook kept the generator in a variable and broke out in stage iii: the next train() repeated the
    # whole warm-up, and the old run counted its warm-up later, when collected.
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config(steps_stage3=4))
    kept = trainer.iter_train()
    for progress in kept:
        if progress.stage == "stage iii: ACTION":
            break
    assert {p.stage for p in trainer.train(steps=2)} == {"stage iii: ACTION"}
    assert trainer.rounds == 2
    assert list(kept) == []  # ended, not resumed
    del kept
    assert trainer.rounds == 2


def test_streams_slice_predictions_every_n_steps(data):
    image, other, _, labels = data
    progress = Trainer([image, other], [labels], tiny_config()).train()
    streamed = [p for p in progress if p.predictions]
    assert [p.step for p in streamed] == [2, 4, 6]
    first = streamed[0].predictions[0]
    assert first.labels.shape == (4, 32, 32) and first.axis == AXIS
    assert set(np.unique(first.labels)) <= {0, 1, 2}
    # The sweep alternates volumes and advances through the slices.
    assert [(p.predictions[0].volume_index, p.predictions[0].start) for p in streamed] == [(0, 0), (1, 0), (0, 4)]


def test_supervised_loss_decreases():
    image, truth = disc_volume(0)
    config = tiny_config(method="supervised", steps_stage3=40, lr=0.05, stream_every_steps=1000)
    losses = [p.losses["total"] for p in Trainer([image], [sparse(truth)], config).train()]
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])


def test_same_seed_same_losses(data):
    image, other, _, labels = data
    runs = [[p.losses["total"] for p in Trainer([image, other], [labels], tiny_config()).train()] for _ in range(2)]
    assert runs[0] == runs[1]
    different = [p.losses["total"] for p in Trainer([image, other], [labels], tiny_config(seed=7)).train()]
    assert different != runs[0]


def test_request_stop_ends_after_current_step(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    seen = []
    for progress in trainer.iter_train():
        seen.append(progress.step)
        if progress.step == 3:
            trainer.request_stop()
    assert seen == [1, 2, 3]


@pytest.mark.parametrize("method", ["supervised", "mean-teacher"])
def test_baselines_run_their_own_schedule(data, method):
    image, other, _, labels = data
    progress = Trainer([image, other], [labels], tiny_config(method=method)).train()
    assert len(progress) == 3
    assert all(math.isfinite(p.losses["total"]) for p in progress)


def test_ablations_drop_stages_and_terms(data):
    image, other, _, labels = data
    config = tiny_config(loss={"use_global": False, "use_local": False, "use_anco": False})
    progress = Trainer([image, other], [labels], config).train()
    assert {p.stage for p in progress} == {"stage iii: ACTION"}
    assert "anco" not in progress[-1].losses and "unsup" in progress[-1].losses


def test_new_labels_join_without_restart(data):
    image, other, truth, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    generator = trainer.iter_train()
    next(generator)
    before = len(trainer.pool.labeled)
    more = sparse(truth, slices=(*PAINTED, 5))
    progress = generator.send(AnnotationUpdate(labels=(more, None)))
    assert progress.step == 2
    assert len(trainer.pool.labeled) == before + 1
    assert len(list(generator)) == 5


def test_new_label_value_adds_a_class(data):
    image, other, truth, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    generator = trainer.iter_train()
    for _ in range(5):
        next(generator)
    more = labels.copy()
    more[0:4, 0:4, 2] = 9
    generator.send(AnnotationUpdate(labels=(more,)))
    assert list(trainer.class_values) == [0, 1, 2, 9]
    rest = list(generator)
    assert all(math.isfinite(p.losses["total"]) for p in rest)
    labels_out, _ = trainer.predictor().predict(image)
    assert set(np.unique(labels_out)) <= {0, 1, 2, 9}


def test_labels_sent_while_training_that_cannot_train_are_refused_with_a_notice_and_training_goes_on(data):
    # A fill through every slice reached the trainer, which ended the run with "No unlabeled slices to sample
    # from."; only the widget knew to hold such labels back.
    image, _, truth, labels = data
    trainer = Trainer([image], [labels], tiny_config())
    generator = trainer.iter_train()
    next(generator)
    painted_before = trainer.annotation.labeled_slices(0)
    every_slice = np.ones_like(labels)
    progress = generator.send(AnnotationUpdate(labels=(every_slice,)))
    assert "are painted (or marked as labeled) in the image, but the method action" in progress.notice
    assert "as a flood fill leaves that ran over the whole slice" in progress.notice  # the advice, for a refusal
    assert progress.notice.endswith("Training keeps the labels it had until then.")
    assert trainer.annotation.labeled_slices(0) == painted_before
    rest = list(generator)
    assert rest and rest[-1].step == rest[-1].total_steps and all(p.notice is None for p in rest)
    with pytest.raises(ValueError, match="slices nobody painted"):  # called directly, the refusal is raised
        trainer.update_annotation([every_slice])


def test_focus_request_streams_that_slice_next(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    generator = trainer.iter_train()
    next(generator)
    streamed = generator.send(FocusRequest(volume_index=1, slice_index=8))
    assert streamed.predictions and streamed.predictions[0].volume_index == 1
    assert streamed.predictions[0].start <= 8 < streamed.predictions[0].stop
    generator.close()


def test_user_arrays_are_never_modified(data):
    image, other, _, labels = data
    copies = [a.copy() for a in (image, other, labels)]
    trainer = Trainer([image, other], [labels], tiny_config())
    trainer.train()
    list(trainer.predict_volume(0))
    for original, copy in zip((image, other, labels), copies, strict=True):
        np.testing.assert_array_equal(original, copy)


def test_retrain_runs_one_more_stage_three_round(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    trainer.train()
    again = trainer.train(steps=2)
    assert [p.stage for p in again] == ["stage iii: ACTION"] * 2
    assert trainer.step == 9


@pytest.mark.parametrize("how", ["break", "request_stop"])
def test_a_first_run_ended_in_its_last_stage_continues_with_that_stage_however_it_ended(data, how):
    # A break out of the loop left the warm-up to run again (request_stop did not): the next call ran stages i
    # and ii from the start, 2 + 2 steps more on weights already past them.
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    for progress in trainer.iter_train():
        if progress.step == 5:  # the first step of stage iii
            if how == "break":
                break
            trainer.request_stop()
    assert trainer.step == 5
    assert trainer.stage_steps() == [("stage iii: ACTION", 3)]
    assert [p.stage for p in trainer.train()] == ["stage iii: ACTION"] * 3
    # Ended in the warm-up, the first run is run again whole.
    warming = Trainer([image, other], [labels], tiny_config())
    for progress in warming.iter_train():
        if progress.step == 3:
            break
    assert [name for name, _ in warming.stage_steps()] == [
        "stage i: global distillation",
        "stage ii: local distillation",
        "stage iii: ACTION",
    ]


def test_predict_volume_yields_progress_then_result(data):
    image, other, truth, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    updates = list(trainer.predict_volume(np.asarray(other), batch_size=4))
    assert [u.slices_done for u in updates] == [0, 3, 10, 10]  # smoothing finishes a slice 5 slices later
    final = updates[-1]
    assert final.done and final.labels.shape == truth.shape and final.labels.dtype == np.uint8
    assert final.confidence.shape == truth.shape and 0.0 <= final.confidence.min() <= 1.0
    assert final.entropy.min() >= 0.0 and final.entropy.max() <= 1.0


def test_supervised_predictions_come_from_the_trained_network():
    image, truth = disc_volume(0)
    config = tiny_config(method="supervised", steps_stage3=60, lr=0.05, stream_every_steps=1000)
    trainer = Trainer([image], [sparse(truth)], config)
    untrained, _ = trainer.predictor().predict(image)
    trainer.train()
    trained, _ = trainer.predictor().predict(image)
    agreement = lambda labels: np.mean(labels == truth)  # noqa: E731
    assert agreement(trained) > 0.9 > agreement(untrained)


def test_stop_requested_before_the_first_step_is_honoured(data):
    image, other, _, labels = data
    trainer = Trainer([image, other], [labels], tiny_config())
    trainer.request_stop()
    assert list(trainer.iter_train()) == []
    assert trainer.step == 0
    assert len(trainer.train()) == 7  # the request is consumed, the next run trains


def test_one_painted_slice_comes_with_advice_and_two_without():
    image, truth = disc_volume(0)
    one = Trainer([image], [sparse(truth, slices=(4,))], tiny_config())
    assert len(one.advice) == 1 and "near each end" in one.advice[0]
    supervised = Trainer([image], [sparse(truth, slices=(4,))], tiny_config(method="supervised"))
    assert supervised.advice == one.advice  # whatever the method: it is about what one slice can tell
    assert Trainer([image], [sparse(truth)], tiny_config()).advice == []
    # On 5 mm slices even the painted slice's neighbours lie beyond what it predicts well ("a few away" promised them).
    thick = Trainer([image], [sparse(truth, slices=(4,))], tiny_config(), spacings=[(0.8, 0.8, 5.0)])
    assert any("every other slice is a rough guess" in advice and "5 mm thick" in advice for advice in thick.advice)


def test_the_trainer_passes_the_axis_advice_on():
    image, truth = disc_volume(0)
    painted = sparse(truth)  # painted along AXIS
    other_axis = (AXIS + 1) % 3
    trainer = Trainer([image], [painted], tiny_config(axis=other_axis))
    assert any(f"lie along axis {AXIS}" in message for message in trainer.advice)
    assert not any("lie along" in m for m in Trainer([image], [painted], tiny_config(axis=AXIS)).advice)


def test_preview_streams_the_prior_in_label_values_and_training_reuses_it(data):
    image, other, truth, labels = data
    values = np.where(labels > 0, labels.astype(np.uint16) * 3 + 1, 0)  # painted values 4 and 7
    trainer = Trainer([image, other], [values], tiny_config())
    runs = [prediction for batch in trainer.iter_preview() for prediction in batch]
    assert {p.volume_index for p in runs} == {0}  # the unpainted volume has no prior
    assert set(np.unique(np.concatenate([p.labels.ravel() for p in runs]))) == {0, 4, 7}
    first = runs[0]
    assert first.start == PAINTED[0] and first.axis == trainer.axis
    np.testing.assert_array_equal(first.labels[0], np.moveaxis(values, AXIS, 0)[PAINTED[0]])
    prior = trainer.prior(0)
    trainer.train()
    assert trainer.prior(0) is prior  # computed once, for the preview and for training
    expected = np.moveaxis(np.where(truth > 0, truth * 3 + 1, 0), AXIS, 0)
    shown = np.zeros_like(expected)
    for p in runs:
        shown[p.start : p.stop] = p.labels
    between = slice(PAINTED[0], PAINTED[-1] + 1)
    assert (shown[between] == expected[between]).mean() > 0.95


def test_streamed_predictions_leave_the_preview_where_it_reaches_by_default():
    image, truth = disc_volume(0)
    config = tiny_config(prior_source="interpolation", stream_over_preview="unreached")
    trainer = Trainer([image], [sparse(truth)], config)
    progress = trainer.train()
    streamed = [z for p in progress for run in p.predictions for z in range(run.start, run.stop)]
    reached = trainer.prior(0).covered
    assert streamed and not reached[streamed].any()  # the network showed only where the preview had nothing
    assert all(p.preview_kept for p in progress)
    assert not any(p.preview_kept for p in Trainer([image], [sparse(truth)], tiny_config()).train())


def test_noise_joins_training_when_a_volume_is_clearly_noisier_than_the_painted_one():
    image, truth = disc_volume(0)
    noisier = image + np.random.default_rng(5).normal(0, 60, image.shape).astype(np.float32)
    alike = Trainer([image, disc_volume(1)[0]], [sparse(truth)], tiny_config())
    assert (alike.config.noise_sigma, alike.config.photometric_labeled) == (0.0, False)
    trainer = Trainer([image, noisier], [sparse(truth)], tiny_config())
    assert trainer.config.noise_sigma > 0.2 and trainer.config.photometric_labeled is True
    assert any("volume 2 is noisier" in advice for advice in trainer.advice)
    # With a cohort open, "volume 2" names nothing the user knows: the names given are used.
    named = Trainer([image, noisier], [sparse(truth)], tiny_config(), names=["t1_site_A", "t1_site_B"])
    assert any(advice.startswith("'t1_site_B' is noisier") for advice in named.advice)
    assert not any("noisier" in advice for advice in alike.advice)
    assert trainer.checkpoint().config.noise_sigma == trainer.config.noise_sigma  # what the model was trained with
    chosen = Trainer([image, noisier], [sparse(truth)], tiny_config(noise_sigma=0.0, photometric_labeled=False))
    assert (chosen.config.noise_sigma, chosen.config.photometric_labeled) == (0.0, False)


def test_a_cohort_runs_the_last_stage_longer_and_says_so():
    assert TrainConfig.preset("cpu").unpainted_crops_per_volume == 600
    image, truth = disc_volume(0)
    volumes = [image, disc_volume(1)[0], disc_volume(2)[0]]  # two nobody painted

    def stage3_steps(crops: int, method: str = "action", images: list = volumes) -> int:
        config = tiny_config(unpainted_crops_per_volume=crops, method=method)
        return Trainer(images, [sparse(truth)], config).config.steps_stage3

    # 3 steps of 2 unlabeled crops; 2, 4 and 400 asked of each unpainted volume: enough already, 4 steps,
    # the cap (MAX_COHORT_STEPS_FACTOR times 3).
    assert [stage3_steps(crops) for crops in (2, 4, 400)] == [3, 4, round(MAX_COHORT_STEPS_FACTOR * 3)]
    assert stage3_steps(400, images=[image]) == 3 and stage3_steps(400, method="supervised") == 3
    cohort = Trainer(volumes, [sparse(truth)], tiny_config(unpainted_crops_per_volume=400))
    assert any("2 of the 3 images have no painted slice" in advice for advice in cohort.advice)
    assert not any("no painted slice" in advice for advice in Trainer(volumes, [sparse(truth)], tiny_config()).advice)
    last = cohort.train()[-1]
    capped = round(MAX_COHORT_STEPS_FACTOR * 3)
    assert last.step == last.total_steps == 2 + 2 + capped
    saved = cohort.checkpoint().config  # a continued model is not lengthened twice
    assert (saved.steps_stage3, saved.unpainted_crops_per_volume) == (capped, 0)


def test_structure_ends_are_cut_on_thick_painted_slices_and_tapered_otherwise():
    image, truth = disc_volume(0)
    fine = (1.0, 1.0, 1.0)
    thick = tuple(4.0 if axis == AXIS else 1.0 for axis in range(3))  # slices 4 times thicker than pixels
    cut = Trainer([image], [sparse(truth)], tiny_config(), spacings=[thick])
    assert cut.config.structure_ends == "cut"
    assert any("4.0 times thicker" in advice for advice in cut.advice)
    assert cut.checkpoint().config.structure_ends == "cut"  # what prediction from the saved model applies
    tapered = Trainer([image], [sparse(truth)], tiny_config(), spacings=[fine])
    assert tapered.config.structure_ends == "taper" and tapered.advice == []
    # Decided by the painted volumes: a thick unpainted one beside them changes nothing.
    beside = Trainer([image, disc_volume(1)[0]], [sparse(truth)], tiny_config(), spacings=[fine, thick])
    assert beside.config.structure_ends == "taper"
    chosen = Trainer([image], [sparse(truth)], tiny_config(structure_ends="taper"), spacings=[thick])
    assert chosen.config.structure_ends == "taper" and chosen.advice == []


def test_a_model_trained_on_other_normalised_volumes_keeps_its_normalisation_when_training_continues(tmp_path):
    image, truth = disc_volume(0)
    before = Trainer([image], [sparse(truth)], tiny_config(intensity_reference="whole"))
    path = before.save_checkpoint(tmp_path / "m.pt")
    continued = Trainer([image], [sparse(truth)], tiny_config(), init=path)
    assert continued.config.intensity_reference == "whole"
    assert continued.predictor().intensity_reference == "whole"
    assert Trainer([image], [sparse(truth)], tiny_config()).config.intensity_reference == "foreground_in_view"


def test_a_continued_model_keeps_its_class_names_for_the_values_the_new_labels_do_not_name(tmp_path):
    # A name given for one class (the painted layer names only the class painted last) replaced all the
    # model's names: its other classes were saved as bare numbers.
    image, truth = disc_volume(0)
    path = Trainer([image], [sparse(truth)], tiny_config(), class_names={1: "disc", 2: "ring"}).save_checkpoint(
        tmp_path / "m.pt"
    )
    continued = Trainer([image], [sparse(truth)], tiny_config(), class_names={2: "vertebra"}, init=path)
    assert continued.class_names == {1: "disc", 2: "vertebra"}
    assert continued.checkpoint().class_names == {1: "disc", 2: "vertebra"}


def test_training_continues_from_a_model_of_other_network_sizes_than_the_config_asks_for(tmp_path):
    # Raised torch's load_state_dict error, a page of "size mismatch for unet...", when the config given with
    # init= (TrainConfig.preset("cpu") after a model trained with other widths) did not repeat the model's sizes.
    image, truth = disc_volume(0)
    before = Trainer([image], [sparse(truth)], tiny_config(method="supervised", steps_stage3=2))
    before.train()
    path = before.save_checkpoint(tmp_path / "m.pt")
    other_sizes = tiny_config(model={"base_width": 8, "rep_dim": 32, "global_dim": 64, "context": 1})
    continued = Trainer([image], [sparse(truth)], other_sizes, init=path)
    assert continued.config.model == before.config.model
    # The saved weights, not new ones: both predict the same before training goes on.
    expected, _ = before.predictor().predict(image)
    np.testing.assert_array_equal(continued.predictor().predict(image)[0], expected)
    assert [p.stage for p in continued.train()] == ["stage iii: ACTION"] * 3
    assert continued.checkpoint().config.model == before.config.model

"""Tests for napari_action.config: presets, validation, serialisation."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_action.config import MAX_COHORT_STEPS_FACTOR, ModelConfig, TrainConfig


def test_presets_share_the_session_friendly_augmentation_and_loss():
    for budget in ("cpu", "paper"):
        cfg = TrainConfig.preset(budget)
        assert cfg.budget == budget
        # A session's volumes keep their orientation: no flips or 90° turns by default.
        assert cfg.flip_prob == 0.0 and cfg.rot90_prob == 0.0
        assert cfg.loss.dice_present_classes_only
    assert TrainConfig.preset("paper").steps_stage3 > TrainConfig.preset("cpu").steps_stage3


def test_reference_behaviour_is_one_override_away():
    cfg = TrainConfig.preset("paper", flip_prob=0.5, rot90_prob=0.5, loss={"dice_present_classes_only": False})
    assert (cfg.flip_prob, cfg.rot90_prob, cfg.loss.dice_present_classes_only) == (0.5, 0.5, False)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"flip_prob": 1.5}, "flip_prob must be in"),
        ({"rot90_prob": -0.1}, "rot90_prob must be in"),
        ({"foreground_crop_prob": 2.0}, "foreground_crop_prob must be in"),
        ({"crop_size": 100}, "multiple of 16"),
        ({"crop_size": 0}, "positive multiple of 16"),  # passed, and training failed at its first crop
        ({"method": "unet"}, "Unknown method"),
        ({"steps_stage3": -1}, "steps_stage3"),
        ({"noise_sigma": -0.1}, "noise_sigma must be >= 0"),
        ({"zoom_spread": 1.0}, "zoom_spread must be in"),
        ({"unpainted_crops_per_volume": -1}, "unpainted_crops_per_volume must be >= 0"),
    ],
)
def test_bad_settings_are_explained(overrides, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig.preset("cpu", **overrides)


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: TrainConfig(stpes=300), "no setting 'stpes'. Did you mean 'steps_supervised_start' or"),
        (lambda: TrainConfig.preset("cpu", num_thread=1), "no setting 'num_thread'. Did you mean 'num_threads'?"),
        (lambda: TrainConfig.preset("cpu", model={"widht": 8}), "'model.widht'. Did you mean 'model.base_width'?"),
        (lambda: TrainConfig().replace(loss={"tau_mn": 0.2}), "Did you mean 'loss.tau_min' or 'loss.tau_max'?"),
        (lambda: ModelConfig(widht=8), "ModelConfig has no setting 'widht'. Did you mean 'base_width'?"),
        (lambda: TrainConfig(xyz=1), "TrainConfig has no setting 'xyz'. The TrainConfig settings are: method, budget,"),
    ],
    ids=["constructor", "preset", "preset model", "replace loss", "ModelConfig", "no close name"],
)
def test_a_misspelt_setting_is_refused_with_the_settings_closest_to_it(build, message):
    # Python's own message, "TrainConfig.__init__() got an unexpected keyword argument 'stpes'", named no setting.
    with pytest.raises(TypeError) as refused:
        build()
    assert message in str(refused.value)


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"lr": "0.01"}, "lr must be a number, got '0.01' (str)"),  # failed later comparing str with float
        ({"steps_stage3": 2.5}, "steps_stage3 must be a whole number, got 2.5 (float)"),  # ran 3 steps
        ({"flip_prob": True}, "flip_prob must be a number, got True (bool)"),
        ({"amp": 1}, "amp must be True or False, got 1 (int)"),
        ({"method": None}, "method must be text, got None (NoneType)"),
        ({"model": {"base_width": 8.0}}, "model.base_width must be a whole number, got 8.0 (float)"),
        # Settings whose default is None: "4" failed later comparing str with int; "no", a true value, chose bfloat16.
        ({"num_threads": "4"}, "num_threads must be a whole number or None, got '4' (str)"),
        ({"cpu_bfloat16": "no"}, "cpu_bfloat16 must be True, False or None, got 'no' (str)"),
        ({"noise_sigma": "0.3"}, "noise_sigma must be a number or None, got '0.3' (str)"),
    ],
)
def test_a_setting_of_another_kind_than_its_default_is_refused_naming_it(settings, message):
    with pytest.raises(ValueError) as refused:
        TrainConfig.preset("cpu", **settings)
    assert message in str(refused.value)


def test_numbers_of_numpy_and_whole_numbers_for_fractions_are_taken():
    config = TrainConfig.preset("cpu", steps_stage3=np.int64(40), lr=1, seed=np.int32(3))
    assert config.steps_stage3 == 40 and config.lr == 1


def test_settings_whose_default_is_none_take_none_or_their_kind():
    config = TrainConfig.preset("cpu", num_threads=np.int64(2), cpu_bfloat16=False, noise_sigma=0, axis=None)
    assert (config.num_threads, config.cpu_bfloat16, config.noise_sigma, config.axis) == (2, False, 0, None)


def test_round_trip_through_json():
    cfg = TrainConfig.preset("cpu", flip_prob=0.25, seed=7, model={"context": 1})
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


def test_configs_saved_before_a_field_existed_get_its_default():
    data = TrainConfig.preset("cpu").to_dict()
    del data["flip_prob"], data["loss"]["dice_present_classes_only"]
    again = TrainConfig.from_dict(data)
    assert again.flip_prob == 0.0 and again.loss.dice_present_classes_only


def test_a_cohort_lengthens_stage_iii_by_its_unpainted_volumes_up_to_the_cap():
    cpu = TrainConfig.preset("cpu")
    per_step = cpu.batch_unlabeled_stage3
    steps = [cpu.cohort_stage3_steps(n) for n in range(12)]
    # Each unpainted volume asks for its crops; never fewer than the preset's steps, never more than the cap.
    cap = round(MAX_COHORT_STEPS_FACTOR * cpu.steps_stage3)
    expected = [min(max(cpu.steps_stage3, -(-n * cpu.unpainted_crops_per_volume // per_step)), cap) for n in range(12)]
    assert steps == expected and steps[0] == cpu.steps_stage3 and steps[-1] == cap
    first = cpu.fewest_unpainted_lengthening()
    assert steps[first] > cpu.steps_stage3 and steps[first - 1] == cpu.steps_stage3
    # Off for the supervised baseline and for budgets without the rule.
    assert cpu.replace(method="supervised").cohort_stage3_steps(11) == cpu.steps_stage3
    assert cpu.replace(method="supervised").fewest_unpainted_lengthening() is None
    assert TrainConfig.preset("paper").fewest_unpainted_lengthening() is None


@pytest.mark.parametrize("steps", [900, 300, 20])
def test_the_help_texts_state_where_lengthening_starts_at_the_steps_they_run(steps):
    # "when 4 or more images have no painted slice" held at 900 steps only: `--steps 5` doubled beside one.
    config = TrainConfig.preset("cpu", steps_stage3=steps)
    first = config.fewest_unpainted_lengthening()
    assert config.cohort_stage3_steps(first) > steps and config.cohort_stage3_steps(first - 1) == steps
    assert f"at {steps} steps from {first} such images on" in config.cohort_lengthening_text()


def _saved_by_an_earlier_release(renamed: dict, **old_settings) -> dict:
    """Today's config dict as an earlier release wrote it: ``renamed`` settings removed, ``old_settings`` added."""
    data = TrainConfig.preset("cpu").to_dict()
    for name in renamed:
        del data[name]
    return {**data, **old_settings}


def test_smoothing_saved_in_slices_keeps_its_value_under_the_millimetre_name():
    data = _saved_by_an_earlier_release(
        {"predict_smoothing_mm", "predict_prior_decay_mm"}, predict_smoothing=0.0, predict_prior_decay=2.0
    )
    config = TrainConfig.from_dict(data)
    # Turned off then, off now (the default would have smoothed by 1.5 mm).
    assert config.predict_smoothing_mm == 0.0 and config.predict_prior_decay_mm == 2.0


def test_smoothing_saved_without_a_number_takes_todays_default():
    # float(None) raised TypeError, which no front end words for the user.
    data = _saved_by_an_earlier_release({"predict_smoothing_mm"}, predict_smoothing=None)
    assert TrainConfig.from_dict(data).predict_smoothing_mm == TrainConfig.preset("cpu").predict_smoothing_mm


def test_the_hard_bound_at_the_propagated_extent_becomes_the_ending_rule_that_does_it():
    renamed = {"structure_ends"}
    bounded = TrainConfig.from_dict(
        _saved_by_an_earlier_release(
            renamed, predict_within_propagated_extent=True, predict_unpainted_within_registered_extent=True
        )
    )
    unbounded = TrainConfig.from_dict(
        _saved_by_an_earlier_release(
            renamed, predict_within_propagated_extent=False, predict_unpainted_within_registered_extent=False
        )
    )
    assert bounded.structure_ends == "cut" and unbounded.structure_ends == "network"


def test_automatic_mixed_precision_saved_as_amp_none_is_cpu_bfloat16_automatic():
    config = TrainConfig.from_dict(_saved_by_an_earlier_release({"cpu_bfloat16"}, amp=None))
    assert config.amp is False and config.cpu_bfloat16 is None


def test_dropped_training_schedule_settings_are_left_out():
    data = _saved_by_an_earlier_release(set(), cohort_steps_factor=2.0, plane_share=0.0)
    data["loss"]["prior_labeled_veto"] = None
    assert TrainConfig.from_dict(data) == TrainConfig.preset("cpu")


def test_a_setting_no_release_had_is_still_refused():
    with pytest.raises(ValueError, match=r"Unknown TrainConfig fields: \['predict_smoothin'\]"):
        TrainConfig.from_dict(_saved_by_an_earlier_release(set(), predict_smoothin=1.0))

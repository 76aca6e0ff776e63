"""Shared command-line options: ``--threads`` and the config they describe."""

from __future__ import annotations

import argparse

import pytest

from napari_action.cli.demo import DEMO_STEPS, DEMO_SUPERVISED_START, DEMO_WARMUP
from napari_action.cli.main import build_parser
from napari_action.cli.options import config_from_args, positive_int
from napari_action.config import SCHEDULE_STEPS, TrainConfig
from napari_action.training.schedule import build_schedule


def _schedule(config: TrainConfig) -> tuple[int, int, int, int]:
    return tuple(getattr(config, field) for field in SCHEDULE_STEPS)


@pytest.mark.parametrize("command", ["train", "predict", "demo"])
def test_threads_reach_the_config_or_are_refused(command, capsys):
    required = {
        "train": ["--image", "a.nii.gz", "--out", "m.pt"],
        "predict": ["--model", "m.pt", "--image", "a.nii.gz", "--out-dir", "out"],
        "demo": [],
    }[command]
    args = build_parser().parse_args([command, *required, "--threads", "3"])
    assert args.threads == 3
    if command != "predict":
        assert config_from_args(args).num_threads == 3
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, *required, "--threads", "0"])
    assert exit_info.value.code == 2
    assert "must be at least 1, got 0" in capsys.readouterr().err


def test_no_threads_option_leaves_torch_its_default():
    args = build_parser().parse_args(["demo"])
    assert config_from_args(args).num_threads is None


def test_positive_int_names_what_it_got():
    assert positive_int("2") == 2
    with pytest.raises(argparse.ArgumentTypeError, match="whole number, got 'two'"):
        positive_int("two")


@pytest.mark.parametrize("command", ["train", "demo"])
def test_steps_warmup_and_supervised_start_set_the_schedule(command):
    required = ["--image", "a.nii.gz", "--out", "m.pt"] if command == "train" else []
    options = [command, *required, "--steps", "5", "--warmup", "2", "--supervised-start", "0"]
    config = config_from_args(build_parser().parse_args(options))
    assert _schedule(config) == (0, 2, 2, 5)
    assert config.total_steps == 9


@pytest.mark.parametrize("command", ["train", "demo"])
def test_a_supervised_start_can_replace_the_warmups(command):
    required = ["--image", "a.nii.gz", "--out", "m.pt"] if command == "train" else []
    options = [command, *required, "--supervised-start", "30", "--warmup", "0", "--steps", "5"]
    config = config_from_args(build_parser().parse_args(options))
    assert [(stage.name, stage.steps) for stage in build_schedule(config, 0)] == [
        ("supervised start", 30),
        ("stage iii: ACTION", 5),
    ]


def test_the_demo_runs_a_shortened_schedule_and_train_the_presets():
    demo = config_from_args(build_parser().parse_args(["demo"]))
    assert _schedule(demo) == (DEMO_SUPERVISED_START, DEMO_WARMUP, DEMO_WARMUP, DEMO_STEPS)
    train = config_from_args(build_parser().parse_args(["train", "--image", "a.nii.gz", "--out", "m.pt"]))
    assert _schedule(train) == _schedule(TrainConfig.preset("cpu"))
    assert demo.total_steps < train.total_steps


def test_the_cpu_preset_starts_supervised_and_the_paper_preset_with_the_warmups():
    assert [stage.name for stage in build_schedule(TrainConfig.preset("cpu"), 0)] == [
        "supervised start",
        "stage iii: ACTION",
    ]
    assert [stage.name for stage in build_schedule(TrainConfig.preset("paper"), 0)] == [
        "stage i: global distillation",
        "stage ii: local distillation",
        "stage iii: ACTION",
    ]


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--steps", "0", "must be at least 1, got 0"),
        ("--steps", "-3", "must be at least 1, got -3"),
        ("--warmup", "-1", "must be at least 0, got -1"),
        ("--supervised-start", "-1", "must be at least 0, got -1"),
        ("--steps", "many", "expected a whole number, got 'many'"),
    ],
)
def test_bad_step_counts_are_refused_in_the_options_words(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["train", "--image", "a.nii.gz", "--out", "m.pt", option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and message in err and "steps_stage3" not in err


@pytest.mark.parametrize("command", ["train", "demo"])
@pytest.mark.parametrize(("precision", "mixed"), [("float32", False), ("bfloat16", True)])
def test_precision_sets_mixed_precision_on_every_device(command, precision, mixed):
    config = config_from_args(build_parser().parse_args([command, *_required(command), "--precision", precision]))
    assert config.amp is mixed and config.cpu_bfloat16 is mixed


@pytest.mark.parametrize("command", ["train", "demo"])
def test_without_precision_a_gpu_trains_in_float32_and_a_cpu_as_its_hardware_allows(command):
    config = config_from_args(build_parser().parse_args([command, *_required(command)]))
    assert config.amp is False and config.cpu_bfloat16 is None


@pytest.mark.parametrize("value", ["0", "-2"])
def test_the_demo_refuses_fewer_than_one_painted_slice_in_the_options_words(value, capsys):
    # Was "error: k must be >= 1, got 0." from deep inside the demo, after its folder was made.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["demo", "--slices", value])
    assert exit_info.value.code == 2
    assert "argument --slices: must be at least 1" in capsys.readouterr().err


def _required(command: str) -> list[str]:
    return ["--image", "a.nii.gz", "--out", "m.pt"] if command == "train" else []


def test_an_unknown_precision_is_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--precision", "float16"])
    assert "choose from 'float32', 'bfloat16'" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "demo"])
@pytest.mark.parametrize("ends", [None, "auto", "taper", "cut", "network"])
def test_structure_ends_reach_the_config(command, ends):
    required = ["--image", "a.nii.gz", "--out", "m.pt"] if command == "train" else []
    chosen = [] if ends is None else ["--structure-ends", ends]
    config = config_from_args(build_parser().parse_args([command, *required, *chosen]))
    assert config.structure_ends == (ends or "auto")


def test_unknown_structure_ends_are_refused_with_the_choices(capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--structure-ends", "never"])
    assert "choose from 'auto', 'taper', 'cut', 'network'" in capsys.readouterr().err


@pytest.mark.parametrize("value", ["-1", "two"])
def test_predict_refuses_a_negative_largest_components_count_in_the_options_words(value, capsys):
    # Was accepted: every image was then predicted and failed with "keep must be >= 1, got -1.", exit 1.
    required = ["--model", "m.pt", "--image", "a.nii.gz", "--out-dir", "out"]
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["predict", *required, "--largest-components", value])
    assert exit_info.value.code == 2
    assert "argument --largest-components: " in capsys.readouterr().err


def test_predict_keeps_every_component_with_a_largest_components_count_of_0():
    required = ["--model", "m.pt", "--image", "a.nii.gz", "--out-dir", "out"]
    assert build_parser().parse_args(["predict", *required, "--largest-components", "0"]).largest_components == 0


@pytest.mark.parametrize("command", ["train", "demo"])
@pytest.mark.parametrize(
    ("value", "message"),
    [("-5", "must be at least 0, got -5"), (str(2**64), f"must be at most {2**64 - 1}, got {2**64}")],
)
def test_a_seed_the_random_generators_cannot_take_is_refused_in_the_options_words(command, value, message, capsys):
    # Was refused after the images were read, as "expected non-negative integer" (numpy) or "Overflow when
    # unpacking long long" (torch), neither naming --seed.
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([command, *_required(command), "--seed", value])
    assert exit_info.value.code == 2
    assert f"argument --seed: {message}" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "demo"])
def test_every_seed_the_random_generators_take_is_accepted(command):
    for seed in (0, 1337, 2**64 - 1):
        assert (
            config_from_args(build_parser().parse_args([command, *_required(command), "--seed", str(seed)])).seed
            == seed
        )

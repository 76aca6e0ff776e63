"""Tests for napari_action.runtime: the CPU thread cap, one rule for the command line and the widget."""

from __future__ import annotations

import pytest
import torch

from napari_action.runtime import (
    autocast,
    configure_threads,
    cpu_has_native_bfloat16,
    device_label,
    resolve_amp,
    resolve_device,
)


@pytest.mark.parametrize(
    ("asked", "default", "expected"),
    [(2, None, 2), (2, 3, 2), (None, 3, 3), (0, 3, 3), (None, None, 1), (0, None, 1), (-2, None, 1)],
    ids=["asked", "asked-over-default", "default", "zero-is-unset", "torch-own", "zero-torch-own", "negative"],
)
def test_thread_cap_is_the_asked_count_else_the_default_else_torch_own(asked, default, expected):
    # The test process starts every test at one thread (tests/conftest.py): 1 means "left alone".
    configure_threads(asked, default)
    assert torch.get_num_threads() == expected


CPU = torch.device("cpu")


@pytest.mark.parametrize("name", ["foo", "meta", "xla", "cuda:x"])
def test_a_device_napari_action_cannot_use_is_refused_in_plain_words(name):
    # Was torch's RuntimeError (a traceback on the command line) or a failure deep in training.
    with pytest.raises(ValueError, match="choose auto, cpu, cuda, cuda:N or mps"):
        resolve_device(name)


def test_a_gpu_asked_for_by_number_without_cuda_is_named_as_asked(monkeypatch):
    # Said "device='cuda' was requested" for cuda:1.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # what torch says on a machine without a GPU
    with pytest.raises(ValueError, match="the device 'cuda:1' was asked for, but PyTorch sees no CUDA GPU here"):
        resolve_device("cuda:1")


def test_cuda_asked_for_on_the_command_line_with_a_cpu_only_torch_says_which_cause_it_is(monkeypatch):
    # Said "device='cuda' was requested ... Use device='auto'", the Python API's words, to a --device user.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.version, "cuda", None)  # the CPU wheel
    with pytest.raises(ValueError, match=r"a build without CUDA\)\. Choose the device auto or cpu") as raised:
        resolve_device("cuda")
    assert "device=" not in str(raised.value)


def test_a_gpu_number_beyond_those_torch_sees_is_refused_naming_them(monkeypatch):
    # Passed, and the first weights sent there raised "CUDA error: invalid device ordinal".
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)  # what torch says on a machine with two GPUs
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(
        ValueError, match=r"device='cuda:2' does not exist: PyTorch sees 2 CUDA GPU\(s\), cuda:0 to cuda:1"
    ):
        resolve_device("cuda:2")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)


@pytest.mark.parametrize("name", ["Cpu", " cpu ", "CPU"])
def test_device_names_are_read_whatever_their_case(name):
    assert resolve_device(name) == CPU


@pytest.mark.parametrize(("amp", "cpu_bfloat16"), [(False, False), (True, False), (False, True), (True, True)])
def test_mixed_precision_on_a_cpu_follows_its_own_setting_not_the_cuda_one(amp, cpu_bfloat16):
    # Models saved with amp on (the CUDA setting) were trained in float32 on a CPU.
    assert resolve_amp(CPU, amp, cpu_bfloat16) is cpu_bfloat16


@pytest.mark.parametrize("amp", [False, True])
def test_unset_cpu_precision_is_bfloat16_exactly_where_the_cpu_computes_it_natively(amp):
    assert resolve_amp(CPU, amp, None) is cpu_has_native_bfloat16()


def test_native_bfloat16_is_what_torch_reports_for_this_cpu():
    # AVX512-BF16 or AMX: either makes bfloat16 convolutions faster than float32 ones.
    reported = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
    assert cpu_has_native_bfloat16() is bool(reported)


def test_the_cuda_setting_alone_decides_on_a_gpu_device():
    cuda = torch.device("cuda")
    assert resolve_amp(cuda, False, None) is False
    assert resolve_amp(cuda, True, False) is True


def test_mixed_precision_is_never_turned_on_where_autocast_is_not_supported():
    assert resolve_amp(torch.device("meta"), True, True) is False
    assert resolve_amp(torch.device("meta"), True, None) is False


def test_autocast_on_a_cpu_runs_convolutions_in_bfloat16_and_off_leaves_float32():
    conv = torch.nn.Conv2d(1, 2, 3)
    image = torch.rand(1, 1, 8, 8)
    with autocast(CPU, True):
        assert conv(image).dtype == torch.bfloat16
    with autocast(CPU, False):
        assert conv(image).dtype == torch.float32


def test_the_device_label_names_the_precision_when_mixed():
    assert device_label(CPU, amp=True).endswith(", bfloat16")
    assert "bfloat16" not in device_label(CPU, amp=False)

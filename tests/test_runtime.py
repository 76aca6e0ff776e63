"""Tests for napari_action.runtime: the CPU thread cap, one rule for the command line and the widget."""

from __future__ import annotations

import pytest
import torch

from napari_action.runtime import configure_threads


@pytest.mark.parametrize(
    ("asked", "default", "expected"),
    [(2, None, 2), (2, 3, 2), (None, 3, 3), (0, 3, 3), (None, None, 1), (0, None, 1), (-2, None, 1)],
    ids=["asked", "asked-over-default", "default", "zero-is-unset", "torch-own", "zero-torch-own", "negative"],
)
def test_thread_cap_is_the_asked_count_else_the_default_else_torch_own(asked, default, expected):
    # The test process starts every test at one thread (tests/conftest.py): 1 means "left alone".
    configure_threads(asked, default)
    assert torch.get_num_threads() == expected

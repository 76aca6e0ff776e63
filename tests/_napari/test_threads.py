"""Thread hygiene next to the napari GUI thread: how many threads training gets."""

from __future__ import annotations

from napari_action._napari.threads import training_threads


def test_training_threads_leave_a_core():
    assert [training_threads(n) for n in (1, 2, 8)] == [1, 1, 7]

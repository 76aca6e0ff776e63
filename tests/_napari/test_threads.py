"""Thread hygiene next to the napari GUI thread: how many threads training gets, and at what priority."""

from __future__ import annotations

import gc
import os
import sys
import threading
import weakref

import pytest

from napari_action._napari import threads
from napari_action._napari.threads import cap_torch_threads, lower_thread_priority, new_worker, training_threads
from tests.helpers.gui import TIMEOUT


def test_training_threads_use_every_core():
    assert [training_threads(n) for n in (1, 2, 8)] == [1, 2, 8]


def test_prediction_jobs_cap_torch_at_every_core_unless_told(monkeypatch):
    import torch

    monkeypatch.setattr(threads, "available_cores", lambda: 4)
    cap_torch_threads()  # a loaded model's config has no count: every core of this machine
    assert torch.get_num_threads() == 4
    cap_torch_threads(2)
    assert torch.get_num_threads() == 2


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice values are Linux's")
def test_a_reused_pool_thread_stays_ten_below_the_process():
    """Every job lowers its pool thread again; the level stays process + 10 instead of sinking to 19."""
    levels = []

    def jobs():  # one pool thread running a training, then a prediction, then another training
        for _ in range(3):
            lower_thread_priority()
            levels.append(os.getpriority(os.PRIO_PROCESS, threading.get_native_id()))

    thread = threading.Thread(target=jobs)
    thread.start()
    thread.join()
    process = os.getpriority(os.PRIO_PROCESS, os.getpid())
    assert levels == [min(19, process + 10)] * 3
    assert os.getpriority(os.PRIO_PROCESS, os.getpid()) == process  # the GUI (main) thread is left alone


class Cargo:
    """Something a job is started with (a snapshot of the layers, a trainer)."""


def weigh(cargo: Cargo, factor: int) -> int:
    return 7 * factor


def test_a_finished_job_lets_go_of_what_it_was_started_with(viewer, qtbot):
    """napari keeps every worker made beside a viewer in the window's task list for good; the job's arguments
    (an autosave's copies of the layers, 210 MB a minute on a large CT) must not stay with it."""
    cargo = Cargo()
    gone = weakref.ref(cargo)
    results = []
    worker = new_worker(weigh, cargo, 3, connect={"returned": results.append})
    with qtbot.waitSignal(worker.finished, timeout=TIMEOUT):
        worker.start()
    assert results == [21]
    del cargo
    gc.collect()
    assert gone() is None

"""Thread hygiene for background work next to the napari GUI thread.

Training on a CPU competes with the GUI for cores and for the GIL. These
helpers keep the GUI responsive (see ``benchmarks/gui_responsiveness.py``):

* :func:`training_threads`, :func:`cap_torch_threads`: torch's intra-op pool
  gets every core (set in the worker thread: the cap is per thread); the
  worker's lower priority, not a core left idle, keeps the GUI responsive;
* :func:`lower_thread_priority`: the worker thread yields the CPU to the GUI
  thread (and its GL render threads) whenever both want it;
* :func:`frequent_gil_handover` and :func:`warm_up_torch`: the Python-heavy
  start of a run (about 800 lazy torch imports at the first optimiser step,
  building the model) hands the GIL over often, so redraws are not held up;
* :func:`new_worker`: every background job starts through it, so all of them
  show up in napari's activity dock and turn an exception into one napari
  notification (:func:`relay_errors_once`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
import os
import sys
import threading
from collections.abc import Callable, Generator, Mapping
from typing import Any

from napari.qt.threading import WorkerBase, create_worker
from napari.utils.notifications import Notification, notification_manager
from qtpy.QtCore import Qt, QThread

from napari_action.cpu_allotment import allotted_cores
from napari_action.io.errors import describe_error

logger = logging.getLogger(__name__)


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, a container's CPU quota, a batch scheduler's allotment."""
    return allotted_cores()


def training_threads(cores: int | None = None) -> int:
    """torch CPU threads for training: every core.

    On 2 cores (``benchmarks/gui_responsiveness.py --threads 1`` and ``2``, back to back, twice) two
    threads trained 11-27 % faster with no longer stalls (longest 299 and 245 ms against 347 and
    288 ms; p99 80 and 79 ms against 97 and 75 ms): the worker thread's lower priority already
    gives the GUI thread the core when it needs one.
    """
    return max(1, cores or available_cores())


def lower_thread_priority(niceness: int = 10) -> None:
    """Let the calling worker thread give way to the GUI thread when both want a core.

    On Linux, Qt ignores thread priorities, but a thread has its own nice
    value: +10 gives it about a tenth of the CPU weight of the GUI (and GL
    render) threads under contention, and the full core when they idle.
    Unprivileged processes cannot lower it back, so the pool thread stays
    nice for later background jobs, which suits them too.

    The level is ``niceness`` above the process's (its main thread's), set
    rather than added: the pool reuses its threads, and adding to the
    thread's own level sank a reused one to 19 at its second run (a
    prediction after training, a second training), with a seventh of the
    CPU weight of +10, so under load its training barely moved.
    """
    if sys.platform.startswith("linux"):
        tid = threading.get_native_id()
        try:
            target = min(19, os.getpriority(os.PRIO_PROCESS, os.getpid()) + niceness)
            if os.getpriority(os.PRIO_PROCESS, tid) < target:
                os.setpriority(os.PRIO_PROCESS, tid, target)
        except OSError as exc:  # e.g. a sandbox forbidding it: keep going at normal priority
            logger.debug("could not lower the worker thread's priority: %s", exc)
        return
    QThread.currentThread().setPriority(QThread.Priority.LowPriority)


@contextlib.contextmanager
def frequent_gil_handover(interval_s: float = 0.0005):
    """Hand the GIL over every ``interval_s`` instead of every 5 ms, for a while.

    While a worker runs pure Python (imports, building the model), each of the
    GUI thread's many short GIL releases (every vispy GL call goes through
    ctypes) costs it up to one switch interval to get the GIL back; a redraw
    then takes hundreds of milliseconds. Torch kernels release the GIL, so
    steady training does not need this.
    """
    previous = sys.getswitchinterval()
    sys.setswitchinterval(min(previous, interval_s))
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


def warm_up_torch() -> None:
    """Import what the first optimiser step would import lazily (torch._dynamo: ~800 modules, ~1 s)."""
    with contextlib.suppress(ImportError):  # a torch without dynamo: nothing to warm up
        import torch._dynamo  # noqa: F401


def notify_error(exc: Exception) -> None:
    """Show a worker's exception as a napari error notification: plain words, the traceback behind them.

    The text is :func:`~napari_action.io.errors.describe_error`'s, as on the command
    line; the notification keeps the exception, so its traceback is still one click away.
    """
    manager = notification_manager
    if manager.exit_on_error or not manager.catch_error:
        # napari was told to print errors or to exit on them (NAPARI_EXIT_ON_ERROR, ...): its own handling.
        manager.receive_error(type(exc), exc, exc.__traceback__)
        return
    notification = Notification.from_exception(exc)
    notification.message = describe_error(exc)
    manager.dispatch(notification)


def relay_errors_once(worker) -> None:
    """Make sure a worker's error is notified exactly once, by us.

    napari's worker classes mean to relay errors through a mixin, but with
    PyQt6 the mixin's ``__init__`` is never reached (``QRunnable`` does not
    chain to it; napari 0.9.2), so nothing is shown. We relay ourselves and
    disconnect the mixin's relay in case a napari version does connect it.
    """
    relay = getattr(worker, "_relay_error", None)
    if relay is not None:
        with contextlib.suppress(TypeError, RuntimeError):  # not connected: the case described above
            worker.errored.disconnect(relay)
    worker.errored.connect(notify_error)


class ArgumentsLetGo:
    """``func(*args)``, run once by a function worker, which lets its arguments go as soon as it is called.

    napari files every worker made beside a viewer in that window's task list, through the worker's bound
    ``quit``, and never takes it out (napari 0.9.2): a worker, and whatever it was started with, lived as
    long as the window. Each autosave's snapshot (copies of every painted and prediction layer: 210 MB a
    minute of training on a 512 x 512 x 400 CT) and each saved model's trainer stayed for good. A
    generator lets its arguments go when it ends, or when its worker quits (:func:`new_worker` closes it).
    """

    def __init__(self, func: Callable, args: tuple):
        self.func = func
        self.args: tuple | None = args

    def __call__(self) -> Any:
        args, self.args = self.args, None
        if args is None:
            raise RuntimeError(f"{self.func!r} was called a second time; a worker runs it once.")
        return self.func(*args)

    def __repr__(self) -> str:
        return repr(self.func)  # what napari's task list names the job by


def _delegate(func: Callable, args: tuple) -> tuple[Callable, Generator]:
    """A generator function running ``func(*args)``'s generator, and that generator (made now, started by the
    worker), for the worker to close. Named as ``func``: napari's activity dock lists the job by it."""
    generator = func(*args)

    @functools.wraps(func)
    def delegate() -> Generator:
        return (yield from generator)

    return delegate, generator


def new_worker(
    func: Callable,
    *args: Any,
    connect: Mapping[str, Callable] | None = None,
    progress: dict[str, Any] | None = None,
    notify_errors: bool = True,
) -> WorkerBase:
    """A napari worker running ``func(*args)``, connected but not started.

    The caller records the worker where its callbacks will look for it, then
    calls ``worker.start()``.

    Parameters
    ----------
    func : callable
        Function, or generator function, run in the worker thread.
    *args
        Its arguments.
    connect : mapping of str to callable, optional
        Worker signal name (``"yielded"``, ``"returned"``, ``"errored"``,
        ``"finished"``...) -> slot, connected in this order, after the error
        notification.
    progress : dict, optional
        A napari progress bar for the worker (``{"total": ..., "desc": ...}``).
    notify_errors : bool
        Show the worker's exception as one napari error notification.

    Returns
    -------
    napari.qt.threading.WorkerBase
        A ``FunctionWorker``, or a ``GeneratorWorker`` for a generator function.
    """
    generator = None
    if inspect.isgeneratorfunction(func):
        func, generator = _delegate(func, args)
        args = ()
    else:
        func, args = ArgumentsLetGo(func, args), ()
    # _ignore_errors: errors reach the user as our notification and the caller's
    # "errored" slot; re-raising them on the GUI thread as well would show them twice.
    worker = create_worker(func, *args, _start_thread=False, _progress=progress, _ignore_errors=True)
    if generator is not None:
        # Quit (Stop on a paused run, a cancelled Predict) leaves the generator suspended at a yield, holding its
        # frames (a trainer, a volume in prediction: about 1 GB of a 512 x 512 x 400 CT) for as long as napari's
        # task list keeps the worker: the window's life. Closed in the worker thread, where it ran, as it quits.
        worker.aborted.connect(generator.close, Qt.ConnectionType.DirectConnection)
    if notify_errors:
        relay_errors_once(worker)
    for signal, slot in (connect or {}).items():
        getattr(worker, signal).connect(slot)
    return worker


def cap_torch_threads(num_threads: int | None = None) -> None:
    """:func:`napari_action.runtime.configure_threads` with the widget's default: every core.

    Call it in the worker thread itself (the cap is per thread); the trainer
    applies its config's cap when it is built there, prediction jobs call this.
    """
    # The core's runtime imports torch: not at the top, see the widget module's docstring.
    from napari_action.runtime import configure_threads

    configure_threads(num_threads, default=training_threads())

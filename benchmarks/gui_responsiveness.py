"""How responsive napari stays while ACTION trains (a benchmark, not a test).

A 10 ms QTimer heartbeat runs on the GUI thread; every tick that comes late
measures an event-loop stall (the time the GUI could not react). Phases:

* ``idle``: the viewer with the phantom loaded (3 subjects, subject 1 painted on 3 slices);
* ``scroll only``: the dims slider moves every 250 ms, like a user browsing (render cost);
* ``train click``: the Train slot itself (inputs checked and snapshot; the trainer is built
  in the worker);
* ``training``: the worker trains with the cpu budget while predictions stream into the
  "<image> ACTION" layers, and the slider keeps moving;
* ``scroll after``: training over, the slider keeps moving over the same layers, now
  including the prediction layers (what rendering alone costs at the end).

Run (2 CPU cores, no GPU; the issue's target is a longest stall < 100 ms)::

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/gui_responsiveness.py

Options: ``--seconds`` of training (30), ``--threads`` (the form's CPU threads; default the
widget's), ``--warmup`` steps of the supervised start (20, so that the heavier stage iii is
reached), ``--no-scroll``, ``--plain-worker`` (turn off the worker's thread hygiene of
``napari_action/_napari/threads.py``, for an A/B comparison), ``--why``
(sample every thread's stack during stalls), ``--preimport`` and ``--switch-interval-ms``
(diagnostics), ``--predict-all`` (after training, press "Predict all" and report the job's stalls,
our slots' time, memory growth and a profile of the GUI thread; no scrolling).
Numbers depend on the machine's other load: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

import numpy as np
from gui_defaults import use_the_widget_defaults

logger = logging.getLogger("gui_responsiveness")


class Heartbeat:
    """Records how late each tick of a fast timer fires, per named phase."""

    def __init__(self, interval_ms: int = 10):
        from qtpy.QtCore import Qt, QTimer

        self.interval = interval_ms / 1000
        self.phase = "idle"
        self.stalls: dict[str, list[float]] = {}
        self.long: list[tuple[float, float, str]] = []  # (start, length, phase) of stalls > 100 ms
        self._last = time.perf_counter()
        self.timer = QTimer()
        self.timer.setTimerType(Qt.TimerType.PreciseTimer)
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def start(self) -> None:
        self._last = self.t0 = time.perf_counter()
        self.timer.start()

    def set_phase(self, phase: str) -> None:
        self._tick()  # close the gap of the previous phase first
        self.phase = phase

    def _tick(self) -> None:
        now = time.perf_counter()
        stall = max(0.0, now - self._last - self.interval)
        self.stalls.setdefault(self.phase, []).append(stall)
        if stall > 0.1:
            self.long.append((self._last, stall, self.phase))
        self._last = now


class _Watchdog:
    """A daemon thread running ``self._watch`` beside the GUI thread until :meth:`stop`."""

    def __init__(self):
        import threading

        self.main_id = threading.main_thread().ident
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        raise NotImplementedError

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.thread.join(timeout=1.0)  # its counts are read next


class StallSampler(_Watchdog):
    """A watchdog thread: while the GUI thread is stalled, sample what every thread is doing.

    Used with ``--why``: prints the most frequent innermost project/library frames
    of the GUI thread and of the other threads during stalls longer than ``threshold_ms``.
    """

    def __init__(self, heartbeat: Heartbeat, threshold_ms: float = 60.0):
        import collections

        super().__init__()
        self.heartbeat = heartbeat
        self.threshold = threshold_ms / 1000
        self.samples: dict[str, collections.Counter] = {"gui": collections.Counter(), "other": collections.Counter()}

    @staticmethod
    def _where(frame, depth: int = 4) -> str:
        parts = []
        while frame is not None and len(parts) < depth:
            code = frame.f_code
            parts.append(f"{code.co_filename.split('site-packages/')[-1]}:{frame.f_lineno}({code.co_name})")
            frame = frame.f_back
        return " < ".join(parts)

    def _watch(self) -> None:
        while not self._stop.wait(0.02):
            if time.perf_counter() - self.heartbeat._last < self.threshold:
                continue
            for ident, frame in sys._current_frames().items():
                if ident == self.thread.ident:
                    continue
                self.samples["gui" if ident == self.main_id else "other"][self._where(frame)] += 1

    def report(self, top: int = 8) -> str:
        lines = []
        for kind, counter in self.samples.items():
            lines.append(f"-- {kind} thread(s) during stalls:")
            lines += [f"{n:5d}  {where}" for where, n in counter.most_common(top)]
        return "\n".join(lines)


class GuiProfile(_Watchdog):
    """Samples the GUI thread's stack every ``every_s`` from a watchdog thread (``--predict-all``).

    Counts, per sample, the outermost frame of this project (the slot the event loop is in) and
    the innermost frame; a sample with no project frame and a short stack is the idle event loop.
    """

    def __init__(self, every_s: float = 0.005):
        import collections

        super().__init__()
        self.every = every_s
        self.slots: collections.Counter = collections.Counter()
        self.inner: collections.Counter = collections.Counter()
        self.total = 0

    def _watch(self) -> None:
        while not self._stop.wait(self.every):
            frame = sys._current_frames().get(self.main_id)
            stack = []
            while frame is not None:
                code = frame.f_code
                stack.append(f"{code.co_filename.split('site-packages/')[-1]}:{code.co_name}")
                frame = frame.f_back
            self.total += 1
            ours = [where for where in stack if "napari_action" in where and "benchmarks" not in where]
            if len(stack) <= 3 and not ours:
                self.slots["(event loop, idle or C++)"] += 1
                continue
            self.slots[ours[-1] if ours else " < ".join(stack[:2])] += 1
            self.inner[stack[0]] += 1

    def report(self, top: int = 12) -> str:
        lines = [f"-- GUI thread, {self.total} samples every {self.every * 1000:.0f} ms: outermost project frame"]
        lines += [f"{n / self.total:6.1%}  {where}" for where, n in self.slots.most_common(top)]
        lines.append("-- innermost frame (busy samples)")
        lines += [f"{n / self.total:6.1%}  {where}" for where, n in self.inner.most_common(top)]
        return "\n".join(lines)


def _rss_mib() -> float:
    """This process's resident memory (Linux)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load_scene(viewer, subjects: int, shape: tuple[int, int, int]) -> None:
    """The phantom: subject 1 painted on 3 slices, the others unlabeled."""
    from napari_action.data.samples import PHANTOM_CLASS_NAMES, evenly_spaced_slices, make_phantom, sparse_from_truth

    for number, subject in enumerate(make_phantom(subjects, shape)):
        scale = subject.meta.zooms
        viewer.add_image(subject.image, name=subject.name, scale=scale)
        if number == 0:
            painted = sparse_from_truth(subject.labels, 2, evenly_spaced_slices(subject.labels, 2, 3))
            features = {"index": list(PHANTOM_CLASS_NAMES), "name": list(PHANTOM_CLASS_NAMES.values())}
            viewer.add_labels(painted, name=f"{subject.name} labels", scale=scale, features=features)
    viewer.dims.order = (2, 0, 1)  # short-axis slices along the last array axis, as painted


class Scroller:
    """Moves the slice slider back and forth, like a user browsing the volume."""

    def __init__(self, viewer, every_ms: int = 250):
        from qtpy.QtCore import QTimer

        self.viewer = viewer
        self.direction = 1
        self.timer = QTimer()
        self.timer.setInterval(every_ms)
        self.timer.timeout.connect(self._step)

    def _step(self) -> None:
        dims = self.viewer.dims
        axis = dims.not_displayed[0]
        step, top = dims.current_step[axis], dims.nsteps[axis] - 1
        if not 0 <= step + self.direction <= top:
            self.direction *= -1
        dims.set_current_step(axis, step + self.direction)


def summarize(stalls: dict[str, list[float]]) -> str:
    """A table of stall statistics (milliseconds) per phase."""
    lines = [f"{'phase':<12} {'ticks':>6} {'max ms':>8} {'p99 ms':>8} {'p50 ms':>8} {'>50ms':>6} {'>100ms':>7}"]
    for phase, values in stalls.items():
        ms = np.asarray(values) * 1000
        lines.append(
            f"{phase:<12} {ms.size:>6} {ms.max():>8.1f} {np.percentile(ms, 99):>8.1f} "
            f"{np.percentile(ms, 50):>8.1f} {(ms > 50).sum():>6} {(ms > 100).sum():>7}"
        )
    return "\n".join(lines)


class _Timed:
    """Wraps a callable and appends each call's duration (ms) to a list, and its start to ``starts``."""

    def __init__(self, func, durations: list[float], starts: list[float]):
        self.func, self.durations, self.starts = func, durations, starts

    def __call__(self, *args):
        start = time.perf_counter()
        self.starts.append(start)
        try:
            return self.func(*args)
        finally:
            self.durations.append((time.perf_counter() - start) * 1000)


class Benchmark:
    """Drives the phases from timers inside the Qt event loop."""

    def __init__(self, args: argparse.Namespace):
        import napari

        from napari_action._napari.widget import ActionWidget

        self.args = args
        self.viewer = napari.Viewer(show=True)
        self.viewer.window.resize(1400, 900)
        load_scene(self.viewer, args.subjects, tuple(args.shape))
        self.widget = ActionWidget(self.viewer)
        self.viewer.window.add_dock_widget(self.widget, name="ACTION")
        self.widget.config_overrides = {"steps_supervised_start": args.warmup}
        if args.threads is not None:
            self.widget.options.num_threads.value = args.threads
        self.heartbeat = Heartbeat(args.interval_ms)
        self.scroller = Scroller(self.viewer)
        self.started = 0.0

    def run(self) -> None:
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QApplication

        self._time_callbacks()
        self.heartbeat.start()
        self.sampler = StallSampler(self.heartbeat) if self.args.why else None
        if self.sampler is not None:
            self.sampler.start()
        QTimer.singleShot(3000, self.scroll_only)
        QApplication.instance().exec()

    def _time_callbacks(self) -> None:
        """Measure our own GUI-thread work: progress display and streamed layer writes."""
        self.callback_ms: dict[str, list[float]] = {}
        self.write_starts: list[float] = []
        for name in ("_on_progress", "_write_predictions"):
            starts = self.write_starts if name == "_write_predictions" else []
            durations = self.callback_ms.setdefault(name, [])
            setattr(self.widget, name, _Timed(getattr(self.widget, name), durations, starts))

    def scroll_only(self) -> None:
        from qtpy.QtCore import QTimer

        if self.args.no_scroll:
            self.click_train()
            return
        self.heartbeat.set_phase("scroll only")
        self.scroller.timer.start()
        QTimer.singleShot(int(self.args.seconds * 1000 / 3), self.click_train)

    def click_train(self) -> None:
        from qtpy.QtCore import QTimer

        self.heartbeat.set_phase("train click")
        self.widget.train_button.click()
        widget_finished = self.widget.run.callbacks.finished
        self.widget.run.callbacks.finished = lambda: self.scroll_after(widget_finished)  # also when the run failed
        self.heartbeat.set_phase("training")
        self.started = time.perf_counter()
        QTimer.singleShot(int(self.args.seconds * 1000), self.stop)

    def stop(self) -> None:
        self.heartbeat.set_phase("stopping")
        self.widget.stop_training()

    def scroll_after(self, widget_finished) -> None:
        """Scroll again with training over: the same layers (now with predictions), no worker."""
        from qtpy.QtCore import QTimer

        self.elapsed = time.perf_counter() - self.started
        widget_finished()  # the widget's own end of the run, timed out of the training phase
        if self.args.predict_all:
            QTimer.singleShot(2000, self.predict_all)
            return
        if self.args.no_scroll:
            self.report()
            return
        self.heartbeat.set_phase("scroll after")
        QTimer.singleShot(int(self.args.seconds * 1000 / 3), self.report)

    def predict_all(self) -> None:
        """Press "Predict all opened volumes" and time the job (``--predict-all``)."""
        self.predict_ms: dict[str, list[float]] = {}
        widget, panel = self.widget, self.widget.refine_panel
        for owner, name in (
            (widget, "_on_prediction_update"),
            (widget.writer, "write_volume"),
            (panel, "volume_predicted"),
            (panel.cohort_tab, "refresh"),
        ):
            setattr(owner, name, _Timed(getattr(owner, name), self.predict_ms.setdefault(name, []), []))
        self.rss_before = _rss_mib()
        self.profile = GuiProfile()
        self.profile.start()
        self.heartbeat.set_phase("predict all")
        self.predict_started = time.perf_counter()
        widget.predict_button.click()
        job = widget.training_state.job
        finished = job.on_finished
        job.on_finished = lambda: self.predicted(finished)

    def predicted(self, widget_finished) -> None:
        from qtpy.QtCore import QTimer

        self.predict_elapsed = time.perf_counter() - self.predict_started
        widget_finished()
        self.profile.stop()
        self.heartbeat.set_phase("after")
        # What the throttled refreshes (next slices, 300 ms after the last volume) still do.
        QTimer.singleShot(1500, self.report_predict_all)

    def report_predict_all(self) -> None:
        from qtpy.QtWidgets import QApplication

        self.heartbeat.set_phase("done")
        self.heartbeat.timer.stop()
        self.heartbeat.stalls.pop("done", None)
        ticks = np.asarray(self.heartbeat.stalls["predict all"])
        volumes = len(self.widget.refine_panel.cohort_tab.records)
        print(summarize(self.heartbeat.stalls))  # noqa: T201 (a script's report)
        print(  # noqa: T201
            f"\npredict all: {volumes} volumes in {self.predict_elapsed:.1f} s; GUI late {ticks.sum():.1f} s in total "
            f"over {ticks.size} ticks (one every {self.predict_elapsed / max(ticks.size, 1) * 1000:.1f} ms); "
            f"RSS {self.rss_before:.0f} -> {_rss_mib():.0f} MiB "
            f"(+{(_rss_mib() - self.rss_before) / max(volumes, 1):.1f} MiB per volume)"
        )
        for name, values in self.predict_ms.items():
            if values:
                print(  # noqa: T201
                    f"{name}: {len(values)} calls, total {sum(values):.0f} ms, max {max(values):.1f} ms, "
                    f"mean {np.mean(values):.1f} ms"
                )
        print(self.profile.report())  # noqa: T201
        self.viewer.close()
        QApplication.instance().quit()

    def report(self) -> None:
        from qtpy.QtWidgets import QApplication

        self.heartbeat.set_phase("done")
        self.heartbeat.timer.stop()
        self.scroller.timer.stop()
        self.heartbeat.stalls.pop("done", None)
        progress = self.widget.run.last_progress
        if self.widget.run.error is not None:
            print(f"training failed: {self.widget.run.error!r}")  # noqa: T201
        elapsed = self.elapsed
        print(summarize(self.heartbeat.stalls))  # noqa: T201 (a script's report)
        print(  # noqa: T201
            f"\n{progress.step} steps in {elapsed:.1f} s ({progress.step / elapsed:.2f} steps/s), "
            f"last stage: {progress.stage}, device: {progress.device}, "
            f"{len(self.widget.plot.agreement)} streamed updates written"
        )
        t0 = self.heartbeat.t0
        for start, length, phase in self.heartbeat.long:
            writes = [f"{w - t0:.2f}" for w in self.write_starts if start - 0.05 <= w <= start + length]
            print(
                f"stall of {length * 1000:.0f} ms at t={start - t0:.2f} s ({phase})"  # noqa: T201
                + (f", streamed write at t={', '.join(writes)}" if writes else "")
            )
        if self.sampler is not None:
            self.sampler.stop()
            print(self.sampler.report())  # noqa: T201
        for name, values in self.callback_ms.items():
            if values:
                print(
                    f"{name}: {len(values)} calls, max {max(values):.1f} ms, "  # noqa: T201
                    f"mean {np.mean(values):.1f} ms"
                )
        self.viewer.close()
        QApplication.instance().quit()


def _plain_worker() -> None:
    """Make the training worker an ordinary thread (for an A/B comparison)."""
    import contextlib

    from napari_action._napari import workers as _worker

    _worker.lower_thread_priority = lambda *args: None
    _worker.warm_up_torch = lambda: None
    _worker.frequent_gil_handover = contextlib.nullcontext


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--warmup", type=int, default=20, help="steps of the supervised start")
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=(128, 128, 16))
    parser.add_argument("--interval-ms", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None, help="the form's CPU threads (default: the widget's)")
    parser.add_argument("--no-scroll", action="store_true")
    parser.add_argument(
        "--predict-all",
        action="store_true",
        help="after training, press Predict all and time the job (no scrolling; use with --subjects, --shape)",
    )
    parser.add_argument(
        "--switch-interval-ms",
        type=float,
        default=None,
        help="override sys.setswitchinterval (GIL hand-over) to compare",
    )
    parser.add_argument("--why", action="store_true", help="sample thread stacks during stalls")
    parser.add_argument(
        "--plain-worker",
        action="store_true",
        help="turn off the worker's thread hygiene (priority, GIL hand-over, warm-up) to compare",
    )
    parser.add_argument(
        "--preimport",
        action="store_true",
        help="import torch._dynamo (pulled in by the first optimiser step) before starting",
    )
    args = parser.parse_args(argv)
    if args.predict_all:
        args.no_scroll = True
    use_the_widget_defaults()
    if args.plain_worker:
        _plain_worker()
    if args.preimport:
        import torch._dynamo  # noqa: F401
    if args.switch_interval_ms is not None:
        sys.setswitchinterval(args.switch_interval_ms / 1000)
    logging.basicConfig(level=logging.WARNING)
    Benchmark(args).run()


if __name__ == "__main__":
    main()

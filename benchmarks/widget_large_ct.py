"""The widget on a CT-sized scan: how soon the preview and the first step come, what the GUI thread and memory do.

A synthetic CT (``--size`` x ``--size`` axial slices, ``--slices`` of them; the organs of
``propagation_speed.py``) painted on three axial slices is put in a real napari window and the widget's
defaults train on it. Train is pressed, training is stopped after its first step, then Train is
pressed again over that model and stopped after its first step too: the second press is where the model
before it is kept aside until the new one has trained a step, so its memory shows there. Every
``--every`` seconds a line reports the streamed slices, the step and the resident memory; a 10 ms
heartbeat measures the GUI thread's stalls in each phase (``--why``: where the threads are during the long ones).

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/widget_large_ct.py --size 512 --slices 400

Numbers depend on the machine's other load: compare runs made back to back.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
from gui_defaults import use_the_widget_defaults
from gui_responsiveness import Heartbeat, StallSampler, _rss_mib, summarize
from propagation_speed import SPACING, synthetic_ct

NAME = "ct"
PAINTED = 3  # axial slices painted, evenly spaced


class LargeScanRun:
    """Presses Train twice, stopping each run after its first step, and samples what the user would see."""

    def __init__(self, args: argparse.Namespace):
        import napari
        from qtpy.QtCore import QTimer

        from napari_action._napari.widget import ActionWidget

        image, truth = synthetic_ct(args.size, args.slices)
        painted = np.zeros_like(truth)
        for index in np.linspace(0, args.slices, PAINTED + 2).astype(int)[1:-1]:
            painted[index] = truth[index]
        self.viewer = napari.Viewer(show=True)
        self.viewer.add_image(image.astype(np.int16), name=NAME, scale=SPACING)
        self.viewer.add_labels(painted, name=f"{NAME} labels", scale=SPACING)
        self.widget = ActionWidget(self.viewer)
        self.viewer.window.add_dock_widget(self.widget, name="ACTION")
        self.heartbeat = Heartbeat()
        self.sampler = StallSampler(self.heartbeat, threshold_ms=200.0) if args.why else None
        self.timer = QTimer()
        self.timer.setInterval(int(args.every * 1000))
        self.timer.timeout.connect(self.sample)
        self.presses: list[dict] = []
        self.args = args

    def start(self) -> None:
        """Press Train once the window has shown itself (its first paint would count as a stall of the press)."""
        from qtpy.QtCore import QTimer

        self.heartbeat.start()
        if self.sampler is not None:
            self.sampler.start()
        QTimer.singleShot(3000, self._first_press)

    def _first_press(self) -> None:
        self.timer.start()
        self.press_train()

    def press_train(self) -> None:
        number = len(self.presses) + 1
        self.heartbeat.set_phase(f"train {number}")
        self.presses.append({"press": number, "rss_before_mib": round(_rss_mib()), "peak_rss_mib": 0})
        self.t0 = time.perf_counter()
        self.widget.train_button.click()
        self.presses[-1]["click_ms"] = round(1000 * (time.perf_counter() - self.t0))  # the Train slot on the GUI thread

    def sample(self) -> None:
        press, run = self.presses[-1], self.widget.run
        elapsed = round(time.perf_counter() - self.t0, 1)
        tracker = self.widget.training_state.target(0)
        streamed = 0 if tracker is None else int(np.count_nonzero(tracker.streamed))
        rss = round(_rss_mib())
        press["peak_rss_mib"] = max(press["peak_rss_mib"], rss)
        if streamed and "painted_shown_s" not in press:
            press["painted_shown_s"] = elapsed
        if streamed > PAINTED and "first_propagated_s" not in press:  # more than the painted slices
            press["first_propagated_s"] = elapsed
        step = None if run is None or run.last_progress is None else run.last_progress.step
        print(json.dumps({"press": press["press"], "s": elapsed, "streamed": streamed, "step": step, "rss_mib": rss}))  # noqa: T201
        if run is not None and run.error is not None:
            press["error"] = repr(run.error)
            self.finish()
        elif step is not None and "first_step_s" not in press:
            press.update(first_step_s=elapsed, slices_at_first_step=streamed)
            self.widget.stop_training()
        elif "first_step_s" in press and not self._working():
            self.press_train() if len(self.presses) < self.args.presses else self.finish()
        elif elapsed > self.args.timeout:
            press["timed_out"] = True
            self.finish()

    def _working(self) -> bool:
        run = self.widget.run
        return (run is not None and run.is_running) or self.widget.training_state.job_running

    def finish(self) -> None:
        from qtpy.QtWidgets import QApplication

        self.timer.stop()
        self.heartbeat.timer.stop()
        if self.sampler is not None:
            self.sampler.stop()
        if self._working():
            self.widget.stop_training()
        deadline = time.perf_counter() + 60
        while (self._working() or self.widget.files_panel.is_busy) and time.perf_counter() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)
        self.viewer.close()


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--slices", type=int, default=400)
    parser.add_argument("--every", type=float, default=0.5)
    parser.add_argument("--presses", type=int, default=2, help="Train presses, each stopped after its first step")
    parser.add_argument("--why", action="store_true", help="sample the threads' stacks during stalls over 200 ms")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds a press may take to its first step")
    args = parser.parse_args(argv)
    use_the_widget_defaults()
    import napari

    run = LargeScanRun(args)
    run.start()
    napari.run()
    print(summarize(run.heartbeat.stalls))  # noqa: T201
    print(
        "long stalls (s from start, ms, phase):",
        [(round(t - run.heartbeat.t0, 1), round(1000 * d), p) for t, d, p in run.heartbeat.long],
    )  # noqa: T201
    if run.sampler is not None:
        print(run.sampler.report(top=12))  # noqa: T201
    print(json.dumps({"size": args.size, "slices": args.slices, "presses": run.presses}))  # noqa: T201


if __name__ == "__main__":
    main()

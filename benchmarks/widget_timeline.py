"""What the user sees after pressing Train: Dice of the prediction layer over time, in a real napari window.

Colin27 (AAL, 6 subcortical classes) with k axial slices painted from the truth
is opened in napari, the ACTION dock widget is docked, and Train is clicked.
Every ``--every`` seconds the "<image> ACTION" layer is scored (mean Dice over
the classes, on every slice that was not painted) together with the stage, the
step and the network's Dice on the painted slices. The run ends after
``--seconds``, or when training and the prediction its end starts are done.

Run (2 CPU cores; the widget trains with every core by default)::

    xvfb-run -a -s "-screen 0 1280x1024x24" .venv/bin/python benchmarks/widget_timeline.py --k 3 \\
        --json bench-out/widget_timeline.json

Options: ``--set NAME=VALUE`` overrides a TrainConfig field of the widget's run
(e.g. ``--set stream_min_fit=0``) and ``--shift`` moves the painted slices.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from gui_defaults import use_the_widget_defaults

from napari_action.data.samples import COLIN27_CLASS_NAMES, evenly_spaced_slices, load_colin27, sparse_from_truth
from napari_action.evaluation.metrics import dice_per_class

AXIS = 2  # Colin27's array axis closest to superior-inferior: axial slices


def mean_dice(prediction: np.ndarray, truth: np.ndarray, painted: list[int]) -> float:
    """Mean Dice over the foreground classes on the slices nobody painted (absent class = 0)."""
    keep = np.setdiff1d(np.arange(truth.shape[AXIS]), painted)
    scores = dice_per_class(np.take(prediction, keep, AXIS), np.take(truth, keep, AXIS), range(1, 7))
    return float(np.mean([0.0 if np.isnan(v) else v for v in scores.values()]))


class Timeline:
    """Drives the widget and samples the prediction layer on a Qt timer."""

    def __init__(self, args: argparse.Namespace):
        import napari
        from qtpy.QtCore import QTimer

        from napari_action._napari.widget import ActionWidget

        image, self.truth, meta = load_colin27()
        self.painted = [s + args.shift for s in evenly_spaced_slices(self.truth, AXIS, args.k)]
        self.viewer = napari.Viewer(show=True)
        self.viewer.window.resize(1400, 900)
        self.viewer.add_image(image, name="colin27", affine=meta.affine)
        labels = self.viewer.add_labels(sparse_from_truth(self.truth, AXIS, self.painted), name="painted")
        labels.affine = meta.affine
        labels.metadata["class_names"] = dict(COLIN27_CLASS_NAMES)
        self.widget = ActionWidget(self.viewer)
        self.viewer.window.add_dock_widget(self.widget, name="ACTION")
        self.widget.config_overrides = dict(args.set)
        self.args = args
        self.samples: list[dict] = []
        self.timer = QTimer()
        self.timer.setInterval(int(args.every * 1000))
        self.timer.timeout.connect(self.sample)

    def start(self) -> None:
        self.t0 = time.perf_counter()
        self.widget.train_button.click()
        self.timer.start()
        self.sample()

    def sample(self) -> None:
        elapsed = time.perf_counter() - self.t0
        layer = next((lay for lay in self.viewer.layers if lay.name == "colin27 ACTION"), None)
        run = self.widget.run
        progress = None if run is None else run.last_progress
        entry = {
            "seconds": round(elapsed, 1),
            "dice": None if layer is None else mean_dice(np.asarray(layer.data), self.truth, self.painted),
            "stage": None if progress is None else progress.stage,
            "step": None if progress is None else progress.step,
            "painted_fit": None if progress is None else progress.painted_fit,
            "streaming": None if progress is None else progress.streaming,
            "predicting": self.widget.training_state.job is not None,
        }
        self.samples.append(entry)
        print(json.dumps(entry), flush=True)  # noqa: T201 (a benchmark's report)
        # Training's end starts the prediction of the trained images: the run ends once that is shown.
        finished = run is not None and not run.is_running and self.widget.training_state.job is None and elapsed > 5
        if elapsed >= self.args.seconds or finished:
            self.finish()

    def finish(self) -> None:
        self.timer.stop()
        run = self.widget.run
        if run is not None and run.error is not None:
            print(f"training failed: {run.error!r}", flush=True)  # noqa: T201 (a benchmark's report)
        if self.widget.run is not None and self.widget.run.is_running:
            self.widget.stop_training()
        from qtpy.QtWidgets import QApplication

        deadline = time.perf_counter() + 60
        while self._still_working() and time.perf_counter() < deadline:
            QApplication.processEvents()
            time.sleep(0.05)
        self.viewer.close()

    def _still_working(self) -> bool:
        """Training, or the prediction or autosave that its end starts, is still running.

        Closing the viewer before the autosave's worker has started left it to start during
        interpreter shutdown, where its zarr write failed (and the process aborted).
        """
        run = self.widget.run
        training = run is not None and run.is_running
        return training or self.widget.training_state.job is not None or self.widget.files_panel.is_busy


def dice_at(samples: list[dict], seconds: float) -> float | None:
    """The layer's Dice at the last sample taken within ``seconds`` of Train."""
    earlier = [s["dice"] for s in samples if s["seconds"] <= seconds and s["dice"] is not None]
    return earlier[-1] if earlier else None


def first_reaching(samples: list[dict], level: float) -> float | None:
    return next((s["seconds"] for s in samples if s["dice"] is not None and s["dice"] >= level), None)


def _setting(text: str) -> tuple[str, object]:
    key, _, raw = text.partition("=")
    try:
        return key, json.loads(raw)
    except json.JSONDecodeError:
        return key, raw


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--k", type=int, default=3)
    parser.add_argument("--shift", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=300.0)
    parser.add_argument("--every", type=float, default=2.0)
    parser.add_argument("--set", type=_setting, action="append", default=[], metavar="NAME=VALUE")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)
    use_the_widget_defaults()
    import napari

    timeline = Timeline(args)
    timeline.start()
    napari.run()
    summary = {
        "k": args.k,
        "painted": timeline.painted,
        "settings": dict(args.set),
        "dice_at_20_s": dice_at(timeline.samples, 20.0),
        "first_dice_0.5_s": first_reaching(timeline.samples, 0.5),
        "first_dice_0.65_s": first_reaching(timeline.samples, 0.65),
        "samples": timeline.samples,
    }
    print(json.dumps({k: v for k, v in summary.items() if k != "samples"}))  # noqa: T201
    if args.json is not None:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()

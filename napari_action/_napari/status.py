"""The widget's status line while training runs."""

from __future__ import annotations

import math

from napari_action.progress import TrainProgress


def _format_eta(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


def status_text(progress: TrainProgress) -> str:
    """One line: stage, step/total, losses, speed, ETA, device, and how well the network fits the labeled slices."""
    losses = ", ".join(f"{k} {v:.3f}" for k, v in progress.losses.items() if k != "total")
    total = progress.losses.get("total", float("nan"))
    return (
        f"{progress.stage} · step {progress.step}/{progress.total_steps} · loss {total:.3f}"
        + (f" ({losses})" if losses else "")
        + f" · {progress.steps_per_second:.2f} steps/s · ETA {_format_eta(progress.eta_seconds)}"
        + f" · {progress.device}"
        + _fit_text(progress)
    )


def finished_text(progress: TrainProgress) -> str:
    """The status line once a run ended on ``progress``, its last step: done, or where Stop ended it.

    A stopped run's last line still held its speed and time left ("Done. … step 2/404 … ETA 0:38").
    """
    if progress.step >= progress.total_steps:
        return "Done. " + status_text(progress)
    total = progress.losses.get("total", float("nan"))
    return (
        f"Stopped at step {progress.step}/{progress.total_steps} ({progress.stage}, loss {total:.3f})"
        + _fit_text(progress)
        + ". The model as it is now is kept: Predict all opened volumes and Save model… use it; Train starts over."
    )


def _fit_text(progress: TrainProgress) -> str:
    if progress.painted_fit is None:
        return ""
    text = f" · Dice on your slices {progress.painted_fit:.2f}"
    if not progress.streaming:
        return text + " (the preview of your labels stays until the network fits your slices)"
    if progress.preview_kept:
        return text + " (the network fills the slices your labels do not reach; Predict shows it everywhere)"
    return text

"""The command line's training progress: a bar on a terminal, plain lines in files and CI logs."""

from __future__ import annotations

import io

from napari_action.cli.progress_bar import TerminalProgress
from napari_action.progress import TrainProgress


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _progress(step: int, stage: str, total: int = 6) -> TrainProgress:
    return TrainProgress(
        stage=stage,
        step=step,
        total_steps=total,
        losses={"total": 0.5},
        lr=1e-3,
        steps_per_second=10.0,
        eta_seconds=1.0,
        device="CPU",
    )


def _run(bar: TerminalProgress) -> None:
    steps = [_progress(i, "stage i" if i <= 3 else "stage iii") for i in range(1, 7)]
    for progress in steps:
        bar.update(progress)
    bar.update(steps[-1], force=True)
    bar.close()


def test_a_log_file_gets_one_line_per_stage_and_the_end_without_carriage_returns():
    log = io.StringIO()
    _run(TerminalProgress(log, log_every_s=3600))
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert [line.split()[1] for line in lines] == ["1/6", "4/6", "6/6"]
    assert "stage iii" in lines[1]


def test_a_terminal_gets_one_bar_redrawn_in_place():
    terminal = _Terminal()
    _run(TerminalProgress(terminal))
    text = terminal.getvalue()
    assert text.startswith("\r[") and text.endswith("\n") and text.count("\n") == 1
    assert "6/6" in text.rsplit("\r", 1)[-1]

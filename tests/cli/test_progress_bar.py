"""The command line's training progress: a bar on a terminal, plain lines in files and CI logs."""

from __future__ import annotations

import dataclasses
import io
import re

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
    assert [line.split()[2] for line in lines] == ["1/6", "4/6", "6/6"]
    assert "stage iii" in lines[1]


def test_a_log_line_says_when_how_long_so_far_and_how_long_to_go_in_hours_and_minutes():
    # A cluster job's log said "eta 120110s", with no clock time to match it against the scheduler's.
    log = io.StringIO()
    bar = TerminalProgress(log, log_every_s=3600)
    bar.update(dataclasses.replace(_progress(1, "stage iii"), eta_seconds=120110.4))
    bar.update(dataclasses.replace(_progress(2, "stage iii"), eta_seconds=float("inf")), force=True)
    first, second = log.getvalue().splitlines()
    assert re.fullmatch(
        r"\d\d:\d\d:\d\d step 1/6 stage iii: loss 0\.500, 10\.0 it/s, elapsed 0:00, eta 33:21:50", first
    )
    assert second.endswith("eta ?") and " elapsed 0:0" in second


def test_a_terminal_gets_one_bar_redrawn_in_place():
    terminal = _Terminal()
    _run(TerminalProgress(terminal))
    text = terminal.getvalue()
    assert text.startswith("\r") and text.endswith("\n") and text.count("\n") == 1
    final = text.rstrip("\n").rsplit("\r", 1)[-1]
    assert final.startswith("stage iii") and "6/6" in final and "loss 0.500" in final


def test_a_notice_gets_a_line_of_its_own_on_a_terminal_and_in_a_log():
    for stream in (_Terminal(), io.StringIO()):
        bar = TerminalProgress(stream, log_every_s=3600)
        bar.update(_progress(1, "stage iii"))
        noticed = dataclasses.replace(_progress(2, "stage iii"), notice="CUDA memory was full: smaller batches.")
        bar.update(noticed)
        bar.close()
        lines = stream.getvalue().replace("\r", "\n").splitlines()
        assert "Note: CUDA memory was full: smaller batches." in lines

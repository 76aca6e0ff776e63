"""What ``predict`` prints while it works through a cohort: a line per file, a bar over the current file's slices
on a terminal, and the summary of the run (the counts on stdout, every failure with its message on stderr)."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from napari_action.inference.cohort import FileOutcome, count_by_status


def print_summary(
    outcomes: Sequence[FileOutcome],
    seconds: float,
    *,
    prefix: str = "",
    scope: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> None:
    """The counts on ``out`` (stdout), then every failure with its message on ``err`` (stderr).

    Parameters
    ----------
    outcomes : sequence of FileOutcome
        What became of each file.
    seconds : float
        Wall time of the run.
    prefix : str
        Put before every line (the rank of a shared run).
    scope : str, optional
        Who the summary covers, e.g. ``"4 ranks"``.
    out, err : text streams, optional
        Where to write; stdout and stderr by default.
    """
    out, err = out or sys.stdout, err or sys.stderr
    over = f" over {scope}" if scope else ""
    print(f"{prefix}Summary{over}: {counts_text(outcomes)} of {len(outcomes)} files in {seconds:.1f} s.", file=out)
    failed = [o for o in outcomes if o.status == "failed"]
    if failed:
        print(f"{prefix}Failed ({len(failed)}):", file=err)
        for outcome in failed:
            print(f"{prefix}  {outcome.message}", file=err)


def counts_text(outcomes: Sequence[FileOutcome]) -> str:
    counts = count_by_status(outcomes)
    return ", ".join(f"{n} {status}" for status, n in counts.items() if n or status == "written")


class FileProgress:
    """Progress over files: one line per finished file, and on a terminal a bar over the current file's slices.

    A line per file (``[3/120] scan.nii.gz -> out/scan_action.nii.gz (4.2 s)``) suits logs and
    batch jobs; a failed file's line goes to stderr. On a terminal the bar is redrawn in
    place on stderr while a file is predicted, at most 5 times a second.

    Parameters
    ----------
    total : int
        Files this process predicts.
    prefix : str
        Put before every line (the rank of a shared run).
    out, err : text streams, optional
        Lines of written/skipped and of failed files; stdout and stderr by default.
    """

    def __init__(self, total: int, prefix: str = "", out: TextIO | None = None, err: TextIO | None = None) -> None:
        self.total = total
        self.prefix = prefix
        self.out = out or sys.stdout
        self.err = err or sys.stderr
        self.interactive = bool(getattr(self.err, "isatty", lambda: False)())
        self._number = 0
        self._name = ""
        self._drawn = float("-inf")
        self._bar_shown = False

    def start(self, number: int, image: Path) -> None:
        """File ``number`` (from 1) begins."""
        self._number, self._name = number, image.name

    def slices(self, done: int, total: int) -> None:
        """``done`` of ``total`` slices of the current file are predicted (drawn on a terminal only)."""
        now = time.perf_counter()
        if not self.interactive or (now - self._drawn < 0.2 and done < total):
            return
        self._drawn = now
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "#" * filled + "-" * (width - filled)
        self.err.write(f"\r{self._counter()} [{bar}] {done}/{total} slices of {self._name} ")
        self.err.flush()
        self._bar_shown = True

    def note(self, message: str) -> None:
        """A message about the current file (a warning), on a line of its own on stderr."""
        self._end_bar()
        print(f"{self.prefix}{message}", file=self.err)

    def finish(self, outcome: FileOutcome) -> None:
        """Print the line of a finished file."""
        self._end_bar()
        head = f"{self._counter()} {outcome.source}"
        if outcome.status == "written":
            print(f"{head} -> {outcome.target} ({outcome.seconds:.1f} s)", file=self.out, flush=True)
        elif outcome.status == "skipped":
            print(f"{head}: skipped, {outcome.target} exists", file=self.out, flush=True)
        else:
            reason = outcome.message.removeprefix(f"{outcome.source}: ")  # the line names the file already
            print(f"{head}: FAILED ({outcome.seconds:.1f} s): {reason}", file=self.err, flush=True)

    def _counter(self) -> str:
        return f"{self.prefix}[{self._number}/{self.total}]"

    def _end_bar(self) -> None:
        if self._bar_shown:
            self.err.write("\r\033[K")  # clear the bar's line so that the next line starts clean
            self._bar_shown = False

"""Command line: ``napari-action train | predict | evaluate | convert | demo``.

Everything here is a thin shell over the core, so what the command line does
the napari widget does too, and vice versa. Each sub-command lives in its own
module with its options (``add_parser``) and what it does (``run``); this
module only puts them together.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence

from napari_action.cli import convert, demo, evaluate, predict, reorient, train
from napari_action.io.errors import describe_error

logger = logging.getLogger("napari_action")

# In the order `napari-action --help` lists them.
COMMANDS = (train, predict, evaluate, convert, reorient, demo)


def build_parser() -> argparse.ArgumentParser:
    """The parser of the ``napari-action`` command with all sub-commands."""
    parser = argparse.ArgumentParser(
        prog="napari-action",
        description="ACTION semi-supervised segmentation from a few painted slices.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    commands = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.add_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``napari-action`` command; return the exit code.

    Errors the user can fix (bad files, bad options) print one line and return 2:
    every sub-command's errors are worded here, once, by
    :func:`~napari_action.io.errors.describe_error` (the path, what is wrong with it,
    what to do; no ``errno`` numbers, no library internals). Ctrl-C returns 130 and SIGTERM 143, each
    after a line saying what the command left behind.
    """
    _print_what_the_console_cannot_show_escaped()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        with _terminate_as_interrupt():
            return args.run(args)
    except (ValueError, OSError) as error:
        print(f"napari-action {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as interruption:
        # What an interrupted command leaves behind, when it has something to say (``interrupted`` default).
        kept = getattr(args, "interrupted", None)
        how, code = ("terminated (SIGTERM)", 143) if isinstance(interruption, Terminated) else ("interrupted", 130)
        print(f"napari-action {args.command}: {how}{f'; {kept}' if kept else ''}", file=sys.stderr)
        return code


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: a batch scheduler's time limit (SLURM sends it ~30 s before SIGKILL), ``kill``."""


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM ends the command as Ctrl-C does: partial files are removed and the log says what was kept.

    Python's default for SIGTERM ends the process on the spot: a job at its time limit left a log that
    stopped mid-training without a word, and the temporary files of the masks being written. Only where
    SIGTERM still has its default (a caller's own handler is kept) and in the main thread (the only one
    that can set a handler).
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def stop(signum: int, frame: object) -> None:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)  # a second SIGTERM while cleaning up ends the process
        raise Terminated

    signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


def _print_what_the_console_cannot_show_escaped() -> None:
    """A path the console's encoding cannot show (cp1252 on Windows when output goes to a file) is printed
    with ``\\u`` escapes, where Python raised ``UnicodeEncodeError`` in the middle of a message."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

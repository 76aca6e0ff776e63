"""Command line: ``napari-action train | predict | evaluate | convert | demo``.

Everything here is a thin shell over the core, so what the command line does
the napari widget does too, and vice versa. Each sub-command lives in its own
module with its options (``add_parser``) and what it does (``run``); this
module only puts them together.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

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
    what to do; no ``errno`` numbers, no library internals).
    """
    _print_what_the_console_cannot_show_escaped()
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s"
    )
    try:
        return args.run(args)
    except (ValueError, OSError) as error:
        print(f"napari-action {args.command}: error: {describe_error(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        # What an interrupted command leaves behind, when it has something to say (``interrupted`` default).
        kept = getattr(args, "interrupted", None)
        print(f"napari-action {args.command}: interrupted{f'; {kept}' if kept else ''}", file=sys.stderr)
        return 130


def _print_what_the_console_cannot_show_escaped() -> None:
    """A path the console's encoding cannot show (cp1252 on Windows when output goes to a file) is printed
    with ``\\u`` escapes, where Python raised ``UnicodeEncodeError`` in the middle of a message."""
    for stream in (sys.stdout, sys.stderr):
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())

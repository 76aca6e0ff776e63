"""Pieces of a propagation computed by several threads, each run handed on as soon as it is made.

The optical flows and warps spend their time in numpy and scipy, which release the GIL, so the
pieces of one volume (:func:`~napari_action.data.propagation.propagation_pieces`) run side by side
on as many cores as the caller gave torch. A piece's runs are handed on while it is being computed:
the preview then grows outwards from the painted slices at once, instead of waiting for whole
pieces (on a 512 x 512 x 400 CT it showed nothing but the painted slices for over a minute).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

Piece = TypeVar("Piece")
Made = TypeVar("Made")


class _Ended(NamedTuple):
    """A worker's last word on its piece: done, or the error that stopped it."""

    error: BaseException | None


def side_by_side(pieces: Sequence[Piece], runs_of: Callable[[Piece], Iterator[Made]], workers: int) -> Iterator[Made]:
    """Everything ``runs_of(piece)`` gives for each of ``pieces`` (called in worker threads), as soon as it is made.

    Pieces start in their order; what pieces computed at the same time give interleaves, each piece's own
    in order. An error in a worker is raised here. A caller that stops early (Stop in the widget) does not
    wait for the pieces in hand: their workers end after the run they are making.
    """
    made: queue.Queue = queue.Queue()
    stopped = threading.Event()

    def compute(piece: Piece) -> None:
        error = None
        try:
            for item in runs_of(piece):
                if stopped.is_set():
                    break
                made.put(item)
        except BaseException as raised:  # handed to the caller's thread, which raises it
            error = raised
        made.put(_Ended(error))

    pool = ThreadPoolExecutor(workers, thread_name_prefix="propagation")
    try:
        for piece in pieces:
            pool.submit(compute, piece)
        for _ in pieces:
            yield from _until_ended(made)
    finally:
        stopped.set()
        pool.shutdown(wait=False, cancel_futures=True)


def _until_ended(made: queue.Queue) -> Iterator[Made]:
    """The runs in ``made`` up to the next end of a piece (raising its error, if it had one)."""
    while True:
        item = made.get()
        if isinstance(item, _Ended):
            if item.error is not None:
                raise item.error
            return
        yield item

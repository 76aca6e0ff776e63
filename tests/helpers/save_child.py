"""Run a piece of saving code in this process under real OS limits; print how it ended as one JSON line.

Usage: ``python save_child.py SETTINGS SETUP CODE [ARG...]``, started by :mod:`tests.helpers.os_limits`.

SETTINGS is JSON with ``file_size_limit`` (bytes or null: writes past it fail with
``EFBIG``, as on a full disk) and ``without_root_override`` (true: a root process
gives up ``CAP_DAC_OVERRIDE`` and ``CAP_DAC_READ_SEARCH``, so file and folder
permissions bind it as they bind a user, for writing and for reading).
SETUP runs first, without the file size limit (imports may write caches: napari
writes its icons); then CODE, in the same namespace, which holds ``args`` (the ARGs).
The last line printed is ``{"type": ..., "errno": ..., "message": ...}`` for the
exception CODE raised, or ``{"type": null}`` when it returned.

This file is a program of its own: it imports nothing from the tests, and only
what CODE imports from napari-action.
"""

import ctypes
import json
import os
import resource
import signal
import sys

#: Exit status when root cannot drop its override (no CAP_SETPCAP): the caller skips.
CANNOT_DROP_OVERRIDE = 77
_PR_CAPBSET_DROP = 24
_CAP_DAC_OVERRIDE = 1
_CAP_DAC_READ_SEARCH = 2  # without dropping it too, root still reads any file


def _run_without_root_override(settings: dict) -> None:
    # A process cannot drop a capability from its own effective set without libcap, but
    # one dropped from the bounding set is gone after exec: drop it, then start again.
    libc = ctypes.CDLL(None, use_errno=True)
    for capability in (_CAP_DAC_OVERRIDE, _CAP_DAC_READ_SEARCH):
        if libc.prctl(_PR_CAPBSET_DROP, capability, 0, 0, 0) != 0:
            sys.exit(CANNOT_DROP_OVERRIDE)
    settings = {**settings, "override_dropped": True}
    os.execv(sys.executable, [sys.executable, __file__, json.dumps(settings), *sys.argv[2:]])


def _limit_file_size(limit: int) -> None:
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    # Without this the kernel kills the process (SIGXFSZ) instead of failing the write with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)


def main() -> None:
    settings = json.loads(sys.argv[1])
    wants_drop = settings.get("without_root_override") and os.geteuid() == 0
    if wants_drop and not settings.get("override_dropped"):
        _run_without_root_override(settings)
    namespace = {"__name__": "__save__", "args": sys.argv[4:]}
    exec(compile(sys.argv[2], "<setup>", "exec"), namespace)
    if settings.get("file_size_limit") is not None:
        _limit_file_size(settings["file_size_limit"])
    try:
        exec(compile(sys.argv[3], "<save>", "exec"), namespace)
    except Exception as error:
        outcome = {"type": type(error).__name__, "errno": getattr(error, "errno", None), "message": str(error)}
    else:
        outcome = {"type": None}
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()

"""Real OS failures for the tests of saving, made in a child process.

* a folder that cannot be written: :func:`read_only` (mode 0555) plus ``unwritable=True``
  in :func:`run_save`; tests run as root here and in CI, and root ignores folder
  permissions unless it gives up ``CAP_DAC_OVERRIDE``, which the child does;
* a full disk: ``file_size_limit`` in :func:`run_save` (``RLIMIT_FSIZE``): writes past it
  fail with ``EFBIG``, through the same code path as ``ENOSPC``;
* a crash: :func:`kill_when` sends SIGKILL to a save started by :func:`start_save`;
* a disk that is really full: :func:`run_on_small_disk` mounts a small tmpfs for the child
  alone (in a mount namespace of its own), where writes past its size fail with ``ENOSPC``
  and a memory-mapped page past it raises SIGBUS, which ``RLIMIT_FSIZE`` cannot show.

Nothing is simulated: the saving code runs unchanged and the kernel refuses the write.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

_CHILD = Path(__file__).with_name("save_child.py")
_CANNOT_DROP_OVERRIDE = 77  # save_child.CANNOT_DROP_OVERRIDE
_TIMEOUT_S = 60


@dataclass(frozen=True)
class Outcome:
    """How the saving code in the child ended: the exception's type name, errno and message, or type None."""

    type: str | None
    errno: int | None = None
    message: str = ""


def _command(code: str, args, *, setup: str, file_size_limit: int | None, unwritable: bool) -> list[str]:
    if sys.platform == "win32":
        pytest.skip("needs POSIX resource limits and folder permissions")
    settings = {"file_size_limit": file_size_limit, "without_root_override": unwritable}
    return [sys.executable, str(_CHILD), json.dumps(settings), setup, code, *map(str, args)]


def run_save(
    code: str, *args, setup: str = "", file_size_limit: int | None = None, unwritable: bool = False
) -> Outcome:
    """Run ``code`` (with ``args`` in its namespace) in a fresh Python and return how it ended.

    Parameters
    ----------
    code : str
        Python source that saves something, e.g. ``save_labels(args[0], ...)``.
    *args
        Strings handed to ``code`` as the list ``args``.
    setup : str
        Python source run before ``code`` and before the file size limit applies
        (imports that write caches).
    file_size_limit : int, optional
        Bytes past which any write of the child fails with ``EFBIG``.
    unwritable : bool
        Let folder permissions bind the child even when the tests run as root.
    """
    command = _command(code, args, setup=setup, file_size_limit=file_size_limit, unwritable=unwritable)
    done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S)
    if done.returncode == _CANNOT_DROP_OVERRIDE:
        pytest.skip("running as root without CAP_SETPCAP: no folder can be made unwritable to this process")
    assert done.returncode == 0, done.stderr
    return Outcome(**json.loads(done.stdout.strip().splitlines()[-1]))


def run_on_small_disk(code: str, folder: Path, size_kib: int, *args, setup: str = "") -> Outcome:
    """Like :func:`run_save`, with ``folder`` a file system of ``size_kib`` KiB for the child alone.

    ``folder`` is empty (the tmpfs hides what it holds) and gone with the child: ``code`` must
    record what it left there in a file elsewhere. Skips where no mount namespace can be made.
    """
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare(1) to mount a small file system")
    probe = subprocess.run(["unshare", "-rm", "true"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"no user and mount namespace here: {probe.stderr.decode(errors='replace').strip()}")
    command = _command(code, args, setup=setup, file_size_limit=None, unwritable=False)
    mount = 'mount -t tmpfs -o size="$1" tmpfs "$2" && shift 2 && exec "$@"'
    in_namespace = ["unshare", "-rm", "sh", "-c", mount, "sh", f"{size_kib}k", str(folder), *command]
    done = subprocess.run(in_namespace, capture_output=True, text=True, timeout=_TIMEOUT_S)
    assert done.returncode == 0, f"the child ended with status {done.returncode}:\n{done.stderr}"
    return Outcome(**json.loads(done.stdout.strip().splitlines()[-1]))


def start_save(code: str, *args, setup: str = "") -> subprocess.Popen:
    """Start ``setup`` then ``code`` in a fresh Python without waiting (to kill it half-way with :func:`kill_when`)."""
    command = _command(code, args, setup=setup, file_size_limit=None, unwritable=False)
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def kill_when(process: subprocess.Popen, ready: Callable[[], bool], timeout_s: float = _TIMEOUT_S) -> None:
    """SIGKILL ``process`` as soon as ``ready()`` holds; fail if it ended first or never got there."""
    deadline = time.monotonic() + timeout_s
    while not ready():
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            _, stderr = process.communicate()
            pytest.fail(f"the save ended (or hung) before the moment to kill it came:\n{stderr}")
        time.sleep(0.001)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    assert process.returncode == -signal.SIGKILL, "the save finished before the kill landed"


def parts_of(target: Path) -> list[Path]:
    """Temporary files of interrupted atomic writes of ``target`` (``.<name>.<random>.part``)."""
    return sorted(target.parent.glob(f".{target.name}.*.part"))


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[Path]:
    """Make ``folder`` read-only (0555) for the block, then writable again (pytest removes it afterwards)."""
    folder.chmod(0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def make_old(path: Path, seconds: float = 3600) -> None:
    """Set the modification time of ``path`` ``seconds`` back: a leftover of a crash long ago."""
    past = time.time() - seconds
    os.utime(path, (past, past))

"""Predicting a cohort: which files, which share of them this process takes, and what became of each.

Kept apart from the command line so that scripts can reuse it, and free of torch
except where ranks meet (:func:`gather_outcomes`), so that expanding a list of
files costs nothing.

* :func:`expand_images` turns ``--image`` values (paths or glob patterns) and
  list files (one path per line) into one ordered list of files.
* :class:`RankShare` reads ``RANK`` / ``WORLD_SIZE`` (set by ``torchrun``) and
  deals the files out: rank ``r`` of ``W`` takes files ``r, r + W, r + 2W, ...``,
  so every rank gets a similar mix of early and late files and no process group
  is needed to agree on it.
* :class:`FileOutcome` records what happened to one file; :func:`gather_outcomes`
  brings every rank's outcomes to rank 0 through ``torchrun``'s key-value store.
"""

from __future__ import annotations

import codecs
import dataclasses
import glob
import json
import os
from collections.abc import Iterable, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Literal

from napari_action.io.file_identity import file_identity

Status = Literal["written", "skipped", "failed"]

# Characters that make an --image value a pattern rather than a file name (glob's own test).
_GLOB_CHARACTERS = frozenset("*?[")
# How long rank 0 waits for the others' outcomes. A rank that crashes makes torchrun stop every
# rank, so this only bounds a hang of the store itself; shares of a large cohort take hours.
_GATHER_TIMEOUT = timedelta(days=7)
_STORE_KEY = "napari-action/predict/outcomes/{rank}"


def expand_images(values: Sequence[str | os.PathLike], lists: Sequence[str | os.PathLike] = ()) -> list[Path]:
    """The image files named by ``--image`` values and ``--image-list`` files, in order, each once.

    Parameters
    ----------
    values : sequence of str or os.PathLike
        File names, or glob patterns (``*``, ``?``, ``[...]``; ``**`` spans folders). A pattern is
        expanded here, sorted, so that quoting it on the shell gives the same order on every machine.
        A name that exists as written is a file even if it contains those characters.
    lists : sequence of str or os.PathLike
        Text files with one image path per line; blank lines and lines starting with ``#`` are
        skipped, and relative paths are relative to the list file's folder (not the working folder).

    Returns
    -------
    list of pathlib.Path
        Files in the order given, duplicates dropped: the same file named twice, however it is
        spelled (``scan.nii.gz``, ``./scan.nii.gz``, ``lists/../scan.nii.gz``, its absolute path),
        keeps its first spelling; so does a file reached through a symlink or a hard link, so that one
        scan is predicted once, not once under each name.

    Raises
    ------
    ValueError
        A pattern matches nothing, or a list file holds no path.
    FileNotFoundError
        A list file does not exist.
    """
    found: list[Path] = []
    for value in values:
        found.extend(_expand_one(str(value)))
    for list_file in lists:
        found.extend(read_image_list(list_file))
    unique: dict[object, Path] = {}
    for path in found:
        unique.setdefault(file_identity(path), path)
    return list(unique.values())


def _expand_one(value: str) -> list[Path]:
    if not _GLOB_CHARACTERS.intersection(value) or os.path.exists(value):
        return [Path(value)]
    matches = sorted(glob.glob(os.path.expanduser(value), recursive=True))
    if not matches:
        raise ValueError(f"--image {value!r}: the pattern matches no file (patterns are relative to {Path.cwd()}).")
    return [Path(match) for match in matches]


def read_image_list(list_file: str | os.PathLike) -> list[Path]:
    """The paths listed in ``list_file``, one per line (see :func:`expand_images`)."""
    list_file = Path(list_file)
    if not list_file.is_file():
        raise FileNotFoundError(f"{list_file}: no such list file; it should hold one image path per line.")
    paths = []
    for line in _list_text(list_file).splitlines():
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        path = Path(os.path.expanduser(entry))
        paths.append(path if path.is_absolute() else list_file.parent / path)
    if not paths:
        raise ValueError(f"{list_file}: the list names no image (one path per line; # starts a comment).")
    return paths


def _list_text(list_file: Path) -> str:
    """The text of a list file: UTF-8, with or without the byte order mark Notepad writes, or UTF-16 with its mark
    (PowerShell's ``>``); anything else, an image given as the list most often, is refused by name."""
    data = list_file.read_bytes()
    encoding = "utf-16" if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)) else "utf-8-sig"
    try:
        text = data.decode(encoding)
    except UnicodeDecodeError:
        text = None
    if text is None or "\0" in text:  # no path holds a NUL; binary files can decode as UTF-8 (a .nii header)
        raise ValueError(
            f"{list_file}: not a text file (the list file of --image-list holds one image path per line, saved as "
            "UTF-8 or UTF-16 text); give images themselves with --image."
        )
    return text


@dataclasses.dataclass(frozen=True)
class RankShare:
    """This process's place among the processes that share a cohort.

    Parameters
    ----------
    rank : int
        This process's rank, ``0 <= rank < world_size``.
    world_size : int
        Number of processes sharing the files.
    agent_store : bool
        Whether ``torchrun``'s key-value store is reachable (``MASTER_ADDR``/``MASTER_PORT``),
        so that rank 0 can gather every rank's outcomes.
    """

    rank: int = 0
    world_size: int = 1
    agent_store: bool = False

    def __post_init__(self) -> None:
        if self.world_size < 1 or not 0 <= self.rank < self.world_size:
            raise ValueError(f"RANK must lie in [0, WORLD_SIZE), got RANK={self.rank}, WORLD_SIZE={self.world_size}.")

    @classmethod
    def from_environment(cls, environ: dict[str, str] | None = None) -> RankShare:
        """Read ``RANK`` and ``WORLD_SIZE`` (as ``torchrun`` sets them); one process when they are unset."""
        environ = os.environ if environ is None else environ
        try:
            rank, world_size = int(environ.get("RANK", 0)), int(environ.get("WORLD_SIZE", 1))
        except ValueError:
            raise ValueError(
                f"RANK and WORLD_SIZE must be whole numbers, got {environ.get('RANK')!r}, "
                f"{environ.get('WORLD_SIZE')!r}."
            ) from None
        # torchrun's agent hosts a store at MASTER_ADDR:MASTER_PORT and says so with this flag.
        agent_store = environ.get("TORCHELASTIC_USE_AGENT_STORE") == "True" and "MASTER_PORT" in environ
        return cls(rank, world_size, agent_store)

    @property
    def distributed(self) -> bool:
        """Whether several processes share the files."""
        return self.world_size > 1

    @property
    def prefix(self) -> str:
        """``"[rank 1/4] "`` before every line of a shared run; nothing otherwise."""
        return f"[rank {self.rank}/{self.world_size}] " if self.distributed else ""

    def take(self, files: Sequence[Path]) -> list[Path]:
        """This rank's files: ``files[rank::world_size]``."""
        return list(files[self.rank :: self.world_size])


@dataclasses.dataclass(frozen=True)
class FileOutcome:
    """What became of one input file.

    Parameters
    ----------
    source : str
        The input file.
    target : str
        The output file (written, or the one that would have been).
    status : {"written", "skipped", "failed"}
        ``skipped``: the output existed and ``--skip-existing`` was given.
    seconds : float
        Time spent on the file.
    message : str
        Why it failed (empty otherwise).
    rank : int
        The rank that handled it.
    quality : dict, optional
        A written file's quality record
        (:meth:`PredictionStats.to_dict <napari_action.inference.quality.PredictionStats.to_dict>`):
        plain numbers, so that it crosses between ranks with the rest.
    """

    source: str
    target: str
    status: Status
    seconds: float = 0.0
    message: str = ""
    rank: int = 0
    quality: dict | None = None


def gather_outcomes(outcomes: Sequence[FileOutcome], share: RankShare) -> list[FileOutcome] | None:
    """Every rank's outcomes on rank 0 (None on the other ranks and where no store is reachable).

    Each rank puts its outcomes into ``torchrun``'s store under its own key and
    goes on (so a rank that finishes early exits at once); rank 0 waits for all
    keys. Without ``torchrun``'s store (``RANK`` and ``WORLD_SIZE`` set by hand)
    every rank keeps its own outcomes: the caller reports them per rank.
    """
    if not share.distributed:
        return list(outcomes)
    if not share.agent_store:
        return None
    store = _agent_store(share)
    store.set(_STORE_KEY.format(rank=share.rank), json.dumps([dataclasses.asdict(o) for o in outcomes]))
    if share.rank != 0:
        return None
    keys = [_STORE_KEY.format(rank=rank) for rank in range(share.world_size)]
    store.wait(keys, _GATHER_TIMEOUT)
    return [FileOutcome(**entry) for key in keys for entry in json.loads(store.get(key))]


def _agent_store(share: RankShare) -> object:
    """A client of the key-value store that ``torchrun``'s agent hosts (a new one per restart)."""
    from torch.distributed import TCPStore  # torch only where ranks meet

    return TCPStore(
        host_name=os.environ["MASTER_ADDR"],
        port=int(os.environ["MASTER_PORT"]),
        world_size=share.world_size,
        is_master=False,
        timeout=_GATHER_TIMEOUT,
    )


def count_by_status(outcomes: Iterable[FileOutcome]) -> dict[str, int]:
    """``{"written": n, "skipped": n, "failed": n}``."""
    counts = {"written": 0, "skipped": 0, "failed": 0}
    for outcome in outcomes:
        counts[outcome.status] += 1
    return counts

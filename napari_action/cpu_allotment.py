"""How many CPU cores this process may use: what a container or a batch scheduler allots, not the machine.

torch sizes its thread pool by the cores it can run on (the CPU affinity). A job given 4 of a node's
64 cores by a CPU quota (a container's ``--cpus``, a cgroup ``cpu.max``) or by the scheduler alone
(``SLURM_CPUS_PER_TASK`` where the node does not pin cores) still sees 64, starts 64 threads, and
spends its quota switching between them. The allotment is the smallest of the affinity, the quota
and the scheduler's count.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path

__all__ = ["allotted_cores", "quota_cores", "scheduler_cores"]

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")


def allotted_cores(environ: Mapping[str, str] | None = None) -> int:
    """Cores this process may use: its CPU affinity, capped by a cgroup CPU quota and ``SLURM_CPUS_PER_TASK``."""
    environ = os.environ if environ is None else environ
    try:
        membership = PROC_CGROUP.read_text(encoding="utf-8")
    except OSError:
        membership = ""
    limits = [affinity_cores(), quota_cores(CGROUP_ROOT, membership), scheduler_cores(environ)]
    return max(1, min(limit for limit in limits if limit is not None))


def affinity_cores() -> int:
    """Cores the process may run on (``taskset``, a scheduler that pins cores)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def scheduler_cores(environ: Mapping[str, str]) -> int | None:
    """The cores SLURM gave each task of the job (None outside SLURM, or a value that is no count)."""
    try:
        count = int(environ.get("SLURM_CPUS_PER_TASK", ""))
    except ValueError:
        return None
    return count if count > 0 else None


def quota_cores(root: Path, membership: str) -> int | None:
    """Whole cores of the tightest CPU quota on the process's cgroup or its ancestors (None: no quota).

    ``membership`` is ``/proc/self/cgroup``: ``0::/path`` (cgroup v2, ``cpu.max`` holds ``quota period``
    or ``max period``) or ``N:cpu,cpuacct:/path`` (v1, ``cpu.cfs_quota_us`` and ``cpu.cfs_period_us``;
    -1: none). Rounded down: 1.5 cores of quota run one thread unthrottled, two threads throttled.
    """
    quotas = []
    for folder, read in _quota_folders(root, membership):
        for current in [folder, *folder.parents]:
            if not current.is_relative_to(root):
                break
            cores = read(current)
            if cores is not None:
                quotas.append(cores)
    return max(1, int(min(quotas))) if quotas else None


def _quota_folders(root: Path, membership: str) -> list[tuple[Path, Callable[[Path], float | None]]]:
    folders = []
    for line in membership.splitlines():
        number, controllers, path = (line.split(":", 2) + ["", ""])[:3]
        relative = path.lstrip("/")
        if number == "0" and controllers == "":
            folders.append((root / relative, _v2_quota))
        elif "cpu" in controllers.split(","):
            folders.append((root / controllers / relative, _v1_quota))
    return folders


def _v2_quota(folder: Path) -> float | None:
    try:
        quota, period = (folder / "cpu.max").read_text(encoding="utf-8").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        return None


def _v1_quota(folder: Path) -> float | None:
    try:
        quota = int((folder / "cpu.cfs_quota_us").read_text(encoding="utf-8"))
        period = int((folder / "cpu.cfs_period_us").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return quota / period if quota > 0 and period > 0 else None

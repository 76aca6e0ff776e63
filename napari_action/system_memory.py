"""How much memory the machine can still give; only the standard library, so file readers can use it."""

from __future__ import annotations

import os
import sys
from pathlib import Path

_MEMINFO = Path("/proc/meminfo")


def available_memory_bytes() -> int | None:
    """Bytes a new allocation can get now, or ``None`` where the system does not say.

    Linux reports ``MemAvailable`` (free memory plus caches the kernel can drop), Windows the
    available physical memory (``GlobalMemoryStatusEx``). Elsewhere (macOS) the physical memory size
    from ``os.sysconf`` is the best cheap answer: an upper bound, which is enough to refuse volumes
    that could never fit.

    Returns
    -------
    int or None
        Bytes; ``None`` where no source answers.
    """
    if sys.platform == "win32":
        return _windows_available()
    from_meminfo = _meminfo_available()
    return from_meminfo if from_meminfo is not None else _physical_memory()


def _windows_available() -> int | None:
    import ctypes  # the Windows API, through the standard library

    class MemoryStatus(ctypes.Structure):  # MEMORYSTATUSEX of the Windows API
        _fields_ = [
            ("dwLength", ctypes.c_uint32),
            ("dwMemoryLoad", ctypes.c_uint32),
            *((name, ctypes.c_uint64) for name in ("ullTotalPhys", "ullAvailPhys", "ullTotalPageFile")),
            *((name, ctypes.c_uint64) for name in ("ullAvailPageFile", "ullTotalVirtual", "ullAvailVirtual")),
            ("ullAvailExtendedVirtual", ctypes.c_uint64),
        ]

    status = MemoryStatus()
    status.dwLength = ctypes.sizeof(MemoryStatus)
    try:
        answered = ctypes.windll.kernel32.GlobalMemoryStatusEx(ctypes.byref(status))
    except (AttributeError, OSError):  # no Windows API after all
        return None
    return int(status.ullAvailPhys) if answered else None


def _meminfo_available() -> int | None:
    try:
        lines = _MEMINFO.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        name, _, rest = line.partition(":")
        if name == "MemAvailable":
            parts = rest.split()
            # The kernel writes "MemAvailable:  12345 kB".
            return int(parts[0]) * 1024 if parts and parts[0].isdigit() else None
    return None


def _physical_memory() -> int | None:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None

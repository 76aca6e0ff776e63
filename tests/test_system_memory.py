"""How much memory the machine can still give, as each system reports it."""

from __future__ import annotations

import ctypes
import sys
from types import SimpleNamespace

from napari_action.system_memory import available_memory_bytes

FREE_ON_WINDOWS = 3 * 2**30


def _windows_api(answers: bool):
    """kernel32 as Windows has it: GlobalMemoryStatusEx fills a MEMORYSTATUSEX of 64 bytes."""

    def global_memory_status_ex(pointer) -> int:
        status = pointer._obj
        assert status.dwLength == 64  # the size Windows checks before it answers
        status.ullAvailPhys = FREE_ON_WINDOWS
        return 1 if answers else 0

    return SimpleNamespace(kernel32=SimpleNamespace(GlobalMemoryStatusEx=global_memory_status_ex))


def test_linux_reports_what_is_available_now():
    available = available_memory_bytes()
    assert available is not None and 0 < available <= 2**50


def test_windows_reports_its_available_physical_memory(monkeypatch):
    # Was None on Windows: volumes too large for the memory failed only when read.
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.setattr(ctypes, "windll", _windows_api(answers=True), raising=False)
    assert available_memory_bytes() == FREE_ON_WINDOWS
    monkeypatch.setattr(ctypes, "windll", _windows_api(answers=False), raising=False)
    assert available_memory_bytes() is None


def test_without_the_windows_api_nothing_is_claimed(monkeypatch):
    monkeypatch.setattr(sys, "platform", "win32")
    monkeypatch.delattr(ctypes, "windll", raising=False)
    assert available_memory_bytes() is None

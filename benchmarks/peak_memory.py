"""Peak resident memory of a benchmark run: sampled inside a block, or the process's high-water mark."""

from __future__ import annotations

import resource
import threading
from pathlib import Path


class PeakRss:
    """Peak resident memory of this process inside a ``with`` block (psutil sampling, 20 ms).

    ``ru_maxrss`` only ever grows over the process life, so it cannot isolate one
    run among several; a sampler gives the peak above the RSS at block entry.
    """

    def __init__(self, interval: float = 0.02):
        import psutil

        self._process = psutil.Process()
        self._interval = interval
        self._stop = threading.Event()
        self.start_mb = self.peak_mb = 0.0

    def _rss_mb(self) -> float:
        return self._process.memory_info().rss / 2**20

    def _sample(self) -> None:
        while not self._stop.wait(self._interval):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __enter__(self) -> PeakRss:
        self.start_mb = self.peak_mb = self._rss_mb()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())

    @property
    def delta_mb(self) -> float:
        return self.peak_mb - self.start_mb


def peak_rss_mb() -> float:
    """Peak RSS of this process image, in MB.

    Linux's ``ru_maxrss`` survives ``fork``/``exec``, so a child started from a big
    parent reports the parent's peak; ``VmHWM`` belongs to the current address space.
    """
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

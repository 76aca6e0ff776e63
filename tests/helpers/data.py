"""Where the tests find real data. Data files are never committed; they are installed at run time.

* Colin27 T1 + AAL atlas from the Debian package ``mricron-data``: the system install
  (``/usr/share/mricron/templates``), ``$NAPARI_ACTION_MRICRON``, or an ``apt-get download`` +
  ``dpkg-deb -x`` extraction into ``~/.cache/napari-action/data/mricron`` made here on demand.
* NIfTI test images shipped inside the nibabel wheel (``nibabel.testing.data_path``).

Tests using Colin27 carry ``@pytest.mark.realdata``; they skip, with the reason, only when the
package can neither be found nor downloaded (no apt, no network).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from napari_action.data.samples import find_colin27

DATA_CACHE = Path(os.environ.get("NAPARI_ACTION_DATA", Path.home() / ".cache" / "napari-action" / "data"))
MRICRON_CACHE = DATA_CACHE / "mricron"


def nibabel_data_dir() -> Path:
    """Folder of the NIfTI files shipped with nibabel's tests."""
    from nibabel.testing import data_path

    return Path(data_path)


def _download_mricron(dest: Path) -> str | None:
    """Extract ``mricron-data`` into ``dest``; return why it failed, or None on success."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return "mricron-data is not installed and apt-get/dpkg-deb are unavailable to fetch it"
    with tempfile.TemporaryDirectory() as work:
        try:
            _run(["apt-get", "download", "mricron-data"], cwd=work)
            (deb,) = Path(work).glob("mricron-data_*.deb")
            dest.mkdir(parents=True, exist_ok=True)
            _run(["dpkg-deb", "-x", str(deb), str(dest)], cwd=work)
        except (subprocess.SubprocessError, ValueError, OSError) as exc:
            stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
            return f"could not fetch mricron-data with apt-get download: {exc} {stderr}"
    return None


def _run(command: list[str], cwd: str) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=600)


def colin27_folder() -> Path:
    """Folder holding ch2.nii.gz and aal.nii.gz, fetched into the cache if needed (else skip)."""
    for root in (None, MRICRON_CACHE):
        try:
            return find_colin27(root)
        except FileNotFoundError:
            pass
    reason = _download_mricron(MRICRON_CACHE)
    if reason is None:
        return find_colin27(MRICRON_CACHE)
    pytest.skip(f"Colin27 data unavailable: {reason}. Install with `sudo apt-get install mricron-data`.")

"""Where the tests find real data. Data files are never committed; they are installed at run time.

* Colin27 T1 + AAL atlas from the Debian package ``mricron-data``: the system install
  (``/usr/share/mricron/templates``), ``$NAPARI_ACTION_MRICRON``, or an ``apt-get download`` +
  ``dpkg-deb -x`` extraction into ``~/.cache/napari-action/data/mricron`` made here on demand.
* NIfTI test images shipped inside the nibabel wheel (``nibabel.testing.data_path``).
* The MNI152 2009a T1 template bundled in the nilearn wheel: an installed nilearn, or the one file
  taken out of ``pip download --no-deps nilearn==0.14.1`` into ``~/.cache/napari-action/data/nilearn``
  (nilearn itself is never imported or installed).

Tests using Colin27 carry ``@pytest.mark.realdata``; they skip, with the reason, only when the
package can neither be found nor downloaded (no apt, no network).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from napari_action.data.samples import find_colin27

DATA_CACHE = Path(os.environ.get("NAPARI_ACTION_DATA", Path.home() / ".cache" / "napari-action" / "data"))
MRICRON_CACHE = DATA_CACHE / "mricron"
NILEARN_CACHE = DATA_CACHE / "nilearn"
NILEARN_WHEEL = "nilearn==0.14.1"
MNI152_MEMBER = "nilearn/datasets/data/mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


def nibabel_data_dir() -> Path:
    """Folder of the NIfTI files shipped with nibabel's tests."""
    from nibabel.testing import data_path

    return Path(data_path)


def _download_mricron(dest: Path) -> str | None:
    """Extract ``mricron-data`` into ``dest``; return why it failed, or None on success."""
    if not (shutil.which("apt-get") and shutil.which("dpkg-deb")):
        return "mricron-data is not installed and apt-get/dpkg-deb are unavailable to fetch it"
    dest.parent.mkdir(parents=True, exist_ok=True)
    # Extracted beside ``dest`` and renamed into place: two test processes fetching at once (pytest -n 2) each
    # make a whole copy, and the one renamed second finds the first's and keeps it.
    with tempfile.TemporaryDirectory(dir=dest.parent) as work:
        try:
            _run(["apt-get", "download", "mricron-data"], cwd=work)
            (deb,) = Path(work).glob("mricron-data_*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(Path(work) / "extracted")], cwd=work)
            _move_into_place(Path(work) / "extracted", dest)
        except (subprocess.SubprocessError, ValueError, OSError) as exc:
            stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
            return f"could not fetch mricron-data with apt-get download: {exc} {stderr}"
    return None


def _move_into_place(folder: Path, dest: Path) -> None:
    """Rename ``folder`` to ``dest``, unless another process put a whole copy there first."""
    try:
        folder.rename(dest)
    except OSError:
        if not dest.is_dir():
            raise


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


def mni152_t1() -> Path:
    """The MNI152 2009a T1 template (197 x 233 x 189, 1 mm, skull-stripped), found or fetched (else skip)."""
    spec = importlib.util.find_spec("nilearn")
    if spec is not None:
        installed = Path(spec.submodule_search_locations[0]).parent / MNI152_MEMBER
        if installed.is_file():
            return installed
    cached = NILEARN_CACHE / Path(MNI152_MEMBER).name
    if cached.is_file():
        return cached
    reason = _download_mni152(cached)
    if reason is None:
        return cached
    pytest.skip(f"MNI152 template unavailable: {reason}. Install with `pip install --no-deps {NILEARN_WHEEL}`.")


def _download_mni152(dest: Path) -> str | None:
    """Take the template out of the nilearn wheel into ``dest``; return why it failed, or None on success."""
    with tempfile.TemporaryDirectory() as work:
        try:
            _run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", NILEARN_WHEEL, "-d", work], cwd=work)
            (wheel,) = Path(work).glob("nilearn-*.whl")
            dest.parent.mkdir(parents=True, exist_ok=True)
            with zipfile.ZipFile(wheel) as archive:
                partial = dest.with_name(f"{dest.name}.{os.getpid()}.part")  # this process's own (pytest -n 2)
                partial.write_bytes(archive.read(MNI152_MEMBER))
                partial.replace(dest)
        except (subprocess.SubprocessError, ValueError, OSError, KeyError, zipfile.BadZipFile) as exc:
            stderr = (getattr(exc, "stderr", b"") or b"").decode(errors="replace")
            return f"could not fetch {NILEARN_WHEEL} with pip download: {exc} {stderr}"
    return None

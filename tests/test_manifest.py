"""The npe2 manifest: contributions, the packaged copy and what a built wheel ships."""

from __future__ import annotations

import importlib
import importlib.resources
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from npe2 import PluginManager, PluginManifest

import napari_action

ROOT = Path(__file__).resolve().parents[1]
WIDGET_NAME = "ACTION: Train from sparse labels"


@pytest.fixture(scope="module")
def manifest() -> PluginManifest:
    return PluginManifest.from_distribution("napari-action")


def test_manifest_is_found_through_the_entry_point(manifest):
    assert manifest.name == "napari-action"
    assert set(manifest.categories) == {"Annotation", "Segmentation"}
    pm = PluginManager()
    pm.discover()
    assert pm.get_manifest("napari-action").name == "napari-action"


def test_contributions(manifest):
    contributions = manifest.contributions
    (reader,) = contributions.readers
    # .hdr/.img pairs are claimed to be refused with how to convert them (see io/file_pairs.py).
    assert reader.filename_patterns == ["*.nii", "*.nii.gz", "*.zarr", "*.hdr", "*.img", "*.hdr.gz", "*.img.gz"]
    assert reader.accepts_directories  # a zarr store is a folder
    (writer,) = contributions.writers
    assert [str(t) for t in writer.layer_types] == ["labels"]
    assert writer.filename_extensions == [".nii.gz", ".nii"]  # the first one is the default
    assert {s.key for s in contributions.sample_data} == {"phantom", "colin27"}
    (widget,) = contributions.widgets
    assert widget.display_name == WIDGET_NAME
    commands = {c.id: c.python_name for c in contributions.commands}
    assert commands[widget.command] == "napari_action._napari.widget:ActionWidget"
    segment_menu = manifest.contributions.menus["napari/layers/segment"]
    assert [item.command for item in segment_menu] == [widget.command]


def test_commands_resolve_to_callables(manifest):
    for command in manifest.contributions.commands:
        if command.id.endswith("train_widget"):
            continue  # the widget module needs Qt; its own tests import it
        module, attribute = command.python_name.split(":")
        assert callable(getattr(importlib.import_module(module), attribute)), command.id


def test_packaged_manifest_is_a_copy_of_the_root_file():
    packaged = importlib.resources.files("napari_action").joinpath("napari.yaml").read_text()
    assert packaged == (ROOT / "napari.yaml").read_text()
    # Not a link: Git for Windows checks a link out as a text file holding its target
    # ("../napari.yaml"), which an install from that clone ships as the plugin's manifest.
    assert not (ROOT / "napari_action" / "napari.yaml").is_symlink()


def _copy_sources(src: Path, *folders: str) -> Path:
    """The files a build reads, and ``folders`` (links kept: the package's napari.yaml is one)."""
    for name in ("pyproject.toml", "README.md", "napari.yaml", "LICENSE", "MANIFEST.in"):
        shutil.copy2(ROOT / name, src / name)
    for folder in folders:
        shutil.copytree(ROOT / folder, src / folder, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
    return src


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """Build a wheel from a copy of the sources (keeps build/ and *.egg-info out of the tree)."""
    src = _copy_sources(tmp_path_factory.mktemp("src"), "napari_action")
    out = tmp_path_factory.mktemp("wheel")
    command = [
        sys.executable,
        "-m",
        "pip",
        "wheel",
        "--no-deps",
        "--no-build-isolation",
        "-q",
        "-w",
        str(out),
        str(src),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=300)
    (built,) = out.glob("napari_action-*.whl")
    return built


def test_wheel_ships_manifest_as_a_file_and_the_entry_point(wheel, tmp_path):
    with zipfile.ZipFile(wheel) as archive:
        info = archive.getinfo("napari_action/napari.yaml")
        assert not stat.S_ISLNK(info.external_attr >> 16)
        shipped = archive.read(info).decode()
        (entry_points,) = [n for n in archive.namelist() if n.endswith(".dist-info/entry_points.txt")]
        text = archive.read(entry_points).decode()
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        requires = [line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist")]
    assert shipped == (ROOT / "napari.yaml").read_text()
    (tmp_path / "napari.yaml").write_text(shipped)
    assert PluginManifest.from_file(tmp_path / "napari.yaml").name == "napari-action"  # validates
    assert "[napari.manifest]\nnapari-action = napari_action:napari.yaml" in text
    base = [line for line in requires if "extra ==" not in line]
    assert not [line for line in base if any(qt in line for qt in ("PyQt", "PySide", "napari[", "pyqt"))]


def _metadata(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as archive:
        (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        return archive.read(metadata).decode().splitlines()


def test_wheel_carries_the_license_it_declares(wheel):
    """conda-forge and the BSD licence itself need the text beside the package, not only its name."""
    with zipfile.ZipFile(wheel) as archive:
        (license_file,) = [n for n in archive.namelist() if n.endswith(".dist-info/licenses/LICENSE")]
        shipped = archive.read(license_file).decode()
    assert shipped == (ROOT / "LICENSE").read_text()
    assert "BSD 3-Clause License" in shipped
    metadata = _metadata(wheel)
    assert "License-Expression: BSD-3-Clause" in metadata
    assert "License-File: LICENSE" in metadata


def test_wheel_version_is_the_package_version(wheel):
    assert f"Version: {napari_action.__version__}" in _metadata(wheel)
    assert wheel.name.startswith(f"napari_action-{napari_action.__version__}-")


def test_headless_install_needs_no_gui_package_and_the_plugin_extra_brings_them(wheel):
    requires = [line.removeprefix("Requires-Dist: ") for line in _metadata(wheel) if line.startswith("Requires-Dist")]
    core = [line for line in requires if "extra ==" not in line]
    gui = ("napari", "qtpy", "superqt", "magicgui", "pyqt", "pyside")
    assert not [line for line in core if line.lower().startswith(gui)], core
    expected = {"numpy", "torch>=2.5", "nibabel", "pillow>=10.1", "scipy", "scikit-image", "tqdm", "zarr>=3.0.3"}
    assert expected == set(core)
    plugin = {line.split(";")[0].strip() for line in requires if 'extra == "napari"' in line}
    assert plugin == {"napari[pyqt6]>=0.5", "magicgui", "platformdirs", "qtpy", "superqt"}


def test_sdist_holds_the_whole_test_suite_and_the_root_manifest(tmp_path):
    """A packager (conda-forge) builds and tests from the sdist: every test file, helper and fixture."""
    src = tmp_path / "src"
    src.mkdir()
    _copy_sources(src, "napari_action", "tests")
    build = "from setuptools import build_meta; print(build_meta.build_sdist('out'))"
    done = subprocess.run([sys.executable, "-c", build], cwd=src, check=True, capture_output=True, text=True)
    with tarfile.open(src / "out" / done.stdout.split()[-1]) as archive:
        shipped = {Path(*Path(name).parts[1:]) for name in archive.getnames()}
    tests = {p.relative_to(ROOT) for p in (ROOT / "tests").rglob("*") if p.is_file() and "__pycache__" not in p.parts}
    assert tests - shipped == set()
    assert {Path("napari.yaml"), Path("LICENSE"), Path("README.md")} <= shipped
    assert not [p for p in shipped if "__pycache__" in p.parts]

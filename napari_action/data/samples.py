"""Sample volumes: a seedable cardiac-like phantom and the Colin27 + AAL subcortical atlas.

The phantom mimics short-axis cine MRI (bright blood, dark myocardium) so that the whole
pipeline can be demonstrated and tested without downloads. Each subject is a stack of
short-axis slices along the **last** array axis, from above the heart base (atria, no labels)
through the ventricles to below the apex (no labels), so some slices carry no foreground and
foreground is a few percent of the voxels, as in real cardiac data.

Colin27 (Holmes et al. 1998) with the AAL atlas (Tzourio-Mazoyer et al. 2002) is read at run
time from the Debian package ``mricron-data``; nothing is vendored.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_action.io.nifti import VolumeError, load_labels, load_volume
from napari_action.io.volume_meta import VolumeMeta

logger = logging.getLogger(__name__)

PHANTOM_CLASS_NAMES: dict[int, str] = {0: "background", 1: "RV", 2: "MYO", 3: "LV"}
COLIN27_CLASS_NAMES: dict[int, str] = {
    0: "background",
    1: "hippocampus",
    2: "amygdala",
    3: "caudate",
    4: "putamen",
    5: "pallidum",
    6: "thalamus",
}
#: AAL codes (left, right) merged into each Colin27 class.
COLIN27_AAL_CODES: dict[int, tuple[int, int]] = {
    1: (37, 38),
    2: (41, 42),
    3: (71, 72),
    4: (73, 74),
    5: (75, 76),
    6: (77, 78),
}
MRICRON_TEMPLATES = Path("/usr/share/mricron/templates")
MRICRON_ENV = "NAPARI_ACTION_MRICRON"
# Field of view of the phantom, in mm: in-plane (like a cine SSFP scan) and along the long axis.
_PHANTOM_FOV_MM = (192.0, 192.0, 128.0)


@dataclass
class PhantomSubject:
    """One synthetic short-axis cardiac volume with its ground truth.

    Attributes
    ----------
    name : str
        ``"phantom-1"``, ``"phantom-2"``, ...
    image : numpy.ndarray
        float32 intensities, shape ``meta.shape``, slices along the last axis.
    labels : numpy.ndarray
        uint8 truth with :data:`PHANTOM_CLASS_NAMES` values.
    meta : VolumeMeta
        Geometry (diagonal anisotropic affine, scanner codes) as a NIfTI file would have it.
    """

    name: str
    image: np.ndarray
    labels: np.ndarray
    meta: VolumeMeta


@dataclass(frozen=True)
class _Heart:
    """Per-slice geometry of one phantom heart, in pixels (arrays have one entry per slice)."""

    cx: np.ndarray
    cy: np.ndarray
    r_epi: np.ndarray
    r_endo: np.ndarray
    r_rv: np.ndarray
    rv_angle: float
    atrium: np.ndarray  # True above the base: atria (bright blood, unlabeled)


def make_phantom(
    n_subjects: int = 3, shape: tuple[int, int, int] = (128, 128, 16), seed: int = 0
) -> list[PhantomSubject]:
    """Make ``n_subjects`` short-axis cardiac phantoms (RV=1, MYO=2, LV=3).

    Parameters
    ----------
    n_subjects : int
        Number of volumes. Subject ``k`` is the same whatever ``n_subjects`` is.
    shape : tuple of int
        Array shape; slices along the last axis. The field of view is fixed
        (192 x 192 x 128 mm), so the default gives 1.5 x 1.5 x 8 mm voxels.
    seed : int
        Seed; equal seeds give identical volumes.

    Returns
    -------
    list of PhantomSubject
    """
    if n_subjects < 1:
        raise ValueError(f"n_subjects must be >= 1, got {n_subjects}.")
    if len(shape) != 3 or min(shape[:2]) < 32 or shape[2] < 3:
        raise ValueError(f"shape must be 3D with at least 32 x 32 x 3 voxels, got {shape}.")
    children = np.random.SeedSequence(seed).spawn(n_subjects)
    shape = tuple(int(s) for s in shape)
    return [_make_subject(k + 1, shape, np.random.default_rng(c)) for k, c in enumerate(children)]


def _make_subject(number: int, shape: tuple[int, int, int], rng: np.random.Generator) -> PhantomSubject:
    heart = _heart_geometry(shape, rng)
    labels = _render_labels(heart, shape)
    image = _render_image(heart, labels, shape, rng)
    zooms = [fov / n for fov, n in zip(_PHANTOM_FOV_MM, shape, strict=True)]
    affine = np.diag([*zooms, 1.0])
    # Centre the volume on the scanner origin, like a scan planned on the heart.
    affine[:3, 3] = -0.5 * np.array(zooms) * (np.array(shape) - 1) + rng.uniform(-20, 20, 3)
    meta = VolumeMeta.from_affine(affine, shape, code=1, dtype="float32")
    return PhantomSubject(name=f"phantom-{number}", image=image, labels=labels, meta=meta)


def _heart_geometry(shape: tuple[int, int, int], rng: np.random.Generator) -> _Heart:
    nx, ny, nz = shape
    size = min(nx, ny)
    base = max(1, round(nz * rng.uniform(0.12, 0.22)))
    apex = min(nz - 2, base + max(1, round(nz * rng.uniform(0.58, 0.7))))
    z = np.arange(nz)
    t = (z - base) / max(apex - base, 1)  # 0 at the base, 1 at the apex
    inside = (t >= 0) & (t <= 1)
    tc = np.clip(t, 0, 1)
    r_epi0 = size * rng.uniform(0.12, 0.15)
    wall = size * rng.uniform(0.04, 0.055)
    # The ventricle tapers towards the apex; the cavity closes before the muscle does.
    r_epi = np.where(inside, r_epi0 * np.sqrt(np.clip(1 - tc**2.2, 0, 1)) + 0.5, 0.0)
    r_endo = np.clip(r_epi - wall * (1 + 0.6 * tc), 0, None) * inside
    rv_end = rng.uniform(0.6, 0.8)
    r_rv = np.where(inside & (tc <= rv_end), r_epi0 * rng.uniform(1.0, 1.2), 0.0)
    r_rv = r_rv * np.sqrt(np.clip(1 - (tc / rv_end) ** 2, 0, 1))
    # The long axis is slightly tilted against the slice normal: the centre drifts.
    drift = rng.uniform(-0.25, 0.25, 2) * r_epi0
    cx = nx * rng.uniform(0.47, 0.51) + drift[0] * tc
    cy = ny * rng.uniform(0.47, 0.53) + drift[1] * tc
    # The RV lies anterior (towards -x) of the LV, tilted to one side.
    return _Heart(cx, cy, r_epi, r_endo, r_rv, float(rng.uniform(0.85, 1.15) * np.pi), t < 0)


def _grid(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    xx = np.arange(shape[0], dtype=np.float32)[:, None, None]
    yy = np.arange(shape[1], dtype=np.float32)[None, :, None]
    return xx, yy


def _rv_centre(heart: _Heart) -> tuple[np.ndarray, np.ndarray]:
    offset = 0.95 * heart.r_epi
    return heart.cx + offset * np.cos(heart.rv_angle), heart.cy + offset * np.sin(heart.rv_angle)


def _render_labels(heart: _Heart, shape: tuple[int, int, int]) -> np.ndarray:
    xx, yy = _grid(shape)
    d_lv = np.hypot(xx - heart.cx, yy - heart.cy)
    rx, ry = _rv_centre(heart)
    d_rv = np.hypot(xx - rx, yy - ry)
    labels = np.zeros(shape, dtype=np.uint8)
    # The septum belongs to the myocardium, hence the gap between the RV cavity and the LV wall.
    labels[(d_rv < heart.r_rv) & (d_lv > heart.r_epi + 1.0)] = 1
    labels[(d_lv < heart.r_epi) & (d_lv >= heart.r_endo)] = 2
    labels[d_lv < heart.r_endo] = 3
    return labels


def _render_image(
    heart: _Heart, labels: np.ndarray, shape: tuple[int, int, int], rng: np.random.Generator
) -> np.ndarray:
    xx, yy = _grid(shape)
    level = {k: v * rng.uniform(0.92, 1.08) for k, v in _LEVELS.items()}
    image = _render_body(shape, level, rng)
    rx, ry = _rv_centre(heart)
    d_rv = np.hypot(xx - rx, yy - ry)
    # Thin RV free wall: muscle around the RV cavity, unlabeled as in clinical contours.
    rv_wall = (d_rv <= heart.r_rv + 1.5) & (heart.r_rv > 0) & (labels == 0)
    image[rv_wall] = level["myo"]
    image[labels == 2] = level["myo"]
    image[(labels == 1) | (labels == 3)] = level["blood"]
    _add_hard_negatives(image, heart, level, xx, yy)
    _add_papillary_muscles(image, heart, level, xx, yy, rng)
    image *= 1 + 0.08 * _smooth_noise(shape, rng, sigma=(4.0, 4.0, 0.5))
    image = _gaussian_blur(image, (0.6, 0.6, 0.0))
    image *= _bias_field(shape, rng)
    sigma = level["noise"]
    # Magnitude images have Rician noise: the modulus of a complex signal with Gaussian noise.
    real = image + rng.normal(0, sigma, shape)
    imag = rng.normal(0, sigma, shape)
    return np.hypot(real, imag).astype(np.float32)


_LEVELS = {"blood": 0.9, "myo": 0.25, "tissue": 0.4, "fat": 0.75, "lung": 0.05, "noise": 0.035}


def _render_body(shape: tuple[int, int, int], level: dict, rng: np.random.Generator) -> np.ndarray:
    nx, ny, nz = shape
    xx, yy = _grid(shape)
    xx, yy = xx[..., 0], yy[..., 0]
    # Axis 0 runs anterior-posterior (the chest is flatter that way), axis 1 left-right.
    ax, ay = nx * rng.uniform(0.32, 0.36), ny * rng.uniform(0.42, 0.46)
    r_body = np.hypot((xx - nx / 2) / ax, (yy - ny / 2) / ay)
    body = np.zeros((nx, ny), dtype=np.float32)
    body[r_body <= 1.0] = level["fat"]  # subcutaneous fat is bright on SSFP
    body[r_body <= 0.92] = level["tissue"]
    for side in (-1, 1):
        lung = np.hypot((xx - 0.56 * nx) / (0.2 * nx), (yy - ny / 2 - side * 0.27 * ny) / (0.1 * ny))
        body[lung <= 1.0] = level["lung"]
    return np.repeat(body[:, :, None], nz, axis=2)


def _add_hard_negatives(image: np.ndarray, heart: _Heart, level: dict, xx: np.ndarray, yy: np.ndarray) -> None:
    """Bright unlabeled blood pools: atria above the base and the descending aorta."""
    r0 = float(heart.r_epi.max())
    atrium = (np.hypot(xx - heart.cx[0], yy - heart.cy[0]) <= 0.8 * r0) & heart.atrium
    image[atrium] = level["blood"]
    # The descending aorta runs posterior to the heart on every slice.
    ax, ay = heart.cx[0] + 1.9 * r0, heart.cy[0] - 0.6 * r0
    image[np.broadcast_to(np.hypot(xx - ax, yy - ay) <= 0.3 * r0, image.shape)] = level["blood"]


def _add_papillary_muscles(
    image: np.ndarray, heart: _Heart, level: dict, xx: np.ndarray, yy: np.ndarray, rng: np.random.Generator
) -> None:
    """Two dark spots inside the LV cavity; they stay labeled LV, as in clinical contours."""
    for angle in rng.uniform(0, 2 * np.pi, 2):
        px = heart.cx + 0.6 * heart.r_endo * np.cos(angle)
        py = heart.cy + 0.6 * heart.r_endo * np.sin(angle)
        spot = (np.hypot(xx - px, yy - py) <= 0.2 * heart.r_endo) & (heart.r_endo > 3)
        image[spot] = level["myo"]


def _gaussian_blur(volume: np.ndarray, sigmas: tuple[float, float, float]) -> np.ndarray:
    """Gaussian blur by FFT (periodic borders are harmless: the body never touches them)."""
    spectrum = np.fft.rfftn(volume)
    for axis, (n, sigma) in enumerate(zip(volume.shape, sigmas, strict=True)):
        freq = np.fft.rfftfreq(n) if axis == volume.ndim - 1 else np.fft.fftfreq(n)
        gain = np.exp(-2 * (np.pi * sigma * freq) ** 2)
        spectrum *= gain.reshape([-1 if a == axis else 1 for a in range(volume.ndim)])
    return np.fft.irfftn(spectrum, s=volume.shape, axes=tuple(range(volume.ndim))).astype(np.float32)


def _smooth_noise(shape: tuple[int, int, int], rng: np.random.Generator, sigma: tuple) -> np.ndarray:
    field = _gaussian_blur(rng.standard_normal(shape).astype(np.float32), sigma)
    return field / (field.std() + 1e-8)


def _bias_field(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    """Smooth multiplicative coil sensitivity, within about +-30 % of 1."""
    x = np.linspace(-1, 1, shape[0], dtype=np.float32)[:, None, None]
    y = np.linspace(-1, 1, shape[1], dtype=np.float32)[None, :, None]
    z = np.linspace(-1, 1, shape[2], dtype=np.float32)[None, None, :]
    a = rng.uniform(-0.15, 0.15, 5)
    log_field = a[0] * x + a[1] * y + a[2] * x * y + a[3] * x**2 + a[4] * z
    return np.exp(log_field).astype(np.float32)


# --------------------------------------------------------------------------- Colin27


def _colin27_candidates(root: str | os.PathLike | None) -> list[Path]:
    if root is not None:
        bases = [Path(root)]
    elif os.environ.get(MRICRON_ENV):
        bases = [Path(os.environ[MRICRON_ENV])]
    else:
        bases = [MRICRON_TEMPLATES]
    # Accept the templates folder itself or the root of a `dpkg-deb -x` extraction.
    return [p for base in bases for p in (base, base / "usr" / "share" / "mricron" / "templates")]


def colin27_install_message(searched: list[Path] | None = None) -> str:
    """How to install the Colin27/AAL files (Debian package ``mricron-data``)."""
    where = f" (looked in: {', '.join(map(str, searched))})" if searched else ""
    return (
        f"Colin27 + AAL files ch2.nii.gz and aal.nii.gz were not found{where}. Install the Debian "
        "package with `sudo apt-get install mricron-data`, or without root: "
        "`apt-get download mricron-data && "
        "dpkg-deb -x mricron-data_*.deb ~/.cache/napari-action/data/mricron` "
        f"and set {MRICRON_ENV}=~/.cache/napari-action/data/mricron."
    )


def find_colin27(root: str | os.PathLike | None = None) -> Path:
    """Return the folder holding ``ch2.nii.gz`` and ``aal.nii.gz``.

    Looks in ``root`` if given, else in ``$NAPARI_ACTION_MRICRON``, else in
    ``/usr/share/mricron/templates``; a ``dpkg-deb -x`` extraction root works too.

    Raises
    ------
    FileNotFoundError
        With the install instructions.
    """
    candidates = _colin27_candidates(root)
    for folder in candidates:
        if (folder / "ch2.nii.gz").is_file() and (folder / "aal.nii.gz").is_file():
            return folder
    raise FileNotFoundError(colin27_install_message(candidates))


def load_colin27(root: str | os.PathLike | None = None) -> tuple[np.ndarray, np.ndarray, VolumeMeta]:
    """Load the Colin27 T1 and the 7-class AAL subcortical map on its grid.

    Classes (:data:`COLIN27_CLASS_NAMES`): 0 background, 1 hippocampus, 2 amygdala,
    3 caudate, 4 putamen, 5 pallidum, 6 thalamus (left and right merged).

    Returns
    -------
    image : numpy.ndarray
        float32 T1 (values 0..255 of ``ch2.nii.gz``), 181 x 217 x 181, 1 mm, RAS.
    labels : numpy.ndarray
        uint8 class map.
    meta : VolumeMeta
        Geometry of ``ch2.nii.gz``.
    """
    folder = find_colin27(root)
    image, meta = load_volume(folder / "ch2.nii.gz")
    aal, aal_meta = load_labels(folder / "aal.nii.gz")
    if aal.shape != image.shape or not np.allclose(aal_meta.affine, meta.affine):
        raise VolumeError(f"{folder}: aal.nii.gz and ch2.nii.gz are not on the same grid; reinstall mricron-data.")
    labels = np.zeros(aal.shape, dtype=np.uint8)
    for value, codes in COLIN27_AAL_CODES.items():
        labels[np.isin(aal, codes)] = value
    logger.debug("Loaded Colin27 from %s", folder)
    return image.astype(np.float32), labels, meta


# --------------------------------------------------------------------------- sparse annotation helpers


def evenly_spaced_slices(labels: np.ndarray, axis: int, k: int) -> list[int]:
    """Pick ``k`` slice indices spread evenly over the slices that contain foreground.

    The picks sit at the centres of ``k`` equal bins, so the first and last foreground
    slices (often tiny structures) are avoided unless ``k`` covers every slice.

    Raises
    ------
    ValueError
        ``k < 1``, or no slice along ``axis`` contains foreground.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}.")
    labels = np.asarray(labels)
    other = tuple(a for a in range(labels.ndim) if a != axis % labels.ndim)
    foreground = np.flatnonzero(np.any(labels != 0, axis=other))
    if foreground.size == 0:
        raise ValueError(f"No slice along axis {axis} contains foreground labels.")
    if k >= foreground.size:
        return foreground.tolist()
    picks = ((np.arange(k) + 0.5) * foreground.size / k).astype(int)
    return foreground[picks].tolist()


def sparse_from_truth(labels: np.ndarray, axis: int, slices: list[int]) -> np.ndarray:
    """Copy of ``labels`` on the given slices along ``axis`` and 0 everywhere else.

    This simulates a user who painted those slices completely.
    """
    labels = np.asarray(labels)
    sparse = np.zeros_like(labels)
    index = [slice(None)] * labels.ndim
    index[axis] = list(slices)
    sparse[tuple(index)] = labels[tuple(index)]
    return sparse

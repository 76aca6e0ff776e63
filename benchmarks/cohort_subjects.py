"""Cohorts for ``cohort.py``: Colin27 + AAL warped into many subjects, the phantom's subjects, and two real brains.

Every Colin27 subject is the atlas seen through one random recipe, drawn from its own seed:

* anatomy: a random affine (rotations of a few degrees about the basal ganglia, scaling by
  ±10 % per axis, a shift) composed with a smooth random displacement field;
* scanner: another voxel size (1.0–1.5 mm, half of the subjects anisotropic), another storage
  orientation (axis permutation and flips, written into the affine so that world coordinates
  stay true) and another field of view (a crop that never reaches the labeled structures);
* contrast: a random monotone intensity curve, a smooth multiplicative bias field and Rician noise.

The labels go through the same mapping with nearest-neighbour sampling, so every subject has
its truth. Subject ``k`` depends only on the cohort seed and ``k``, not on how many are made.
Generation is in memory (scipy.ndimage, a few seconds a subject); ``cache_dir`` keeps NIfTI
copies for viewing or for reuse.

The ``brains`` cohort is two real T1 scans: Colin27 (painted) and the MNI152 2009a template (nilearn's
bundled copy: a population average of 152 people, skull-stripped, another grid), opened unlabeled as a
second brain. Its reference labels are Colin27's AAL carried by world coordinates (both brains live in
MNI space), so they are only as true as that alignment: close for the basal ganglia and the thalamus,
a few millimetres off at the hippocampus and the ventricles. The template is then stored as a scanner
would store another person (``SECOND_BRAIN_POSE``: turned and shifted, in LPS order), so that world
coordinates no longer align the two brains and any method has to find the anatomy itself.
"""

from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np
from nibabel import orientations
from scipy import ndimage

from napari_action.data.samples import COLIN27_CLASS_NAMES, PHANTOM_CLASS_NAMES, load_colin27, make_phantom

#: Bump when a recipe or its rendering changes, so that cached NIfTI files of older subjects are not reused.
GENERATOR_VERSION = 1
#: Room kept around the labeled structures when cropping (mm): the warp moves them by up to ~15 mm.
LABEL_MARGIN_MM = 20.0
#: Spacing of the displacement field's random control values (mm): deformations smoother than a structure.
WARP_CONTROL_MM = 24.0
#: How the second brain lies in its scanner: rotations about R, A, S (degrees, about the brain's centre),
#: a shift (mm) and the storage order of its axes. Fixed: the cohort is one case, not a draw.
SECOND_BRAIN_POSE = {"degrees": [8.0, -5.0, 6.0], "shift_mm": [12.0, -15.0, 20.0], "axcodes": "LPS"}
MNI152_T1 = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"


@dataclass
class Subject:
    """One volume of a cohort with its full truth; ``affine`` maps voxels to world millimetres (RAS)."""

    name: str
    image: np.ndarray
    labels: np.ndarray
    affine: np.ndarray
    recipe: dict = field(default_factory=dict)

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(float(s) for s in np.linalg.norm(self.affine[:3, :3], axis=0))

    @property
    def axis(self) -> int:
        """Array axis closest to superior-inferior: the protocol paints axial slices."""
        return next(i for i, code in enumerate(self.orientation) if code in "SI")

    @property
    def orientation(self) -> str:
        return "".join(nib.aff2axcodes(self.affine))


@dataclass
class Cohort:
    name: str
    subjects: list[Subject]
    class_names: dict[int, str]

    @property
    def class_values(self) -> list[int]:
        return sorted(v for v in self.class_names if v != 0)


# --------------------------------------------------------------------------- recipes


def draw_recipe(rng: np.random.Generator) -> dict:
    """Every random choice of one subject, drawn up front (JSON-safe, stored in the results)."""
    anisotropic = bool(rng.random() < 0.5)
    spacing = rng.uniform(1.0, 1.25, 3)
    if anisotropic:  # one thick axis, like a fast clinical scan
        spacing[rng.integers(3)] = rng.uniform(1.3, 1.5)
    permuted = bool(rng.random() < 0.5)
    return {
        "rotation_deg": rng.uniform(-8, 8, 3).tolist(),
        "scale": rng.uniform(0.9, 1.1, 3).tolist(),
        "shift_mm": rng.uniform(-4, 4, 3).tolist(),
        "warp_mm": float(rng.uniform(2.0, 4.0)),
        "warp_seed": int(rng.integers(2**31)),
        "spacing_mm": spacing.round(3).tolist(),
        "axes": (rng.permutation(3) if permuted else np.arange(3)).tolist(),
        "flips": (rng.random(3) < 0.25).tolist(),
        "crop_share": rng.uniform(0.0, 0.8, (3, 2)).tolist(),
        "gamma": float(np.exp(rng.uniform(np.log(0.6), np.log(1.6)))),
        "curve_steps": rng.uniform(0.5, 1.5, 6).tolist(),
        "bias": rng.uniform(-0.25, 0.25, 6).tolist(),
        "noise": float(rng.uniform(0.01, 0.04)),
        "noise_seed": int(rng.integers(2**31)),
    }


def rotation_matrix(degrees: list[float]) -> np.ndarray:
    """Rotations about the three world axes, applied x, then y, then z."""
    matrix = np.eye(3)
    for axis, angle in enumerate(np.radians(degrees)):
        c, s = np.cos(angle), np.sin(angle)
        plane = [a for a in range(3) if a != axis]
        step = np.eye(3)
        step[np.ix_(plane, plane)] = [[c, -s], [s, c]]
        matrix = step @ matrix
    return matrix


# --------------------------------------------------------------------------- geometry of a subject


def world_box(affine: np.ndarray, shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Lowest and highest world coordinates of a grid's voxel centres."""
    corners = np.array(np.meshgrid(*[[0, n - 1] for n in shape], indexing="ij")).reshape(3, -1)
    world = affine[:3, :3] @ corners + affine[:3, 3:]
    return world.min(axis=1), world.max(axis=1)


def cropped_box(template: Subject, recipe: dict) -> tuple[np.ndarray, np.ndarray]:
    """The subject's field of view: the atlas's, with each side cut part of the way towards the labels."""
    low, high = world_box(template.affine, template.image.shape)
    voxels = np.argwhere(template.labels > 0)
    label_world = template.affine[:3, :3] @ voxels.T + template.affine[:3, 3:]
    label_low = label_world.min(axis=1) - LABEL_MARGIN_MM
    label_high = label_world.max(axis=1) + LABEL_MARGIN_MM
    share = np.asarray(recipe["crop_share"])
    low = low + share[:, 0] * np.clip(label_low - low, 0, None)
    high = high - share[:, 1] * np.clip(high - label_high, 0, None)
    return low, high


def subject_grid(template: Subject, recipe: dict) -> tuple[tuple[int, int, int], np.ndarray]:
    """Shape and affine of the subject's array: its voxel size, storage order and flips, its field of view."""
    low, high = cropped_box(template, recipe)
    spacing = np.asarray(recipe["spacing_mm"])
    axes = recipe["axes"]  # array axis i runs along world axis axes[i]
    affine = np.zeros((4, 4))
    affine[3, 3] = 1.0
    shape = []
    for i, world in enumerate(axes):
        sign = -1.0 if recipe["flips"][i] else 1.0
        shape.append(int((high[world] - low[world]) // spacing[i]) + 1)
        affine[world, i] = sign * spacing[i]
        affine[world, 3] = low[world] if sign > 0 else high[world]
    return tuple(shape), affine


def smooth_displacement(shape: tuple[int, ...], spacing: np.ndarray, recipe: dict) -> np.ndarray:
    """A (3, *shape) world displacement (mm): random values every ~24 mm, cubic between, max ``warp_mm``."""
    rng = np.random.default_rng(recipe["warp_seed"])
    coarse_shape = [max(int(np.ceil(n * s / WARP_CONTROL_MM)) + 1, 2) for n, s in zip(shape, spacing, strict=True)]
    coarse = rng.standard_normal((3, *coarse_shape))
    coarse *= recipe["warp_mm"] / np.abs(coarse).max()
    factors = [n / c for n, c in zip(shape, coarse_shape, strict=True)]
    # zoom's cubic spline gives a field smooth everywhere (no kinks at the control points).
    return np.stack([ndimage.zoom(c, factors, order=3, grid_mode=True, mode="nearest") for c in coarse])


def template_coordinates(template: Subject, shape: tuple[int, ...], affine: np.ndarray, recipe: dict) -> np.ndarray:
    """For each subject voxel, where it comes from in the atlas (atlas voxel coordinates, (3, *shape))."""
    voxels = np.indices(shape, dtype=np.float32).reshape(3, -1)
    world = affine[:3, :3] @ voxels + affine[:3, 3:]
    centre = structures_centre(template)[:, None]
    linear = rotation_matrix(recipe["rotation_deg"]) @ np.diag(recipe["scale"])
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    displacement = smooth_displacement(shape, spacing, recipe).reshape(3, -1)
    atlas_world = centre + linear @ (world - centre) + np.asarray(recipe["shift_mm"])[:, None] + displacement
    inverse = np.linalg.inv(template.affine)
    return (inverse[:3, :3] @ atlas_world + inverse[:3, 3:]).reshape(3, *shape).astype(np.float32)


def structures_centre(template: Subject) -> np.ndarray:
    """World centre of the labeled structures: rotations turn about it, so the structures stay in view."""
    centre = np.argwhere(template.labels > 0).mean(axis=0)
    return template.affine[:3, :3] @ centre + template.affine[:3, 3]


def partial_volume_blur(template: Subject, recipe: dict) -> np.ndarray:
    """The atlas blurred as a larger voxel averages it; interpolation alone would alias fine detail."""
    sigmas = np.zeros(3)
    for i, world in enumerate(recipe["axes"]):  # the atlas is stored RAS, one axis per world axis
        sigmas[world] = 0.42 * np.sqrt(max(recipe["spacing_mm"][i] ** 2 - 1.0, 0.0))
    return ndimage.gaussian_filter(template.image, sigmas)


# --------------------------------------------------------------------------- contrast


def intensity_curve(image: np.ndarray, recipe: dict) -> np.ndarray:
    """A random monotone remapping of [0, 1]: a gamma, then a piecewise-linear curve of random slopes."""
    gamma = np.clip(image, 0.0, 1.0) ** recipe["gamma"]
    steps = np.asarray(recipe["curve_steps"])
    knots_y = np.concatenate([[0.0], np.cumsum(steps) / steps.sum()])
    knots_x = np.linspace(0.0, 1.0, knots_y.size)
    return np.interp(gamma, knots_x, knots_y).astype(np.float32)


def bias_field(shape: tuple[int, ...], recipe: dict) -> np.ndarray:
    """Smooth multiplicative field: exp of a quadratic over the field of view (about ±25 % at the edges)."""
    x, y, z = (np.linspace(-1, 1, n, dtype=np.float32) for n in shape)
    x, y, z = x[:, None, None], y[None, :, None], z[None, None, :]
    a = recipe["bias"]
    return np.exp(a[0] * x + a[1] * y + a[2] * z + a[3] * x * y + a[4] * y * z + a[5] * x**2).astype(np.float32)


def rician_noise(image: np.ndarray, recipe: dict) -> np.ndarray:
    """Magnitude images carry Rician noise: the modulus of a complex signal with Gaussian noise."""
    rng = np.random.default_rng(recipe["noise_seed"])
    sigma = recipe["noise"]
    real = image + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    imag = rng.normal(0.0, sigma, image.shape).astype(np.float32)
    return np.hypot(real, imag).astype(np.float32)


# --------------------------------------------------------------------------- cohorts


def colin27_template() -> Subject:
    image, labels, meta = load_colin27()
    # ch2.nii.gz holds 0..255: scaled to [0, 1] so that the contrast curves act on one range.
    return Subject("colin27", image / 255.0, labels, np.asarray(meta.affine, float))


def make_colin27_subject(template: Subject, name: str, recipe: dict) -> Subject:
    shape, affine = subject_grid(template, recipe)
    coords = template_coordinates(template, shape, affine, recipe)
    image = ndimage.map_coordinates(partial_volume_blur(template, recipe), coords, order=1, cval=0.0)
    labels = ndimage.map_coordinates(template.labels, coords, order=0, cval=0).astype(np.uint8)
    image = rician_noise(intensity_curve(image, recipe) * bias_field(shape, recipe), recipe)
    return Subject(name, image, labels, affine, recipe)


def colin27_cohort(n_subjects: int, seed: int = 0, cache_dir: Path | None = None) -> Cohort:
    """``n_subjects`` warped copies of Colin27 + AAL (6 subcortical classes)."""
    template = colin27_template()
    subjects = []
    for number, child in enumerate(np.random.SeedSequence(seed).spawn(n_subjects), start=1):
        name = f"colin27-s{seed}-{number:02d}"
        recipe = draw_recipe(np.random.default_rng(child))
        cached = read_cached(cache_dir, name, recipe)
        subject = cached or make_colin27_subject(template, name, recipe)
        if cache_dir is not None and cached is None:
            write_cached(cache_dir, subject)
        subjects.append(subject)
    return Cohort("colin27", subjects, dict(COLIN27_CLASS_NAMES))


def phantom_cohort(n_subjects: int, seed: int = 0) -> Cohort:
    """The demo's cardiac phantoms: one geometry and contrast family, the easier cohort."""
    subjects = [
        Subject(p.name, p.image, p.labels, np.asarray(p.meta.affine, float), {"phantom_seed": seed})
        for p in make_phantom(n_subjects, seed=seed)
    ]
    return Cohort("phantom", subjects, dict(PHANTOM_CLASS_NAMES))


def mni152_path() -> Path:
    """nilearn's bundled MNI152 T1, found without importing nilearn (none of its dependencies are needed)."""
    spec = importlib.util.find_spec("nilearn")
    path = None if spec is None else Path(spec.submodule_search_locations[0]) / "datasets" / "data" / MNI152_T1
    if path is None or not path.is_file():
        raise SystemExit("the brains cohort needs the MNI152 template: pip install --no-deps nilearn==0.14.1")
    return path


def posed(affine: np.ndarray, centre: np.ndarray, pose: dict) -> np.ndarray:
    """The affine of the same voxels after the anatomy is turned about ``centre`` and shifted in the world."""
    rigid = np.eye(4)
    rotation = rotation_matrix(pose["degrees"])
    rigid[:3, :3] = rotation
    rigid[:3, 3] = centre - rotation @ centre + np.asarray(pose["shift_mm"], float)
    return rigid @ affine


def stored_as(subject: Subject, axcodes: str) -> Subject:
    """The subject's arrays in another storage order (exact; every voxel keeps its world position)."""
    transform = orientations.ornt_transform(
        orientations.io_orientation(subject.affine), orientations.axcodes2ornt(tuple(axcodes))
    )
    image = np.ascontiguousarray(orientations.apply_orientation(subject.image, transform))
    labels = np.ascontiguousarray(orientations.apply_orientation(subject.labels, transform))
    affine = subject.affine @ orientations.inv_ornt_aff(transform, subject.image.shape)
    return Subject(subject.name, image, labels, affine, subject.recipe)


def carried_truth(labels: np.ndarray, target_to_source: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """``labels`` read at the nearest source voxel of every target voxel (0 outside the source)."""
    index = np.indices(shape).reshape(3, -1)
    source = np.rint((target_to_source @ np.vstack([index, np.ones(index.shape[1])]))[:3]).astype(int)
    inside = np.all((source >= 0) & (source < np.array(labels.shape)[:, None]), axis=0)
    out = np.zeros(index.shape[1], labels.dtype)
    out[inside] = labels[tuple(source[:, inside])]
    return out.reshape(shape)


def second_brain(template: Subject) -> Subject:
    """The MNI152 template with Colin27's AAL carried onto it by world coordinates, then posed."""
    stored = nib.load(mni152_path())
    image = np.asarray(stored.dataobj, dtype=np.float32) / 255.0
    affine = np.asarray(stored.affine, float)
    labels = carried_truth(template.labels, np.linalg.inv(template.affine) @ affine, image.shape)
    recipe = {"source": MNI152_T1, "pose": SECOND_BRAIN_POSE}
    centre = structures_centre(Subject("mni152", image, labels, affine))
    subject = Subject("mni152", image, labels, posed(affine, centre, SECOND_BRAIN_POSE), recipe)
    return stored_as(subject, SECOND_BRAIN_POSE["axcodes"])


def brains_cohort() -> Cohort:
    """Colin27 (the one to paint) and the MNI152 template as a second brain nobody painted."""
    template = colin27_template()
    return Cohort("brains", [template, second_brain(template)], dict(COLIN27_CLASS_NAMES))


def load_cohort(name: str, n_subjects: int, seed: int = 0, cache_dir: Path | None = None) -> Cohort:
    if name == "colin27":
        return colin27_cohort(n_subjects, seed, cache_dir)
    if name == "phantom":
        return phantom_cohort(n_subjects, seed)
    if name == "brains":
        return brains_cohort()  # two fixed scans: --subjects, the cohort seed and the cache do not apply
    raise SystemExit(f"unknown cohort {name!r}; choose colin27, phantom or brains")


# --------------------------------------------------------------------------- orientation and cache


def reoriented_like(subject: Subject, reference: Subject) -> Subject:
    """The subject's arrays transposed and flipped into the reference's axis codes: exact, no resampling."""
    return stored_as(subject, reference.orientation)


def _cache_paths(cache_dir: Path, name: str) -> tuple[Path, Path, Path]:
    stem = cache_dir / f"{name}_v{GENERATOR_VERSION}"
    return Path(f"{stem}_image.nii.gz"), Path(f"{stem}_labels.nii.gz"), Path(f"{stem}_recipe.json")


def read_cached(cache_dir: Path | None, name: str, recipe: dict) -> Subject | None:
    """The cached subject if its recipe is the one drawn now (float32 NIfTI round-trips exactly)."""
    if cache_dir is None:
        return None
    image_path, labels_path, recipe_path = _cache_paths(cache_dir, name)
    if not (image_path.is_file() and labels_path.is_file() and recipe_path.is_file()):
        return None
    if json.loads(recipe_path.read_text()) != recipe:
        return None
    image_file = nib.load(image_path)
    labels = np.asarray(nib.load(labels_path).dataobj, dtype=np.uint8)
    image = np.asarray(image_file.dataobj, dtype=np.float32)
    return Subject(name, image, labels, np.asarray(image_file.affine, float), recipe)


def write_cached(cache_dir: Path, subject: Subject) -> None:
    cache_dir.mkdir(parents=True, exist_ok=True)
    image_path, labels_path, recipe_path = _cache_paths(cache_dir, subject.name)
    nib.save(nib.Nifti1Image(subject.image.astype(np.float32), subject.affine), image_path)
    nib.save(nib.Nifti1Image(subject.labels.astype(np.uint8), subject.affine), labels_path)
    recipe_path.write_text(json.dumps(subject.recipe))

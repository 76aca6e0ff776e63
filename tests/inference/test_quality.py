"""The quality record of a predicted volume: volumes in mL, doubt, worst slice, score and flags, the CSV."""

from __future__ import annotations

import csv
import io
import json

import numpy as np
import pytest

from napari_action.inference.loaded_model import load_model
from napari_action.inference.out_of_core import predict_to_writer
from napari_action.inference.quality import (
    PredictionStats,
    QualityAccumulator,
    cohort_reference,
    quality_table,
    rate,
    rate_cohort,
    write_quality_csv,
)
from napari_action.inference.suggestions import slice_scores
from napari_action.io.geometry import voxel_volume_ml
from napari_action.io.label_writers import MemoryLabelWriter
from napari_action.io.volume_source import open_volume_source
from tests.helpers import engine

NAMES = {1: "disc", 2: "ring"}
# write_nifti's voxels: 0.8 x 0.8 x 3 mm = 1.92 mm³.
VOXEL_ML = 0.8 * 0.8 * 3.0 / 1000.0


def prediction(ring: bool = True, disc_radius: float = 6.0, doubt: float = 0.1, shape=(32, 32, 10)):
    """Labels of the disc phantom (axis 2) with a chosen entropy: ``doubt`` on the structures' edges."""
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    radius = np.hypot(yy - shape[0] / 2, xx - shape[1] / 2)
    plane = np.where(radius < disc_radius, 1, np.where((radius < 10) & ring, 2, 0)).astype(np.uint8)
    labels = np.repeat(plane[..., None], shape[2], axis=2)
    edge = np.abs(radius - disc_radius) < 1.5
    entropy = np.repeat(np.where(edge, doubt, 0.0)[..., None], shape[2], axis=2).astype(np.float32)
    return labels, entropy


def stats_of(labels, entropy, axis=2, voxel_ml=VOXEL_ML) -> PredictionStats:
    record = QualityAccumulator([0, 1, 2], axis, voxel_ml)
    record.add_volume(labels, entropy)
    return record.finish()


def test_voxel_volume_from_the_affine_counts_shear_and_ignores_mirroring():
    assert voxel_volume_ml(np.diag([0.8, 0.8, 3.0, 1.0])) == pytest.approx(VOXEL_ML)
    assert voxel_volume_ml(np.diag([-0.8, 0.8, 3.0, 1.0])) == pytest.approx(VOXEL_ML)  # LAS, not RAS: same size
    sheared = np.diag([1.0, 1.0, 2.0, 1.0])
    sheared[0, 2] = 1.5  # a tilted gantry: the slices move sideways, their volume stays 2 mm³
    assert voxel_volume_ml(sheared) == pytest.approx(0.002)


def test_volumes_in_ml_and_a_missing_class_flagged():
    labels, entropy = prediction(ring=False)
    stats = stats_of(labels, entropy)
    quality = rate("scan.nii.gz", stats, NAMES)
    assert quality.volume_ml == {
        "disc": pytest.approx((labels == 1).sum() * VOXEL_ML),
        "ring": 0.0,
    }
    assert quality.flags == ("ring missing",)
    complete = rate("other.nii.gz", stats_of(*prediction()), NAMES)
    assert complete.flags == ()
    # The missing ring scores 0 of its half; the disc its certainty, one minus its voxels' mean entropy.
    assert stats.doubt()[1] == pytest.approx(entropy[labels == 1].mean())
    assert quality.score == pytest.approx(0.5 * (1 - entropy[labels == 1].mean()))
    assert 0.0 < quality.score < complete.score <= 1.0


def test_two_classes_of_one_name_keep_their_own_volumes_and_flags():
    # Both were labelled "vertebra": one volume column, the second class's volume replacing the first's.
    labels, entropy = prediction(ring=False)
    quality = rate("scan.nii.gz", stats_of(labels, entropy), {1: "vertebra", 2: "vertebra"})
    assert quality.volume_ml == {"vertebra (1)": pytest.approx((labels == 1).sum() * VOXEL_ML), "vertebra (2)": 0.0}
    assert quality.flags == ("vertebra (2) missing",)
    # A blank name (an empty cell of the layer's features table) is the class's number.
    assert rate("scan.nii.gz", stats_of(labels, entropy), {1: " ", 2: "ring"}).volume_ml.keys() == {"class 1", "ring"}


def test_more_doubt_scores_lower_and_the_worst_slice_is_the_most_uncertain():
    labels, entropy = prediction(doubt=0.1)
    unsure = entropy.copy()
    unsure[..., 6] = np.where(labels[..., 6] > 0, 0.9, 0.2)  # one slice the network doubts everywhere
    sure, doubtful = stats_of(labels, entropy), stats_of(labels, unsure)
    assert doubtful.worst_slice == 6
    assert rate("b", doubtful).score < rate("a", sure).score
    # Along another axis the slices are others: axis 0's worst row runs through the disc's edge.
    across = stats_of(labels, unsure, axis=0)
    assert across.axis == 0 and across.worst_slice != 6


def test_slice_by_slice_equals_the_whole_volume_in_any_order():
    labels, entropy = prediction()
    whole = stats_of(labels, entropy)
    record = QualityAccumulator([0, 1, 2], 2, VOXEL_ML)
    for index in reversed(range(labels.shape[2])):
        record.add_slice(index, labels[..., index], entropy[..., index])
    assert record.finish() == whole


@pytest.mark.parametrize("axis", [0, 1, 2])
def test_the_record_keeps_every_slice_score_the_refine_panel_shows_counted_in_any_order(axis):
    # Napari's prediction job hands these to the panel: scoring the slices again took 1.1 s of 5.8 s for a CT.
    labels, _ = prediction(shape=(12, 14, 10))
    entropy = np.random.default_rng(axis).random(labels.shape, dtype=np.float32) ** 4
    record = QualityAccumulator([0, 1, 2], axis, VOXEL_ML)
    slices = list(zip(np.moveaxis(labels, axis, 0), np.moveaxis(entropy, axis, 0), strict=True))
    for index in reversed(range(len(slices))):
        record.add_slice(index, *slices[index])
    expected = slice_scores(entropy, axis)
    np.testing.assert_array_equal(record.slice_scores(), expected)  # bit for bit, not merely close
    assert record.finish().worst_slice == int(expected.argmax())


def test_the_slices_not_counted_score_0_as_the_panel_has_them():
    labels, entropy = prediction()
    record = QualityAccumulator([0, 1, 2], 2, VOXEL_ML)
    record.add_slice(3, labels[..., 3], entropy[..., 3])
    assert record.slice_scores().tolist() == [0.0, 0.0, 0.0, slice_scores(entropy[..., 3:4], 2)[0]]
    assert QualityAccumulator([0, 1, 2], 2, VOXEL_ML).slice_scores().size == 0


def test_a_mask_changed_after_prediction_keeps_the_doubt_and_counts_its_own_volumes():
    labels, entropy = prediction(doubt=0.8)
    stats = stats_of(labels, entropy)
    kept = labels.copy()
    kept[..., 5:][kept[..., 5:] == 1] = 0  # e.g. --largest-components dropped the disc of half the slices
    recounted = stats.recounted(kept)
    assert recounted.volume_ml()[1] == pytest.approx(stats.volume_ml()[1] / 2)
    assert recounted.voxels[0] == stats.voxels[0] + stats.voxels[1] // 2
    assert recounted.doubt() == pytest.approx(stats.doubt())
    assert 0.0 <= rate("a", recounted).score <= 1.0


def test_label_values_the_model_does_not_have_are_refused():
    record = QualityAccumulator([0, 1, 2], 2, VOXEL_ML)
    with pytest.raises(ValueError, match=r"label values \[7\]"):
        record.add_slice(0, np.array([[0, 7]]), np.zeros((1, 2)))


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.uint16, np.int16])
def test_small_integer_labels_are_counted_and_refused_as_wider_ones_are(dtype):
    # 8- and 16-bit masks are looked up in a table of every value of the type, the others searched for.
    labels, entropy = prediction()
    classes = [0, 2, 1, 300]  # a class value the narrow types cannot hold is simply never there
    wide, narrow = (QualityAccumulator(classes, 2, VOXEL_ML) for _ in range(2))
    wide.add_volume(labels.astype(np.int64), entropy)
    narrow.add_volume(labels.astype(dtype), entropy)
    assert narrow.finish().to_dict() == wide.finish().to_dict()
    np.testing.assert_array_equal(narrow.slice_scores(), wide.slice_scores())
    stray = 5 if np.iinfo(dtype).min == 0 else -1
    with pytest.raises(ValueError, match=rf"label values \[{stray}\] are none"):
        QualityAccumulator(classes, 2, VOXEL_ML).add_slice(0, np.array([[0, stray, 1]], dtype), np.zeros((1, 3)))


def test_model_values_in_any_order_are_counted_by_value():
    labels, entropy = prediction()
    record = QualityAccumulator([0, 2, 1], 2, VOXEL_ML)  # the model lists ring before disc
    record.add_volume(labels, entropy)
    volumes = record.finish().volume_ml()
    assert volumes[1] == pytest.approx((labels == 1).sum() * VOXEL_ML)
    assert volumes[2] == pytest.approx((labels == 2).sum() * VOXEL_ML)


def test_a_class_far_from_the_cohort_median_is_flagged_and_listed_first():
    usual = [stats_of(*prediction(disc_radius=r)) for r in (5.5, 6.0, 6.5)]
    shrunk = stats_of(*prediction(disc_radius=2.5))
    reference = cohort_reference([*usual, shrunk])
    assert reference[1] == pytest.approx(np.median([s.volume_ml()[1] for s in [*usual, shrunk]]))
    rated = rate_cohort([("a", usual[0]), ("shrunk", shrunk), ("b", usual[1]), ("c", usual[2])], NAMES)
    assert rated[0].name == "shrunk"
    assert rated[0].flags[0].startswith("disc small (")
    assert all(q.flags == () for q in rated[1:])
    assert [q.score for q in rated] == sorted(q.score for q in rated)
    # Two volumes say nothing about what is usual: no comparison, no flag.
    assert cohort_reference(usual[:2]) is None
    assert rate_cohort([("shrunk", shrunk), ("a", usual[0])], NAMES)[0].flags == ()


def record(disc_voxels: int, doubt: float = 0.1) -> PredictionStats:
    """A record with ``disc_voxels`` of the disc and 100 of the ring, each class at ``doubt``."""
    return PredictionStats(
        class_values=(0, 1, 2),
        voxels=(1000, disc_voxels, 100),
        entropy_sums=(0.0, doubt * disc_voxels, doubt * 100),
        voxel_ml=0.001,
        axis=2,
        worst_slice=0,
        worst_slice_score=0.0,
    )


def test_a_volume_within_the_usual_range_costs_nothing_and_a_flagged_one_half_its_class():
    # Subjects differ in size: half as large again as the median is no sign of failure.
    rated = {q.name: q for q in rate_cohort([(f"s{n}", record(n)) for n in (90, 100, 110, 150, 400)], NAMES)}
    assert rated["s150"].score == pytest.approx(rated["s100"].score) == pytest.approx(0.9)
    assert rated["s150"].flags == ()
    assert rated["s400"].flags[0].startswith("disc large (")
    assert rated["s400"].score == pytest.approx((0.5 * 0.9 + 0.9) / 2)
    # Certainty alone orders the unflagged ones.
    assert rate("unsure", record(100, doubt=0.3), NAMES).score < rated["s90"].score


def test_the_certainty_is_pooled_over_the_foreground_voxels_so_a_small_class_weighs_by_its_size():
    # Averaged class by class, a 12-voxel class at doubt 0.9 beside a sure large one ranked its volume below one
    # unsure everywhere: on the cohorts the pooled certainty ranked subjects by true Dice better.
    def two_classes(disc, disc_doubt, ring, ring_doubt):
        entropy = (0.0, disc_doubt * disc, ring_doubt * ring)
        return PredictionStats((0, 1, 2), (1000, disc, ring), entropy, 0.001, 2, 0, 0.0)

    small_unsure = two_classes(1000, 0.1, 12, 0.9)
    unsure_everywhere = two_classes(1000, 0.3, 12, 0.3)
    assert rate("a", small_unsure, NAMES).score == pytest.approx(1 - (100 + 10.8) / 1012)
    assert [q.name for q in rate_cohort([("a", small_unsure), ("b", unsure_everywhere)], NAMES)] == ["b", "a"]


def test_records_cross_json_unchanged():
    stats = stats_of(*prediction())
    assert PredictionStats.from_dict(json.loads(json.dumps(stats.to_dict()))) == stats
    quality = rate("a", stats, NAMES)
    assert json.loads(json.dumps(quality.to_dict()))["volume_ml"] == quality.volume_ml


def test_csv_lists_failed_files_first_then_worst_first(tmp_path):
    rated = rate_cohort([("good", stats_of(*prediction())), ("bad", stats_of(*prediction(ring=False)))], NAMES)
    failed = [("broken.nii.gz", "cannot be read")]
    text = quality_table(rated, ["disc", "ring"], failed=failed, skipped=["old"], kept={"good"})
    path = write_quality_csv(tmp_path / "quality.csv", text)
    rows = list(csv.DictReader(io.StringIO(path.read_text())))
    assert [(r["file"], r["status"]) for r in rows] == [
        ("broken.nii.gz", "failed"),
        ("bad", "predicted"),
        ("good", "kept"),
        ("old", "skipped"),
    ]
    assert rows[0]["flags"] == "cannot be read" and rows[0]["quality_score"] == ""
    assert rows[1]["flags"] == "ring missing" and float(rows[1]["ring mL"]) == 0.0
    assert float(rows[2]["disc mL"]) == pytest.approx(rated[1].volume_ml["disc"], abs=1e-4)
    assert int(rows[2]["worst_slice"]) == rated[1].worst_slice and rows[2]["slicing_axis"] == "2"


def test_predict_to_writer_records_what_the_in_memory_prediction_shows(model_file, tmp_path):
    """The record accumulated while streaming equals the one of the whole-volume prediction's labels and entropy."""
    model = load_model(model_file, device="cpu")
    predictor = model.predictor
    image, _ = engine.disc_volume(5)
    source = open_volume_source(engine.write_nifti(tmp_path / "scan.nii", image))
    writer = MemoryLabelWriter(source.path, source.meta, predictor.label_dtype, predictor.axis)
    streamed = QualityAccumulator(predictor.class_values, predictor.axis, voxel_volume_ml(source.meta.affine))
    predict_to_writer(predictor, source, writer, batch_size=3, quality=streamed)
    update = [u for u in predictor.iter_predict(image, spacing=source.meta.zooms) if u.done][0]
    whole = stats_of(update.labels, update.entropy, axis=predictor.axis, voxel_ml=voxel_volume_ml(source.meta.affine))
    streamed = streamed.finish()
    assert streamed.voxels == whole.voxels and streamed.voxels == tuple(np.bincount(writer.labels.ravel(), minlength=3))
    np.testing.assert_allclose(streamed.entropy_sums, whole.entropy_sums, rtol=1e-4)
    assert streamed.worst_slice == whole.worst_slice


def test_csv_gives_the_volumes_of_a_microscope_stack_not_zero():
    """A stack of 2 x 0.4 x 0.4 µm voxels (a header in micrometres, read in mm): its cells hold nanolitres, and
    the four decimals of a mL column wrote 0.0000 for every class of every mask."""
    voxel_ml = voxel_volume_ml(np.diag([0.002, 0.0004, 0.0004, 1.0]))
    labels, entropy = prediction()
    rated = rate_cohort([("cells.nii.gz", stats_of(labels, entropy, voxel_ml=voxel_ml))], NAMES)

    [row] = csv.DictReader(io.StringIO(quality_table(rated, ["disc", "ring"])))

    assert float(row["disc mL"]) == pytest.approx((labels == 1).sum() * voxel_ml, rel=1e-3)
    assert float(row["ring mL"]) == pytest.approx((labels == 2).sum() * voxel_ml, rel=1e-3)

"""Property tests: label values survive every conversion between files, arrays and class ids.

``smallest_label_dtype`` must hold every value in the smallest type, ``as_integer_labels`` must turn
whole floats into the same integers, and a :class:`SparseAnnotation` must map any set of painted
values to class ids and back without loss.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from napari_action.data.annotations import IGNORE_INDEX, SparseAnnotation
from napari_action.label_values import as_integer_labels, smallest_label_dtype

# The order in which smallest_label_dtype tries the types (int16 before uint16 on purpose).
DTYPE_ORDER = (np.uint8, np.int16, np.uint16, np.int32, np.int64)
INT64 = np.iinfo(np.int64)
SHAPE = (4, 5, 6)  # slicing along axis 2
FEW = settings(max_examples=50, deadline=None)

# Integer arrays whose values cluster around one dtype limit or spread over the whole int64 range.
limits = st.sampled_from([0, 255, 256, 32_767, 32_768, 65_535, 65_536, 2**31 - 1, 2**31, INT64.max])


@st.composite
def label_arrays(draw: st.DrawFn) -> np.ndarray:
    """Integer labels near a dtype limit (either sign), or anywhere in the int64 range."""
    if draw(st.booleans()):
        center = draw(limits) * draw(st.sampled_from([1, -1]))
        low, high = max(INT64.min, center - 300), min(INT64.max, center + 300)
    else:
        low, high = sorted(draw(st.tuples(st.integers(INT64.min, INT64.max), st.integers(INT64.min, INT64.max))))
    return draw(hnp.arrays(np.int64, draw(hnp.array_shapes(max_dims=3, max_side=5)), elements=st.integers(low, high)))


def _holds(dtype: type, values: np.ndarray) -> bool:
    info = np.iinfo(dtype)
    return bool(info.min <= values.min() and values.max() <= info.max)


@FEW
@given(values=label_arrays())
def test_smallest_label_dtype_is_the_first_type_that_holds_every_value(values):
    dtype = smallest_label_dtype(values)
    np.testing.assert_array_equal(values.astype(dtype).astype(np.int64), values)
    earlier = DTYPE_ORDER[: DTYPE_ORDER.index(dtype.type)]
    assert not any(_holds(candidate, values) for candidate in earlier)


@FEW
@given(values=label_arrays())
def test_integer_labels_pass_through_untouched(values):
    assert as_integer_labels(values, "labels") is values
    if values.min() < 0:
        with pytest.raises(ValueError, match=r"labels contain negative values \(min -?\d+\)"):
            as_integer_labels(values, "labels", non_negative=True)


# float64 holds every whole number up to 2**53 exactly; label files store such floats.
whole_floats = hnp.arrays(
    np.float64, hnp.array_shapes(max_dims=3, max_side=5), elements=st.integers(-(2**53), 2**53).map(float)
)


@FEW
@given(values=whole_floats)
def test_whole_floats_become_the_same_integers_in_the_smallest_dtype(values):
    labels = as_integer_labels(values, "labels")
    assert labels.dtype == smallest_label_dtype(values)
    np.testing.assert_array_equal(labels.astype(np.float64), values)


@FEW
@given(values=whole_floats, where=st.data())
def test_one_fractional_value_refuses_the_whole_array(values, where):
    index = where.draw(st.tuples(*[st.integers(0, n - 1) for n in values.shape]))
    values = values.copy()
    values[index] = 0.5
    with pytest.raises(ValueError, match="must be whole numbers, found 1 of"):
        as_integer_labels(values, "labels")


# Label values as users paint them: small class numbers, atlas codes, 16- and 32-bit values.
painted_values = st.sets(
    st.integers(1, 20) | st.integers(1, 2**31 - 1) | st.integers(2**31, 2**62), min_size=1, max_size=6
)


def _painted(values: list[int], seed: int) -> np.ndarray:
    """Slices 1 and 3 painted with every value (so each occurs), the other slices left at 0."""
    rng = np.random.default_rng(seed)
    labels = np.zeros(SHAPE, np.int64)
    for s in (1, 3):
        plane = rng.choice([0, *values], size=SHAPE[:2])
        plane.flat[: len(values)] = values
        labels[:, :, s] = plane
    return labels


@FEW
@given(values=painted_values, seed=st.integers(0, 2**16))
def test_slice_mode_maps_any_label_values_to_class_ids_and_back(values, seed):
    labels = _painted(sorted(values), seed)
    annotation = SparseAnnotation([labels], [SHAPE], axis=2)
    assert annotation.class_values.tolist() == [0, *sorted(values)]
    ids = annotation.to_class_ids(labels)
    assert ids.min() >= 0 and ids.max() == len(values)
    np.testing.assert_array_equal(annotation.class_values[ids], labels)
    np.testing.assert_array_equal(annotation.target(0, 1), ids[:, :, 1])


@FEW
@given(values=painted_values, seed=st.integers(0, 2**16), data=st.data())
def test_scribble_mode_ignores_unpainted_and_maps_painted_values_back(values, seed, data):
    ordered = sorted(values)
    background = data.draw(st.sampled_from(ordered))
    labels = _painted(ordered, seed)
    annotation = SparseAnnotation([labels], [SHAPE], axis=2, mode="scribble", background_value=background)
    assert annotation.class_values.tolist() == [background, *(v for v in ordered if v != background)]
    ids = annotation.to_class_ids(labels)
    assert (ids[labels == 0] == IGNORE_INDEX).all() and (ids[labels == background] == 0).all()
    painted = ids != IGNORE_INDEX
    np.testing.assert_array_equal(annotation.class_values[ids[painted]], labels[painted])


@FEW
@given(values=painted_values, unknown=st.integers(1, 2**62), seed=st.integers(0, 2**16))
def test_values_that_are_no_class_are_refused(values, unknown, seed):
    annotation = SparseAnnotation([_painted(sorted(values), seed)], [SHAPE], axis=2)
    if unknown in values:
        assert annotation.class_values[annotation.to_class_ids(unknown)] == unknown
    else:
        with pytest.raises(ValueError, match=rf"Unknown label values \[{unknown}\]"):
            annotation.to_class_ids([0, unknown])


@FEW
@given(first=painted_values, added=painted_values, seed=st.integers(0, 2**16))
def test_new_values_get_new_ids_and_old_ids_stay(first, added, seed):
    annotation = SparseAnnotation([_painted(sorted(first), seed)], [SHAPE], axis=2)
    grown = SparseAnnotation(
        [_painted(sorted(first | added), seed + 1)],
        [SHAPE],
        axis=2,
        class_values=annotation.class_values,
        allow_new_classes=True,
    )
    old = annotation.class_values.tolist()
    assert grown.class_values.tolist()[: len(old)] == old
    assert grown.class_values.tolist()[len(old) :] == sorted(added - first)

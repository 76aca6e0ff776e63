"""Which model made a prediction: the record that goes with the prediction into its mask's provenance.

Taken when the prediction is made, not when the mask is saved: a model trained (or loaded) in between
did not make it. The keys are those of the sidecar's ``model`` entry (docs/usage.md, "Export refined masks…").
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_action.inference.model_protocol import SegmentationModel


def model_record(model: SegmentationModel) -> dict[str, Any]:
    """``fingerprint`` (:func:`~napari_action.io.checkpoint.weights_fingerprint`), ``method``, ``seed``, slicing
    ``axis`` and training ``steps`` of ``model``, a trainer or a loaded model.

    Slow for a trainer (its weights are copied to hash them): call it off the GUI thread, while it does not train.
    """
    from napari_action.io.checkpoint import weights_fingerprint  # torch: only where a model exists

    checkpoint = model.checkpoint()
    # A loaded model keeps the fingerprint it computed once (the CLI's quality.csv uses it too).
    fingerprint = getattr(model, "fingerprint", None) or weights_fingerprint(checkpoint)
    return {
        "fingerprint": fingerprint,
        "method": str(checkpoint.config.method),
        "seed": int(checkpoint.config.seed),
        "axis": int(checkpoint.axis),
        "steps": int(checkpoint.step),
    }

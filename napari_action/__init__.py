"""napari-action: ACTION semi-supervised segmentation from a few painted slices.

The public core API is importable without Qt, napari or torch being loaded:
heavy modules are imported lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "TrainConfig": "config",
    "ModelConfig": "config",
    "LossConfig": "config",
    "TrainProgress": "progress",
    "SlicePrediction": "progress",
    "PredictionUpdate": "progress",
    "load_volume": "io.nifti",
    "load_labels": "io.nifti",
    "save_labels": "io.nifti_writer",
    "VolumeMeta": "io.volume_meta",
    "VolumeError": "io.nifti",
    "SparseAnnotation": "data.annotations",
    "Trainer": "training.trainer",
    "predict_volume": "inference.predictor",
    "Predictor": "inference.predictor",
    "evaluate": "evaluation.metrics",
    "load_checkpoint": "io.checkpoint",
    "save_checkpoint": "io.checkpoint",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        return getattr(module, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

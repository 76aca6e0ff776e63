"""Settings that arrive from outside, checked and translated: a caller's keywords and values (a
misspelt name, a value of another kind than the setting's) and the config dicts older versions saved.

Only the standard library: :mod:`napari_action.config` builds on it.
"""

from __future__ import annotations

import dataclasses
import difflib
import numbers
from collections.abc import Mapping
from typing import Any


def upgraded_settings(data: Mapping[str, Any]) -> dict[str, Any]:
    """A config dict saved by an earlier version (in a checkpoint or a session) in today's settings.

    Renamed settings keep their value under the new name; settings that were replaced take the value
    that does what the old one did; settings of training only that were dropped (their run is over)
    are left out. Settings the dict lacks are not added: each reader decides what they were then.
    """
    data = dict(data)
    for old, new in (("predict_smoothing", "predict_smoothing_mm"), ("predict_prior_decay", "predict_prior_decay_mm")):
        # In slices before 0.1.0's millimetres (at 1 mm slices the same): the number carries over, 0 stays off.
        value = data.pop(old, None)
        if isinstance(value, int | float):  # anything else (None) leaves today's default
            data.setdefault(new, float(value))
    # The hard bound at a structure's propagated extent became the ending rule "cut"; off, the network's own ends.
    within = data.pop("predict_within_propagated_extent", None)
    data.pop("predict_unpainted_within_registered_extent", None)
    if within is not None:
        data.setdefault("structure_ends", "cut" if within else "network")
    if "amp" in data and data["amp"] is None:
        # amp = None meant bfloat16 on a CPU that computes it natively, float32 on CUDA: cpu_bfloat16's automatic.
        data["amp"] = False
        data.setdefault("cpu_bfloat16", None)
    for dropped in ("plane_share", "cohort_steps_factor"):  # training schedule only; today's rules replace them
        data.pop(dropped, None)
    if isinstance(data.get("loss"), Mapping):
        data["loss"] = {k: v for k, v in data["loss"].items() if k != "prior_labeled_veto"}
    return data


def check_setting_names(kind: type, settings: Mapping[str, Any], prefix: str = "") -> None:
    """Raise ``TypeError`` for a name in ``settings`` that is no field of the dataclass ``kind``, suggesting the
    closest ones (``prefix``: how the caller reaches ``kind``, e.g. ``"model."``)."""
    names = [f.name for f in dataclasses.fields(kind)]
    for name in settings:
        if name not in names:
            close = difflib.get_close_matches(name, names, n=3, cutoff=0.6) or [
                # A word of a longer name misspelt ("stpes" for the steps_* settings).
                known
                for known in names
                if any(difflib.get_close_matches(word, known.split("_"), cutoff=0.75) for word in name.split("_"))
            ]
            hint = f"Did you mean {' or '.join(repr(prefix + c) for c in close)}? " if close else ""
            raise TypeError(
                f"{kind.__name__} has no setting {prefix + name!r}. {hint}"
                f"The {kind.__name__} settings are: {', '.join(names)}."
            )


def check_setting_types(settings: Any, prefix: str = "") -> None:
    """Raise ``ValueError`` for a setting whose value is of another kind than its default: a number given
    as text (``lr="0.01"``, which failed later as a comparison of str and float), a fraction where a count
    is meant (``steps_stage3=2.5`` ran 3 steps), a number where a switch is meant.
    A setting whose default is None takes None or the kind its annotation names (``num_threads="4"``
    failed later comparing str with int, ``cpu_bfloat16="no"`` trained in bfloat16 as a true value).
    Settings whose default is a container are not checked."""
    for setting in dataclasses.fields(settings):
        value = getattr(settings, setting.name)
        if setting.default is None:
            expected = _kind_of_annotation(setting.type)
            if expected is None or value is None or _is_kind(value, expected):
                continue
            expected = "True, False or None" if expected == "True or False" else f"{expected} or None"
        else:
            expected = _kind_of(setting.default)
            if expected is None or _is_kind(value, expected):
                continue
        raise ValueError(f"{prefix}{setting.name} must be {expected}, got {value!r} ({type(value).__name__}).")


#: The kinds of the annotations ``X | None`` names, by X.
_ANNOTATED_KINDS = {"bool": "True or False", "int": "a whole number", "float": "a number", "str": "text"}


def _kind_of_annotation(annotation: Any) -> str | None:
    """The kind an optional setting's annotation (``"int | None"``, a string under postponed annotations)
    names besides None; None for anything else."""
    names = {name.strip() for name in str(annotation).split("|")} - {"None"}
    return _ANNOTATED_KINDS.get(names.pop()) if len(names) == 1 else None


def _kind_of(default: Any) -> str | None:
    if isinstance(default, bool):
        return "True or False"
    if isinstance(default, int):
        return "a whole number"
    if isinstance(default, float):
        return "a number"
    return "text" if isinstance(default, str) else None


def _is_kind(value: Any, expected: str) -> bool:
    if expected == "True or False":
        return isinstance(value, bool)
    if isinstance(value, bool):
        return False
    if expected == "a whole number":
        return isinstance(value, numbers.Integral)
    if expected == "a number":
        return isinstance(value, numbers.Real)
    return isinstance(value, str)

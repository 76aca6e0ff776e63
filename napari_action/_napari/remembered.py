"""The training options last used, kept in a small JSON file between napari sessions.

The file lives in the user's config folder (``platformdirs``, e.g.
``~/.config/napari-action/options.json`` on Linux), or in the folder named by
``$NAPARI_ACTION_SETTINGS_DIR`` (tests point it at a temporary folder). It is
written atomically (:mod:`napari_action.io.atomic`), so a crash mid-write leaves
the previous file. Losing it costs the user nothing but a few clicks, so a
damaged or unreadable file is reported and ignored, and a write that fails is
logged, never raised into the GUI.

The file keeps every option and, beside them, the defaults the form had when they were written:
an option still at that default was never chosen, so it follows the defaults of the version that
reads the file (a better default in a newer release reaches users who never touched it), while
the options the user did choose are kept.

Writes are held back while the user is still changing things (a spin box turned
with the mouse wheel changes many times a second, and each write syncs the disk):
:class:`RememberedOptions` keeps the latest values and writes them when the form
asks, after a pause or when it goes away.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from napari_action.io.atomic import make_folder_for, write_atomically

logger = logging.getLogger(__name__)

#: Environment variable naming the folder of the remembered options (tests use a temporary folder).
SETTINGS_ENV = "NAPARI_ACTION_SETTINGS_DIR"
FILE_NAME = "options.json"
FORMAT = "napari-action-options"
FORMAT_VERSION = 1


class DamagedSettingsError(ValueError):
    """The remembered options file cannot be read as one; the message says why."""


def settings_dir() -> Path:
    """``$NAPARI_ACTION_SETTINGS_DIR``, else the user's config folder for napari-action."""
    chosen = os.environ.get(SETTINGS_ENV)
    if chosen:
        return Path(chosen)
    # napari depends on platformdirs; imported here, as only the GUI needs it.
    from platformdirs import user_config_dir

    return Path(user_config_dir("napari-action", appauthor=False))


def settings_path() -> Path:
    """The remembered options file."""
    return settings_dir() / FILE_NAME


def read_options(path: Path) -> dict[str, Any]:
    """The options stored in ``path``; empty when there is no file yet.

    Raises
    ------
    DamagedSettingsError
        The file exists but is not a remembered options file (truncated, edited by
        hand, written by something else, by a newer version, or unreadable).
    """
    return dict(_read_file(path).get("options", {}))


def read_choices(path: Path) -> dict[str, Any]:
    """The options stored in ``path`` that the user chose: those not at the defaults stored beside them.

    A file written before the defaults were stored gives all its options. Raises as :func:`read_options`.
    """
    stored = _read_file(path)
    defaults = stored.get("defaults") if isinstance(stored.get("defaults"), dict) else {}
    missing = object()
    return {name: value for name, value in stored.get("options", {}).items() if defaults.get(name, missing) != value}


def _read_file(path: Path) -> dict[str, Any]:
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:  # unreadable, not text, not JSON
        raise DamagedSettingsError(f"{path} cannot be read ({error})") from error
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or not isinstance(stored.get("options"), dict):
        raise DamagedSettingsError(f"{path} is not a napari-action options file")
    if not isinstance(stored.get("version"), int) or stored["version"] > FORMAT_VERSION:
        raise DamagedSettingsError(f"{path} was written by a newer napari-action (version {stored.get('version')!r})")
    return stored


def write_options(path: Path, options: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
    """Store ``options`` (JSON-serialisable values) in ``path``, atomically, with the form's ``defaults``."""
    stored = {"format": FORMAT, "version": FORMAT_VERSION, "options": options}
    if defaults is not None:
        stored["defaults"] = defaults  # read by read_choices; versions before it read "options" only
    text = json.dumps(stored, indent=2, sort_keys=True)
    make_folder_for(path)
    write_atomically(path, lambda stream: stream.write(text.encode("utf-8")))


class RememberedOptions:
    """The remembered options file of one form, with the values waiting to be written.

    A plain object, not a QObject: the form's ``destroyed`` signal still reaches
    :meth:`flush` while the form's Qt side goes away, so the last change is kept.

    Parameters
    ----------
    path : pathlib.Path, optional
        The file; :func:`settings_path` when not given (read when the form is made,
        so a test's environment variable applies).
    """

    def __init__(self, path: Path | None = None):
        self.path = settings_path() if path is None else Path(path)
        self.pending: dict[str, Any] | None = None
        self.defaults: dict[str, Any] | None = None

    def recall(self) -> dict[str, Any]:
        """The options the user chose (see :func:`read_choices`, whose errors it raises)."""
        return read_choices(self.path)

    def hold(self, options: dict[str, Any], defaults: dict[str, Any] | None = None) -> None:
        """Keep ``options``, and the form's ``defaults`` they are told apart from, for the next :meth:`flush`."""
        self.pending = dict(options)
        self.defaults = None if defaults is None else dict(defaults)

    def flush(self, *_) -> bool:
        """Write the held options, if any; False when there were none or the write failed."""
        options, self.pending = self.pending, None
        if options is None:
            return False
        try:
            write_options(self.path, options, self.defaults)
        except (OSError, TypeError, ValueError) as error:
            # A read-only home or a full disk must not break the widget: the options are merely not kept.
            logger.warning("napari-action could not remember the training options in %s: %s", self.path, error)
            return False
        return True

"""The names of debris under ``models/``: what a view write or removal leaves when it is cut
short. This module owns them; views make them here, and ops, validate-registry and gc ask it.

Four kinds, each named after the model ``NAME`` and the writer's process id ``PID``:

- ``.view-NAME-PID-HEX.tmp``     a view being built (staging), renamed into place when done;
- ``.old-NAME-PID``              the view a rebuild replaced, removed once the new one is in place;
- ``.deleted-NAME-PID.tmp``      a view set aside while a failed rebuild is taken back;
- ``.deleted-NAME-PID-HEX.tmp``  a view being removed (delete-model), renamed out of the way first.

None can collide with a model's view: model names never start with a dot.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

PREFIXES = (".view-", ".old-", ".deleted-")


def staging_prefix(name: str) -> str:
    """The prefix ``fsops.make_temp_dir`` gets for the staging folder of ``name``'s view
    (it appends ``-PID-HEX.tmp``)."""
    return f".view-{name}"


def replaced(view: Path) -> Path:
    """Where the view a rebuild replaces waits until the new one is in place."""
    return view.with_name(f".old-{view.name}-{os.getpid()}")


def set_aside(view: Path) -> Path:
    """Where a view goes while a failed rebuild is taken back."""
    return view.with_name(f".deleted-{view.name}-{os.getpid()}.tmp")


def doomed(models_dir: Path, name: str) -> Path:
    """Where ``name``'s view is renamed before it is removed."""
    return models_dir / f".deleted-{name}-{os.getpid()}-{os.urandom(8).hex()}.tmp"


def is_debris(entry: str) -> bool:
    """Whether ``entry`` (a name in ``models/``) is debris of any kind."""
    return entry.startswith(PREFIXES)


def _deleted(name: str) -> re.Pattern[str]:
    return re.compile(rf"\.deleted-{re.escape(name)}-\d+(?:-[0-9a-f]{{16}})?\.tmp")


def is_deleted_view(entry: str, name: str) -> bool:
    """Whether ``entry`` is a view of ``name`` that was on its way out (removed by a delete,
    or set aside by a rebuild taken back): what a re-run delete of ``name`` removes."""
    return _deleted(name).fullmatch(entry) is not None

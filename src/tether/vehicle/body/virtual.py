"""A virtual car body: VSS signals in memory, saved atomically to a JSON file on every change."""

from __future__ import annotations

import json
import os
from pathlib import Path

from tether.errors import StorageError
from tether.protocol.commands import Command
from tether.vehicle.body.base import DEFAULT_STATE, Signals, apply


class VirtualBody:
    """The car the demo and the tests drive."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._state: Signals = dict(DEFAULT_STATE)
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot read the body state {path}: {exc}") from exc
            self._state.update({k: v for k, v in saved.items() if k in DEFAULT_STATE})

    def state(self) -> Signals:
        return dict(self._state)

    def set(self, signals: Signals) -> None:
        """Change signals directly (the simulation: driving, moving the car)."""
        self._state.update(signals)
        self._save()

    async def execute(self, command: Command) -> Signals:
        changed = apply(self._state, command)
        self._state.update(changed)
        self._save()
        return changed

    def _save(self) -> None:
        if self._path is None:
            return
        tmp = self._path.with_suffix(".tmp")
        with tmp.open("w") as f:
            json.dump(self._state, f, indent=1, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self._path)

    async def close(self) -> None:
        return None

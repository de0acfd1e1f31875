"""A virtual car body: VSS signals in memory, saved atomically to a JSON file soon after changes."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

from tether.errors import StorageError
from tether.protocol.commands import Command
from tether.vehicle.body.base import DEFAULT_STATE, Signals, apply, for_disk, from_disk

#: Changes are written this long after the first unsaved one (and on close): file I/O stays out of
#: the unlock's critical path, and a crash loses at most this much simulated state.
SAVE_DELAY = 0.1


class VirtualBody:
    """The car the demo and the tests drive."""

    def __init__(self, path: Path | None = None) -> None:
        self._path = path
        self._save_pending: asyncio.TimerHandle | None = None
        self._state: Signals = dict(DEFAULT_STATE)
        if path is not None and path.exists():
            try:
                saved = json.loads(path.read_text())
            except (OSError, ValueError) as exc:
                raise StorageError(f"cannot read the body state {path}: {exc}") from exc
            self._state.update(from_disk(saved))

    def state(self) -> Signals:
        return dict(self._state)

    def set(self, signals: Signals) -> None:
        """Change signals directly (the simulation: driving, moving the car)."""
        self._state.update(signals)
        self._schedule_save()

    async def execute(self, command: Command) -> Signals:
        changed = apply(self._state, command)
        self._state.update(changed)
        self._schedule_save()
        return changed

    def _schedule_save(self) -> None:
        if self._path is None or self._save_pending is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a script or a test): save now
            self.save()
            return
        self._save_pending = loop.call_later(SAVE_DELAY, self.save)

    def save(self) -> None:
        """Write the state now (atomically: the old file or the new one, never half)."""
        if self._save_pending is not None:
            self._save_pending.cancel()
            self._save_pending = None
        if self._path is None:
            return
        # Atomic (old or new file, never half), not fsynced: this is a simulated car's state, and
        # a synced write per command would cost more than the whole transaction.
        tmp = self._path.with_suffix(".tmp")
        tmp.write_text(json.dumps(for_disk(self._state), indent=1, sort_keys=True))
        os.replace(tmp, self._path)

    async def close(self) -> None:
        self.save()

"""Drive two sans-IO machines against each other in memory: for tests, benchmarks and the demo."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

from tether.protocol.machine import Event


class Endpoint(Protocol):
    """Anything with an outbox and a receive method: every machine and session in protocol/."""

    def data_to_send(self) -> list[bytes]: ...

    def receive(self, data: bytes, *, now: float) -> list[Event]: ...


def pump(
    a: Endpoint,
    b: Endpoint,
    *,
    now: float,
    on_events: Callable[[Endpoint, list[Event]], None] | None = None,
    tap: Callable[[Endpoint, bytes], bytes | None] | None = None,
    max_rounds: int = 32,
) -> list[Event]:
    """Move messages both ways until both outboxes are empty; return every event, in order.

    Every message arrives at ``now``: in memory, the exchange takes no time.

    ``tap(sender, data)`` sees each message in flight and may replace it (or drop it with None):
    the adversarial tests use it to tamper, replay and reorder.
    """
    events: list[Event] = []
    for _ in range(max_rounds):
        moved = False
        for src, dst in ((a, b), (b, a)):
            for data in src.data_to_send():
                moved = True
                if tap is not None:
                    tapped = tap(src, data)
                    if tapped is None:
                        continue
                    data = tapped
                got = dst.receive(data, now=now)
                if on_events is not None:
                    on_events(dst, got)
                events.extend(got)
        if not moved:
            return events
    raise RuntimeError("the two endpoints did not settle")  # pragma: no cover

"""`tether demo`: a server, a virtual car, an owner's and a friend's phone, and a web console.

Everything runs in one process on the production paths, on embedded defaults (SQLite, the
embedded MQTT broker), in a temporary directory deleted afterwards. The console at
http://127.0.0.1:8080 shows the car and lets a person click through the story; every event is
narrated here too. `--script` plays the story unattended and exits 0 only if every step behaved.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import tempfile
import webbrowser
from pathlib import Path
from typing import Any

from rich.console import Console

from tether.cli.output import Table, styled
from tether.console import story, web
from tether.console.world import DemoWorld, Step


def _narrate(out: Console) -> Any:
    def on_world(kind: str, payload: Any) -> None:
        if kind == "step" and isinstance(payload, Step):
            mark = "[green]✓[/green]" if payload.done else "[red]✗[/red]"
            who = {"owner": "Ada", "friend": "Bea"}.get(payload.phone, payload.phone)
            if payload.action.startswith(("replay", "relay", "tamper")):
                who = "Attacker"
            ms = f" ({payload.ms:.1f} ms)" if payload.ms is not None else ""
            out.print(f"{mark} {who}: {payload.action} — {payload.outcome}{ms}", highlight=False)

    return on_world


async def _run(out: Console, *, port: int, browser: bool, script: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="tether-demo-") as tmp:
        world = DemoWorld(Path(tmp), port=port)
        world.mount = lambda app: web.mount(app, world)
        world.listeners.append(_narrate(out))
        await world.start()
        try:
            out.print(
                f"tether demo: console at [bold]{world.url}[/bold] · car "
                f"{world.store.vehicle_id.hex()[:12]} shows pairing code "
                f"[bold cyan]{world.code}[/bold cyan]",
                highlight=False,
            )
            if script:
                return _report(out, await story.play(world))
            if browser:
                webbrowser.open(world.url)
            out.print("Click through the story in the console; Ctrl-C stops the demo.")
            stop = asyncio.Event()
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, stop.set)
            await stop.wait()
            return True
        finally:
            await world.stop()


def _report(out: Console, results: list[tuple[story.Beat, Step, bool]]) -> bool:
    table = Table(title="tether demo --script")
    for column in ("step", "outcome", "ms", "as expected"):
        table.add_column(column)
    for beat, step, good in results:
        table.add_row(
            beat.label,
            step.outcome,
            f"{step.ms or 0:.1f}",
            styled("yes", "green") if good else styled("NO", "red"),
        )
    out.print(table)
    ok = all(good for _, _, good in results)
    out.print("every step behaved as expected" if ok else "SOME STEPS MISBEHAVED")
    return ok


def run_demo(
    *, port: int = 8080, browser: bool = True, script: bool = False, console: Console | None = None
) -> bool:
    """Run the demo (until Ctrl-C, or through the story with ``script``)."""
    out = console or Console()
    with contextlib.suppress(KeyboardInterrupt):
        return asyncio.run(_run(out, port=port, browser=browser and not script, script=script))
    return True
